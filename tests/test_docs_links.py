"""Every relative link in the README and docs/ leads to a file, and every #anchor to a heading.

Anchors are GitHub's heading ids: the heading's text lower-cased, punctuation other than `-` and `_`
dropped, spaces turned into `-`, and `-1`, `-2` ... appended to repeats within a page. Links to other
sites are not fetched (tests talk to loopback only).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
# docs/_incoming/ holds notes in flight, not documentation: not checked.
PAGES = sorted([ROOT / "README.md", ROOT / "CHANGELOG.md", *DOCS.glob("*.md"),
                ROOT / "bench" / "README.md", ROOT / "bench" / "HISTORY.md"])

FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.M | re.S)
CODE_SPAN = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t]*#*[ \t]*$", re.M)
SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def _prose(text: str) -> str:
    """The text outside fenced code blocks."""
    return FENCE.sub("", text)


def slug(heading: str) -> str:
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text only
    text = text.replace("`", "").replace("*", "").strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for heading in HEADING.findall(_prose(page.read_text())):
        base = slug(heading)
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def links(page: Path) -> list[str]:
    # Code spans may contain `[x](y)`-looking text (and link text may hold code spans): blank the
    # spans out rather than deleting them, so link text stays well-formed.
    prose = CODE_SPAN.sub(lambda m: "`" + "x" * (len(m.group()) - 2) + "`", _prose(page.read_text()))
    return LINK.findall(prose)


def broken_links(page: Path) -> list[str]:
    problems = []
    for target in links(page):
        if SCHEME.match(target):
            continue  # another site (https:, mailto:): not fetched
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.is_relative_to(ROOT):
            problems.append(f"{target}: outside the repository")
        elif not dest.exists():
            problems.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            problems.append(f"{target}: no heading #{anchor} in {dest.relative_to(ROOT)}")
    return problems


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page):
    assert page.exists()
    assert broken_links(page) == []


def test_every_docs_page_is_in_the_index():
    index = {t.partition("#")[0] for t in links(DOCS / "README.md")}
    pages = {p.name for p in DOCS.glob("*.md")} - {"README.md"}
    assert sorted(pages - index) == []


def test_the_readme_links_the_docs_index():
    assert "docs/README.md" in {t.partition("#")[0] for t in links(ROOT / "README.md")}


def test_slugs_are_githubs():
    assert slug("Flags of `crdgate run` (and `crdgate demo`)") == "flags-of-crdgate-run-and-crdgate-demo"
    assert slug("2026-12-02 afternoon: full run on a quiet VM") == "2026-12-02-afternoon-full-run-on-a-quiet-vm"
    assert slug("The `auth` field") == "the-auth-field"
    assert slug("[0.1.0]") == "010"


def test_a_broken_link_or_anchor_is_found(tmp_path, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    (tmp_path / "a.md").write_text("# Title\n\n## Two words\n\n```\n## not a heading\n```\n")
    page = tmp_path / "b.md"
    page.write_text("[ok](a.md#two-words) [self](#here) `[code](nowhere.md)`\n\n# Here\n\n"
                    "[gone](missing.md) [bad](a.md#not-a-heading) [web](https://example.com/x)\n"
                    "```\n[fenced](nowhere.md)\n```\n")
    assert broken_links(page) == [
        "missing.md: no such file",
        "a.md#not-a-heading: no heading #not-a-heading in a.md",
    ]
