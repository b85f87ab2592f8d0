"""Gateway API precedence across APIEndpoints and Ingresses of one gateway.

host (exact > longer wildcard > shorter) -> Exact path -> longest Prefix -> regex
-> has method -> most header matches -> most query matches -> oldest -> namespace/name.
"""

from __future__ import annotations

from controller.compile import compile_snapshot
from kobjects import apiendpoint, backend, ingress, path, snapshot


def winner(objects: list[dict], method: str = "GET", host: str = "v1.api.example.com", req: str = "/api/users",
           headers: dict | None = None, query: str = "") -> str | int:
    result = compile_snapshot(snapshot(*objects, *backend("users")))
    bad = {k: s.message for k, s in result.statuses.items() if s.state != "Ready"}
    assert not bad
    res = result.table.match(method, host, req, headers or {}, query)
    return res.route.name.split("/", 1)[1] if res.route is not None else res.status


def ep(name: str, created: str = "2024-01-01T00:00:00Z", ns: str = "shop", **spec) -> dict:
    return apiendpoint(name, {"path": "/api/users", "backendService": "users", **spec}, ns=ns, created=created)


def test_exact_host_then_longer_wildcard_then_shorter_then_any():
    objs = [
        ep("any"),
        ep("short", hosts=["*.example.com"]),
        ep("long", hosts=["*.api.example.com"]),
        ep("exact", hosts=["v1.api.example.com"]),
    ]
    assert winner(objs) == "exact"
    assert winner(objs[:3]) == "long"
    assert winner(objs[:2]) == "short"
    assert winner(objs[:1]) == "any"


def test_host_beats_path_specificity():
    # A host match wins even over a more specific path on any host.
    objs = [ep("deep-any-host", path="/api/users", pathType="Exact"), ep("host-root", path="/", hosts=["v1.api.example.com"])]
    assert winner(objs) == "host-root"


def test_exact_then_longest_prefix_then_regex():
    objs = [
        ep("regex", path="/api/[a-z]+", pathType="RegularExpression"),
        ep("short-prefix", path="/api"),
        ep("long-prefix", path="/api/users"),
        ep("exact", path="/api/users", pathType="Exact"),
    ]
    assert winner(objs) == "exact"
    assert winner(objs[:3]) == "long-prefix"
    assert winner(objs[:2]) == "short-prefix"
    assert winner(objs[:1]) == "regex"


def test_method_then_headers_then_query():
    objs = [
        ep("plain"),
        ep("one-query", queryParams=[{"name": "v", "value": "1"}], method="GET"),
        ep("one-header", headers=[{"name": "x-a", "value": "1"}], method="GET"),
        ep("two-headers", headers=[{"name": "x-a", "value": "1"}, {"name": "x-b", "value": "1"}], method="GET"),
        ep("method", method="GET", queryParams=[{"name": "v", "value": "1"}, {"name": "w", "value": "1"}], pathType="Prefix"),
    ]
    h = {"x-a": "1", "x-b": "1"}
    q = "v=1&w=1"
    assert winner(objs, headers=h, query=q) == "two-headers"
    assert winner(objs[:3] + objs[4:], headers=h, query=q) == "one-header"
    # With only query matches left, more query matches win.
    assert winner([objs[0], objs[1], objs[4]], headers=h, query=q) == "method"
    assert winner([objs[0], objs[1]], headers=h, query=q) == "one-query"
    assert winner([objs[0]], headers=h, query=q) == "plain"


def test_a_route_with_a_method_beats_one_without():
    assert winner([ep("any-method"), ep("get", method="GET")]) == "get"
    assert winner([ep("any-method"), ep("get", method="GET")], method="POST") == "any-method"


def test_oldest_then_namespace_name_break_remaining_ties():
    # Different matches (so no conflict) that tie on every rule above.
    older = ep("zzz-older", created="2023-06-01T00:00:00Z", headers=[{"name": "x-a", "value": "1"}])
    newer = ep("aaa-newer", created="2024-06-01T00:00:00Z", headers=[{"name": "x-b", "value": "1"}])
    assert winner([newer, older], headers={"x-a": "1", "x-b": "1"}) == "zzz-older"
    same_a = ep("bbb", headers=[{"name": "x-a", "value": "1"}])
    same_b = ep("aaa", headers=[{"name": "x-b", "value": "1"}])
    assert winner([same_a, same_b], headers={"x-a": "1", "x-b": "1"}) == "aaa"
    other_ns = ep("zzz", ns="alpha", headers=[{"name": "x-c", "value": "1"}])
    alpha_users = backend("users", ns="alpha")
    assert winner([same_a, same_b, other_ns, *alpha_users], headers={"x-a": "1", "x-b": "1", "x-c": "1"}) == "zzz"


def test_apiendpoints_and_ingresses_share_one_precedence():
    ing = ingress("web", {"rules": [{"host": "v1.api.example.com", "http": {"paths": [path("/api", "users")]}}]})
    api = ep("users-exact", path="/api/users", pathType="Exact", hosts=["v1.api.example.com"])
    assert winner([ing, api]) == "users-exact"
    assert winner([ing, api], req="/api/orders") == "web"
