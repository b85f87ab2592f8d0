"""Two objects claiming exactly the same match: the older keeps it, the other is Conflicted."""

from __future__ import annotations

from controller.compile import compile_snapshot
from kobjects import apiendpoint, backend, ingress, path, snapshot

SEED = {"path": "/api/v1/users", "method": "GET", "backendService": "users"}


def test_older_wins_and_loser_names_the_winner():
    older = apiendpoint("list-users", SEED, created="2024-01-01T00:00:00Z")
    newer = apiendpoint("list-users-v2", SEED, created="2024-03-01T00:00:00Z")
    result = compile_snapshot(snapshot(newer, older, *backend()))
    loser = result.statuses["APIEndpoint:shop/list-users-v2"]
    assert loser.state == "Error" and loser.reason == "Conflicted"
    assert loser.message == "conflicts with shop/list-users (older)"
    accepted = {c.type: c for c in loser.conditions}["Accepted"]
    assert (accepted.status, accepted.reason) == ("False", "Conflicted")
    assert result.statuses["APIEndpoint:shop/list-users"].state == "Ready"
    assert [r.name for r in result.table.routes] == ["shop/list-users"]


def test_same_age_is_decided_by_namespace_and_name():
    a = apiendpoint("b-route", SEED, ns="shop")
    b = apiendpoint("a-route", SEED, ns="shop")
    result = compile_snapshot(snapshot(a, b, *backend()))
    assert result.statuses["APIEndpoint:shop/b-route"].message == "conflicts with shop/a-route (same age, first by namespace/name)"
    assert [r.name for r in result.table.routes] == ["shop/a-route"]


def test_different_methods_hosts_or_headers_do_not_conflict():
    objs = [
        apiendpoint("get", SEED),
        apiendpoint("post", {**SEED, "method": "POST"}),
        apiendpoint("host", {**SEED, "hosts": ["a.example.com"]}),
        apiendpoint("hdr", {**SEED, "headers": [{"name": "x-v", "value": "2"}]}),
        apiendpoint("exact", {**SEED, "pathType": "Exact"}),
    ]
    result = compile_snapshot(snapshot(*objs, *backend()))
    assert {k: s.state for k, s in result.statuses.items()} == {f"APIEndpoint:shop/{n}": "Ready" for n in ("get", "post", "host", "hdr", "exact")}


def test_prefix_with_and_without_trailing_slash_is_the_same_match():
    a = apiendpoint("a", {"path": "/api", "backendService": "users"}, created="2024-01-01T00:00:00Z")
    b = apiendpoint("b", {"path": "/api/", "backendService": "users"}, created="2024-02-01T00:00:00Z")
    result = compile_snapshot(snapshot(a, b, *backend()))
    assert result.statuses["APIEndpoint:shop/b"].reason == "Conflicted"


def test_overlapping_host_lists_conflict_on_the_shared_host():
    a = apiendpoint("a", {**SEED, "hosts": ["a.example.com", "b.example.com"]}, created="2024-01-01T00:00:00Z")
    b = apiendpoint("b", {**SEED, "hosts": ["b.example.com", "c.example.com"]}, created="2024-02-01T00:00:00Z")
    result = compile_snapshot(snapshot(a, b, *backend()))
    assert result.statuses["APIEndpoint:shop/b"].reason == "Conflicted"
    assert result.table.match("GET", "c.example.com", "/api/v1/users").route is None  # the loser is out entirely


def test_a_loser_claims_nothing_so_a_third_object_is_judged_against_the_winner_only():
    a = apiendpoint("a", {**SEED, "hosts": ["a.example.com"]}, created="2024-01-01T00:00:00Z")
    b = apiendpoint("b", {**SEED, "hosts": ["a.example.com", "c.example.com"]}, created="2024-02-01T00:00:00Z")
    c = apiendpoint("c", {**SEED, "hosts": ["c.example.com"]}, created="2024-03-01T00:00:00Z")
    result = compile_snapshot(snapshot(a, b, c, *backend()))
    assert result.statuses["APIEndpoint:shop/b"].reason == "Conflicted"
    assert result.statuses["APIEndpoint:shop/c"].state == "Ready"


def test_ingress_loses_only_the_conflicting_path():
    api = apiendpoint("users", {"path": "/users", "backendService": "users"}, created="2024-01-01T00:00:00Z")
    ing = ingress("web", {"rules": [{"http": {"paths": [path("/users", "users"), path("/shop", "users")]}}]}, created="2024-05-01T00:00:00Z")
    result = compile_snapshot(snapshot(api, ing, *backend()))
    st = result.statuses["Ingress:shop/web"]
    assert st.state == "Error" and st.reason == "Conflicted"
    assert "spec.rules[0].paths[0]: conflicts with shop/users (older)" in st.message
    assert result.table.match("GET", "h", "/users").route.name == "shop/users"
    assert result.table.match("GET", "h", "/shop/x").route.name == "shop/web"


def test_older_ingress_beats_newer_apiendpoint():
    ing = ingress("web", {"rules": [{"http": {"paths": [path("/users", "users")]}}]}, created="2023-01-01T00:00:00Z")
    api = apiendpoint("users", {"path": "/users", "backendService": "users"}, created="2024-01-01T00:00:00Z")
    result = compile_snapshot(snapshot(api, ing, *backend()))
    assert result.statuses["APIEndpoint:shop/users"].message == "conflicts with shop/web (older)"


def test_duplicate_path_inside_one_ingress():
    spec = {"rules": [{"http": {"paths": [path("/a", "users"), path("/a", "users")]}}]}
    st = compile_snapshot(snapshot(ingress("dup", spec), *backend())).statuses["Ingress:shop/dup"]
    assert st.reason == "Conflicted"
    assert "spec.rules[0].paths[1]: conflicts with rules[0].paths[0] of the same object" in st.message


def test_oldest_ingress_default_backend_wins():
    old = ingress("old", {"defaultBackend": {"service": {"name": "users", "port": {"number": 80}}}}, created="2023-01-01T00:00:00Z")
    new = ingress("new", {"defaultBackend": {"service": {"name": "other", "port": {"number": 80}}},
                          "rules": [{"http": {"paths": [path("/new", "other")]}}]}, created="2024-01-01T00:00:00Z")
    result = compile_snapshot(snapshot(old, new, *backend(), *backend("other")))
    assert result.table.fallback.name == "shop/old"
    st = result.statuses["Ingress:shop/new"]
    assert st.reason == "Conflicted" and "spec.defaultBackend: conflicts with shop/old (older)" in st.message
    assert result.table.match("GET", "h", "/new").route.name == "shop/new"  # its rules still route
