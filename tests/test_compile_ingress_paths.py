"""The Kubernetes documentation's Ingress path-matching examples, every row, through the compiler.

https://kubernetes.io/docs/concepts/services-networking/ingress/#examples
"""

from __future__ import annotations

import pytest

from controller.compile import compile_snapshot
from kobjects import backend, ingress, path, snapshot


def matched(paths: list[tuple[str, str]], request: str) -> tuple[str, str] | None:
    """(pathType, path) of the Ingress path a request matches, or None (404)."""
    spec = {"rules": [{"http": {"paths": [path(p, "users", t) for t, p in paths]}}]}
    result = compile_snapshot(snapshot(ingress("ex", spec), *backend("users")))
    assert result.statuses["Ingress:shop/ex"].state == "Ready", result.statuses["Ingress:shop/ex"].message
    res = result.table.match("GET", "example.com", request)
    if res.route is None:
        assert res.status == 404
        return None
    return res.route.path_type, res.route.path


ROWS = [
    # kind,   paths,                                                       request,        match
    ("Prefix", [("Prefix", "/")], "/", ("Prefix", "/")),
    ("Prefix", [("Prefix", "/")], "/anything/at/all", ("Prefix", "/")),
    ("Exact", [("Exact", "/foo")], "/foo", ("Exact", "/foo")),
    ("Exact", [("Exact", "/foo")], "/bar", None),
    ("Exact", [("Exact", "/foo")], "/foo/", None),
    ("Exact", [("Exact", "/foo/")], "/foo", None),
    ("Prefix", [("Prefix", "/foo")], "/foo", ("Prefix", "/foo")),
    ("Prefix", [("Prefix", "/foo")], "/foo/", ("Prefix", "/foo")),
    ("Prefix", [("Prefix", "/aaa/bb")], "/aaa/bbb", None),
    ("Prefix", [("Prefix", "/aaa/bbb")], "/aaa/bbb", ("Prefix", "/aaa/bbb")),
    ("Prefix", [("Prefix", "/aaa/bbb/")], "/aaa/bbb", ("Prefix", "/aaa/bbb/")),  # ignores trailing slash
    ("Prefix", [("Prefix", "/aaa/bbb")], "/aaa/bbb/", ("Prefix", "/aaa/bbb")),  # matches trailing slash
    ("Prefix", [("Prefix", "/aaa/bbb")], "/aaa/bbb/ccc", ("Prefix", "/aaa/bbb")),  # matches subpath
    ("Prefix", [("Prefix", "/aaa/bbb")], "/aaa/bbbxyz", None),  # not a string prefix match
    ("Prefix", [("Prefix", "/"), ("Prefix", "/aaa")], "/aaa/ccc", ("Prefix", "/aaa")),
    ("Prefix", [("Prefix", "/"), ("Prefix", "/aaa"), ("Prefix", "/aaa/bbb")], "/aaa/bbb", ("Prefix", "/aaa/bbb")),
    ("Prefix", [("Prefix", "/"), ("Prefix", "/aaa"), ("Prefix", "/aaa/bbb")], "/ccc", ("Prefix", "/")),
    ("Prefix", [("Prefix", "/aaa")], "/ccc", None),  # uses the default backend (none here)
    ("Mixed", [("Prefix", "/foo"), ("Exact", "/foo")], "/foo", ("Exact", "/foo")),  # prefers Exact
]


@pytest.mark.parametrize("kind, paths, request_path, expected", ROWS, ids=[f"{r[0]}-{r[1]}-{r[2]}" for r in ROWS])
def test_kubernetes_examples_table(kind, paths, request_path, expected):
    assert matched(paths, request_path) == expected


def test_prefix_foo_slash_matches_foo_and_foo_slash():
    # The table's row "Prefix /foo/ | /foo, /foo/ | Yes".
    assert matched([("Prefix", "/foo/")], "/foo") == ("Prefix", "/foo/")
    assert matched([("Prefix", "/foo/")], "/foo/") == ("Prefix", "/foo/")


def test_no_match_uses_the_default_backend():
    spec = {
        "defaultBackend": {"service": {"name": "fallback", "port": {"number": 80}}},
        "rules": [{"http": {"paths": [path("/aaa", "users")]}}],
    }
    result = compile_snapshot(snapshot(ingress("ex", spec), *backend("users"), *backend("fallback")))
    res = result.table.match("GET", "example.com", "/ccc")
    assert res.route is not None and res.route.rule == "defaultBackend"
    assert res.route.backends[0].key == "shop/fallback:80"


def test_implementation_specific_is_prefix():
    assert matched([("ImplementationSpecific", "/docs")], "/docs/intro") == ("Prefix", "/docs")
    assert matched([("ImplementationSpecific", "/docs")], "/docsx") is None


def test_ingress_wildcard_host_covers_exactly_one_label():
    spec = {"rules": [{"host": "*.foo.com", "http": {"paths": [path("/", "users")]}}]}
    table = compile_snapshot(snapshot(ingress("wild", spec), *backend("users"))).table
    assert table.match("GET", "bar.foo.com", "/").route is not None
    assert table.match("GET", "baz.bar.foo.com", "/").route is None
    assert table.match("GET", "foo.com", "/").route is None


def test_ingress_hosts_route_by_host():
    spec = {
        "rules": [
            {"host": "shop.example.com", "http": {"paths": [path("/", "users")]}},
            {"host": "admin.example.com", "http": {"paths": [path("/", "admin")]}},
        ]
    }
    table = compile_snapshot(snapshot(ingress("two", spec), *backend("users"), *backend("admin"))).table
    assert table.match("GET", "shop.example.com", "/x").route.backends[0].key == "shop/users:80"
    assert table.match("GET", "admin.example.com", "/x").route.backends[0].key == "shop/admin:80"
    assert table.match("GET", "other.example.com", "/x").route is None
    assert {r.rule for r in table.routes} == {"rules[0].paths[0]", "rules[1].paths[0]"}
    assert {r.name for r in table.routes} == {"shop/two"}
