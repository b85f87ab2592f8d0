"""The docs name every CLI flag and every metric; the README keeps its two set-up commands.

Flags are documented in docs/cli.md (``crdgate bench``'s own in docs/development.md), metrics in
docs/metrics.md (APIEndpoint fields: see test_crd_definition.py). A flag or metric added without its line in the docs fails here.
"""

import argparse
import re
from pathlib import Path

from prometheus_client import Counter, Gauge, Histogram

from bench.__main__ import parser as bench_parser
from gateway import metrics
from crdgate.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
CLI_PAGE = (ROOT / "docs" / "cli.md").read_text()
METRICS_PAGE = (ROOT / "docs" / "metrics.md").read_text()
DEVELOPMENT_PAGE = (ROOT / "docs" / "development.md").read_text()


def _flags(parser: argparse.ArgumentParser) -> set[str]:
    out = set()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                out |= _flags(sub)
        for opt in action.option_strings:
            if opt.startswith("--") and opt != "--help":
                out.add(opt)
    return out


def _names_flag(text: str, flag: str) -> bool:
    # `--listen` must not count as documented because `--listen-tls` is.
    return re.search("`" + re.escape(flag) + r"[` =]", text) is not None


def test_every_flag_is_documented_in_the_cli_page():
    missing = sorted(f for f in _flags(build_parser()) if not _names_flag(CLI_PAGE, f))
    assert missing == []


def test_every_bench_flag_is_documented_in_the_development_page():
    flags = _flags(bench_parser())
    assert "--gateway-command" in flags and "--scenario" in flags
    missing = sorted(f for f in flags if not _names_flag(DEVELOPMENT_PAGE, f))
    assert missing == []


def test_a_flag_is_not_documented_by_a_longer_one():
    assert not _names_flag("`--listen-tls` | address", "--listen")
    assert _names_flag("| `--listen` | `0.0.0.0:8080` |", "--listen")
    assert _names_flag("take `--output text|json`", "--output")


def test_every_metric_is_documented_in_the_metrics_page():
    names = {"crdgate_requests_total", "crdgate_request_duration_seconds"}
    for obj in vars(metrics).values():
        if isinstance(obj, (Counter, Gauge, Histogram)):
            names.add(obj._name + ("_total" if isinstance(obj, Counter) else ""))
    missing = sorted(n for n in names if f"`{n}`" not in METRICS_PAGE)
    assert missing == []


def test_the_two_setup_commands_are_in_the_readme_and_ci_runs_the_test_one():
    blocks = re.findall(r"```\n(.*?)\n```", README, re.S)
    assert "python3 -m pip install -e . && crdgate demo" in blocks
    assert "python3 -m pip install -e '.[test]' && python3 -m pytest -q" in blocks
    ci = (ROOT / ".ci" / "run").read_text()
    assert "python3 -m pip install -e '.[test]' && python3 -m pytest -q" in ci
