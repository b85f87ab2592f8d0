"""User regexes run on RE2: full-match answers, linear time on hostile input, RE2's syntax enforced."""

import pytest

from gateway import regex


def test_full_match_only():
    r = regex.compile(r"/users/[0-9]+")
    assert r.fullmatch("/users/42")
    assert not r.fullmatch("/users/42/x")
    assert not r.fullmatch("x/users/42")
    assert not r.fullmatch("/users/")


def test_alternation_is_anchored_as_a_whole():
    r = regex.compile(r"/a|/b")
    assert r.fullmatch("/a") and r.fullmatch("/b")
    assert not r.fullmatch("/a/b") and not r.fullmatch("/ab")


def test_non_ascii_text_and_patterns():
    r = regex.compile("/caf\u00e9/[^/]+")
    assert r.fullmatch("/caf\u00e9/cr\u00e8me")
    assert not r.fullmatch("/cafe/x")
    assert regex.compile("/.").fullmatch("/\u00e9"), "'.' is one character, not one byte"
    assert not regex.compile("/x").fullmatch("/\udcff"), "a lone surrogate is text that does not match, never an error"


def test_catastrophic_pattern_answers_on_long_input():
    # With a backtracking engine this needs about 2**100_000 steps and never
    # returns (the test would hang until its timeout); RE2 is linear.
    r = regex.compile(r"/(a+)+")
    assert not r.fullmatch("/" + "a" * 100_000 + "!")
    assert r.fullmatch("/" + "a" * 100_000)
    r = regex.compile(r"(x+x+)+y")
    assert not r.fullmatch("x" * 50_000)


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        (r"/(a)\1", "invalid escape sequence: \\1"),
        (r"/(?=a)a", "invalid perl operator: (?="),
        (r"/(?<!a)b", "invalid perl operator: (?<!"),
        (r"/[", "missing ]: ["),
        (r"/a{1001}", "invalid repetition size: {1001}"),
        (r"/\pL{1000}", "pattern too large - compile failed"),
    ],
)
def test_what_re2_refuses_is_an_error_with_its_reason(pattern, reason):
    with pytest.raises(regex.RegexError) as e:
        regex.compile(pattern)
    assert str(e.value).startswith(reason)  # RE2's reason first (test_regex_unsupported: what follows)
    assert isinstance(e.value, ValueError)


def test_public_api_fallback_gives_the_same_answers():
    fast = regex.compile(r"/v[0-9]+/(users|teams)/[^/]+")
    slow = regex.compile(fast.pattern)
    slow._raw = None  # as if google-re2 had no direct binding
    for text in ("/v1/users/a", "/v12/teams/b", "/v1/users/a/b", "/v/users/a", "", "/v1/users/\u00e9"):
        assert fast.fullmatch(text) == slow.fullmatch(text), text


def test_equal_by_pattern():
    assert regex.compile("/a.*") == regex.compile("/a.*")
    assert hash(regex.compile("/a.*")) == hash(regex.compile("/a.*"))
    assert regex.compile("/a.*") != regex.compile("/b.*")
