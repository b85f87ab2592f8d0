"""RouteTable.match on hand-built routes: hosts, paths, methods, 405, fallback."""

from __future__ import annotations

from gateway import regex
from gateway.routing import PATH_EXACT, PATH_PREFIX, PATH_REGEX, Route, RouteTable, StringMatch


def route(name: str, path: str = "/", path_type: str = PATH_PREFIX, **kw) -> Route:
    return Route(name=name, kind=kw.pop("kind", "APIEndpoint"), path=path, path_type=path_type, **kw)


def who(table: RouteTable, host: str, path: str, method: str = "GET", headers=None, query: str = "") -> str | int:
    res = table.match(method, host, path, headers or {}, query)
    return res.route.name if res.route is not None else res.status


def test_exact_host_beats_wildcards_and_longer_wildcard_beats_shorter():
    table = RouteTable(
        [
            route("any"),
            route("short", hosts=("*.example.com",)),
            route("long", hosts=("*.api.example.com",)),
            route("exact", hosts=("v1.api.example.com",)),
        ]
    )
    assert who(table, "v1.api.example.com", "/x") == "exact"
    assert who(table, "v2.api.example.com", "/x") == "long"
    assert who(table, "www.example.com", "/x") == "short"
    assert who(table, "example.com", "/x") == "any"  # a wildcard never matches its bare suffix
    assert who(table, "other.org", "/x") == "any"


def test_host_is_case_insensitive_and_port_is_ignored():
    table = RouteTable([route("a", hosts=("api.example.com",))])
    assert who(table, "API.Example.COM:8443", "/") == "a"
    assert who(table, "api.example.com.", "/") == "a"


def test_apiendpoint_wildcard_covers_several_labels_ingress_wildcard_one():
    gw = RouteTable([route("gw", hosts=("*.foo.com",))])
    ing = RouteTable([route("ing", hosts=("*.foo.com",), kind="Ingress", wildcard_single_label=True)])
    assert who(gw, "bar.foo.com", "/") == "gw"
    assert who(gw, "baz.bar.foo.com", "/") == "gw"
    assert who(ing, "bar.foo.com", "/") == "ing"
    assert who(ing, "baz.bar.foo.com", "/") == 404
    assert who(ing, "foo.com", "/") == 404


def test_host_miss_falls_through_to_the_next_host_group():
    table = RouteTable([route("exact-api", "/api", hosts=("a.example.com",)), route("any-root", "/")])
    assert who(table, "a.example.com", "/api/x") == "exact-api"
    assert who(table, "a.example.com", "/web") == "any-root"


def test_prefix_is_element_wise():
    table = RouteTable([route("abc", "/abc")])
    assert who(table, "h", "/abc") == "abc"
    assert who(table, "h", "/abc/") == "abc"
    assert who(table, "h", "/abc/x/y") == "abc"
    assert who(table, "h", "/abcd") == 404
    assert who(table, "h", "/ab") == 404


def test_longest_prefix_wins_and_exact_beats_prefix():
    table = RouteTable([route("root", "/"), route("a", "/a"), route("ab", "/a/b"), route("ab-exact", "/a/b", PATH_EXACT)])
    assert who(table, "h", "/a/b") == "ab-exact"
    assert who(table, "h", "/a/b/c") == "ab"
    assert who(table, "h", "/a/c") == "a"
    assert who(table, "h", "/z") == "root"


def test_regex_is_full_match_and_comes_after_prefixes():
    rx = regex.compile(r"/users/[0-9]+")
    table = RouteTable([route("rx", rx.pattern, PATH_REGEX, regex=rx), route("users", "/users/admin")])
    assert who(table, "h", "/users/42") == "rx"
    assert who(table, "h", "/users/42/x") == 404
    assert who(table, "h", "/users/admin") == "users"


def test_wrong_method_is_405_with_allow():
    table = RouteTable([route("get", "/r", methods=frozenset({"GET"})), route("post", "/r", methods=frozenset({"POST", "PUT"}))])
    assert who(table, "h", "/r", "PUT") == "post"
    res = table.match("DELETE", "h", "/r")
    assert res.route is None and res.status == 405 and res.allow == ("GET", "POST", "PUT")


def test_405_only_when_no_other_route_matches():
    table = RouteTable([route("get", "/r", methods=frozenset({"GET"})), route("root", "/")])
    assert who(table, "h", "/r", "DELETE") == "root"


def test_header_and_query_matches():
    table = RouteTable(
        [
            route("v2", "/api", headers=(StringMatch("x-version", "2"),)),
            route("debug", "/api", query=(StringMatch("debug", "", regex.compile(r"1|true")),)),
            route("plain", "/api"),
        ]
    )
    assert who(table, "h", "/api", headers={"x-version": "2"}) == "v2"
    assert who(table, "h", "/api", query="debug=true") == "debug"
    assert who(table, "h", "/api", query="debug=yes") == "plain"


def test_fallback_answers_when_nothing_matches():
    fb = route("fallback", kind="Ingress", rule="defaultBackend")
    table = RouteTable([route("a", "/a")], fallback=fb)
    assert who(table, "h", "/a") == "a"
    assert who(table, "h", "/zzz") == "fallback"
    assert who(RouteTable([route("a", "/a")]), "h", "/zzz") == 404


def test_with_endpoints_keeps_routes_and_changes_generation():
    table = RouteTable([route("a", "/a")], generation=1)
    new = table.with_endpoints({}, generation=2)
    assert new.generation == 2 and new.routes == table.routes
    assert who(new, "h", "/a") == "a"
