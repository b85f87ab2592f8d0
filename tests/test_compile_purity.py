"""compile is pure: same snapshot, same table and statuses; inputs never touched."""

from __future__ import annotations

import copy
import gc

from controller.compile import compile_snapshot
from kobjects import apiendpoint, backend, endpointslice, ingress, path, service, snapshot


def objects() -> list[dict]:
    return [
        apiendpoint("list-users", {"path": "/api/v1/users", "method": "GET", "backendService": "users"}),
        apiendpoint("dup", {"path": "/api/v1/users", "method": "GET", "backendService": "users"}, created="2024-05-01T00:00:00Z"),
        apiendpoint("orders", {"hosts": ["*.example.com"], "path": "/orders", "pathType": "Exact", "methods": ["GET", "POST"],
                               "headers": [{"name": "X-V", "value": "2"}], "rewrite": {"path": {"type": "ReplaceFullPath", "replaceFullPath": "/"}},
                               "backends": [{"service": {"name": "users", "port": 80}, "weight": 3}, {"url": "http://127.0.0.1:18083"}],
                               "timeouts": {"request": "2s"}, "retries": {"attempts": 2}}),
        apiendpoint("bad", {"path": "nope", "backendService": "users"}),
        apiendpoint("rx", {"path": "/items/[0-9]+", "pathType": "RegularExpression", "backendService": "idle"}),
        ingress("web", {"defaultBackend": {"service": {"name": "users", "port": {"number": 80}}},
                        "rules": [{"host": "*.shop.example", "http": {"paths": [path("/", "users"), path("/cart", "idle", "Exact")]}}]}),
        *backend(addresses=("10.0.0.2", "10.0.0.1")),
        service("idle"),
        endpointslice("idle", ["10.0.1.1"], ready=False),
    ]


def describe(result) -> list:
    return [
        (r.name, r.kind, r.path, r.path_type, r.hosts, r.methods, [(h.name, h.value) for h in r.headers],
         [(b.key, b.weight) for b in r.backends], r.policy, r.rule, r.wildcard_single_label)
        for r in result.table.routes
    ]


def test_same_snapshot_twice_gives_equal_results():
    snap = snapshot(*objects())
    a = compile_snapshot(snap, generation=7)
    b = compile_snapshot(snap, generation=7)
    assert describe(a) == describe(b)
    assert a.statuses == b.statuses
    assert list(a.statuses) == list(b.statuses)
    assert dict(a.table.endpoints) == dict(b.table.endpoints)
    assert a.backend_keys == b.backend_keys


def test_object_order_in_the_snapshot_does_not_matter():
    objs = objects()
    a = compile_snapshot(snapshot(*objs))
    b = compile_snapshot(snapshot(*reversed(objs)))
    assert describe(a) == describe(b)
    assert a.statuses == b.statuses


def test_inputs_are_not_mutated():
    objs = objects()
    before = copy.deepcopy(objs)
    snap = snapshot(*objs, origins={"APIEndpoint:shop/bad": "x.yaml"})
    compile_snapshot(snap)
    compile_snapshot(snap)
    assert objs == before
    assert dict(snap.origins) == {"APIEndpoint:shop/bad": "x.yaml"}


def test_a_changed_object_is_revalidated():
    # Validated specs are reused by object identity across compiles: an edited
    # object arrives as a new dict and must be validated afresh.
    good = apiendpoint("r", {"path": "/r", "backendService": "users"})
    assert compile_snapshot(snapshot(good, *backend())).statuses["APIEndpoint:shop/r"].state == "Ready"
    edited = apiendpoint("r", {"path": "r", "backendService": "users"})
    assert compile_snapshot(snapshot(edited, *backend())).statuses["APIEndpoint:shop/r"].reason == "InvalidSpec"


def test_gc_state_is_restored():
    assert gc.isenabled()
    compile_snapshot(snapshot(*objects()))
    assert gc.isenabled()
    gc.disable()
    try:
        compile_snapshot(snapshot(*objects()))
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_reused_objects_follow_what_their_routes_depend_on():
    # The same APIEndpoint dict across compiles (as the store keeps it): its route
    # must still follow Service ports, Secrets and origins that changed around it.
    ep = apiendpoint("r", {"path": "/r", "backendService": "users"})
    keyed = apiendpoint("k", {"path": "/k", "backendService": "users", "auth": {"type": "APIKey", "secretRef": {"name": "keys"}}})
    first = compile_snapshot(snapshot(ep, keyed, service("users")))
    assert first.table.match("GET", "h", "/r").route.backends[0].key == "shop/users:80"
    assert first.statuses["APIEndpoint:shop/k"].reason == "SecretNotFound"

    moved = service("users", ports=[{"name": "http", "port": 81, "targetPort": 8080}])
    keys = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "keys", "namespace": "shop"}, "stringData": {"a": "key-a"}}
    second = compile_snapshot(snapshot(ep, keyed, moved, keys, origins={"APIEndpoint:shop/r": "r.yaml"}))
    assert second.table.match("GET", "h", "/r").route.backends[0].key == "shop/users:81"
    assert second.statuses["APIEndpoint:shop/k"].state == "Pending"  # auth built; the Service has no endpoints
    assert second.statuses["APIEndpoint:shop/r"].origin == "r.yaml"
    fresh = compile_snapshot(snapshot(copy.deepcopy(ep), copy.deepcopy(keyed), moved, keys, origins={"APIEndpoint:shop/r": "r.yaml"}))
    assert describe(second) == describe(fresh)
    assert second.statuses == fresh.statuses
