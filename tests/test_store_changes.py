"""The store says which objects changed since a version, copies a kind only when it changed,
and compacts objects without changing what readers see."""

from __future__ import annotations

import json

from controller.store import APIENDPOINT, KINDS, SERVICE, Store, compact
from kobjects import apiendpoint, service


def fresh() -> Store:
    store = Store()
    for kind in KINDS:
        store.replace(kind, [])
    return store


def test_snapshot_since_lists_the_keys_changed_after_that_version():
    store = fresh()
    store.apply(APIENDPOINT, "ADDED", apiendpoint("a", {"path": "/a", "backendService": "s"}))
    first = store.snapshot(since=0)
    assert first.changes == {APIENDPOINT: frozenset({"shop/a"})}
    store.apply(APIENDPOINT, "ADDED", apiendpoint("b", {"path": "/b", "backendService": "s"}))
    store.apply(SERVICE, "ADDED", service("s"))
    store.apply(APIENDPOINT, "DELETED", apiendpoint("a", {"path": "/a", "backendService": "s"}))
    second = store.snapshot(since=first.version)
    assert second.since == first.version
    assert second.changes == {APIENDPOINT: frozenset({"shop/a", "shop/b"}), SERVICE: frozenset({"shop/s"})}
    assert store.snapshot(since=second.version).changes == {}


def test_an_unchanged_object_is_no_change():
    store = fresh()
    obj = apiendpoint("a", {"path": "/a", "backendService": "s"})
    store.apply(APIENDPOINT, "ADDED", obj)
    version = store.version
    store.apply(APIENDPOINT, "MODIFIED", json.loads(json.dumps(obj)))
    store.replace(APIENDPOINT, [json.loads(json.dumps(obj))])
    assert store.version == version
    assert store.snapshot(since=version).changes == {}


def test_a_new_origin_is_a_change():
    store = fresh()
    obj = apiendpoint("a", {"path": "/a", "backendService": "s"})
    store.update(APIENDPOINT, {"shop/a": obj}, origins={"shop/a": "one.yaml#0"})
    version = store.version
    store.update(APIENDPOINT, {"shop/a": obj}, origins={"shop/a": "two.yaml#0"})
    snap = store.snapshot(since=version)
    assert snap.changes == {APIENDPOINT: frozenset({"shop/a"})}
    assert snap.origins["APIEndpoint:shop/a"] == "two.yaml#0"


def test_a_log_that_no_longer_reaches_back_says_so():
    store = fresh()
    start = store.version
    for i in range(5000):  # more than the log keeps
        store.apply(APIENDPOINT, "ADDED", apiendpoint(f"r{i}", {"path": f"/{i}", "backendService": "s"}))
    assert store.snapshot(since=start).changes is None  # the compiler then diffs by identity
    recent = store.version - 10
    assert len(store.snapshot(since=recent).changes[APIENDPOINT]) == 10


def test_a_kind_is_copied_for_snapshots_only_when_it_changed():
    store = fresh()
    store.apply(SERVICE, "ADDED", service("s"))
    one = store.snapshot()
    store.apply(APIENDPOINT, "ADDED", apiendpoint("a", {"path": "/a", "backendService": "s"}))
    two = store.snapshot()
    assert two.of(SERVICE) is one.of(SERVICE)
    assert two.of(APIENDPOINT) is not one.of(APIENDPOINT)
    assert "shop/a" not in one.of(APIENDPOINT)  # an earlier snapshot never changes


def test_compact_keeps_what_readers_see_and_drops_what_nobody_reads():
    raw = {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "s", "namespace": "shop", "managedFields": [{"manager": "kubectl"}],
                     "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{...}", "keep": "me"}},
        "spec": {"ports": [{"port": 80, "name": "http"}], "flag": True, "ratio": 1.0},
        "status": {"n": 1, "ok": True},
    }
    out = compact(json.loads(json.dumps(raw)))
    assert out == {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "s", "namespace": "shop", "annotations": {"keep": "me"}},
        "spec": {"ports": [{"port": 80, "name": "http"}], "flag": True, "ratio": 1.0},
        "status": {"n": 1, "ok": True},
    }
    assert type(out["spec"]["ratio"]) is float and out["spec"]["flag"] is True


def test_equal_statuses_are_shared_but_json_types_are_not_mixed():
    def obj(name, status):
        return compact({"metadata": {"name": name}, "status": status})

    a, b = obj("a", {"state": "Ready", "n": 1}), obj("b", {"state": "Ready", "n": 1})
    assert a["status"] is b["status"]
    c = obj("c", {"state": "Ready", "n": True})  # equal in Python, not in JSON
    assert c["status"]["n"] is True and a["status"]["n"] == 1 and type(a["status"]["n"]) is int
