"""Path normalisation, socket-free: what every request path becomes before matching."""

import pytest

from gateway.normalize import BadTarget, normalize_target


@pytest.mark.parametrize("raw,path,query", [
    (b"/", "/", ""),
    (b"/a/b?x=1&y", "/a/b", "x=1&y"),
    (b"/admin/../public", "/public", ""),
    (b"/%61dmin", "/admin", ""),
    (b"/%7Euser/%41", "/~user/A", ""),
    (b"//admin///x", "/admin/x", ""),
    (b"/a/./b/", "/a/b/", ""),
    (b"/a/b/.", "/a/b/", ""),
    (b"/a/b/..", "/a/", ""),
    (b"/caf%c3%a9", "/caf%C3%A9", ""),        # reserved/non-ASCII escapes kept, hex upper-cased
    (b"/a%3fb", "/a%3Fb", ""),                # an encoded "?" stays encoded: it is data, not a query
    (b"http://Host:8080/p?q=1", "/p", "q=1"),  # absolute-form
    (b"/x?%2e%2e", "/x", "%2e%2e"),           # the query is not a path
])
def test_normalised(raw, path, query):
    got_path, got_query, _ = normalize_target(raw)
    assert (got_path, got_query) == (path, query)


@pytest.mark.parametrize("raw", [
    b"/..", b"/../x", b"/a/../..", b"/%2e%2e/x", b"/a/%2E%2E/%2e%2e/b",   # above the root
    b"/a%2Fb", b"/a%2fb", b"/a%5Cb", b"/a%00", b"/a%3Bb", b"/a;b=1",       # re-splittable or truncating
    b"/a%", b"/a%4", b"/a%zz",                                              # bad escapes
    b"/a\\b", b"/a b", b"/a#frag", b"relative", b"",
])
def test_refused(raw):
    with pytest.raises(BadTarget) as e:
        normalize_target(raw)
    assert e.value.status == 400


def test_absolute_form_reports_authority():
    assert normalize_target(b"http://api.test:81/x")[2] == b"api.test:81"
