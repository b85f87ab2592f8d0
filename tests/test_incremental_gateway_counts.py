"""One HTTPRoute change at many routes: the Gateway's attachedRoutes move by what changed, never by a recount.

The incremental compiler keeps the per-listener counts and moves them with the
HTTPRoute statuses that changed (controller/compile/incremental.py, step 4);
the Gateway itself is not parsed again while it, the GatewayClasses, Secrets
and ReferenceGrants are unchanged (listeners.py ``gateway_statuses`` bases).
These tests count the calls a single change makes, so that a change that makes
one HTTPRoute edit cost O(routes) again fails here rather than only in the
propagation benchmark.
"""

from __future__ import annotations

import pytest

import controller.compile.incremental as incremental
import controller.compile.listeners as listeners
import controller.compile.objects as objects
from bench import manifests
from controller.compile import CompileOptions, Compiler, compile_snapshot
from controller.store import GATEWAY, HTTPROUTE, KINDS, Store, compact

ROUTES = 300
GW = f"{GATEWAY}:{manifests.NAMESPACE}/{manifests.GATEWAY_NAME}"
T0 = "2024-05-01T10:00:00Z"


def _stored(doc: dict, n: int) -> dict:
    meta = {**doc["metadata"], "uid": f"00000000-0000-4000-8000-{n:012d}", "generation": 1,
            "creationTimestamp": T0, "resourceVersion": str(n)}
    return compact({**doc, "metadata": meta})


class Counting:
    """Wraps a module function and counts its calls."""

    def __init__(self, monkeypatch, module, name: str):
        self.calls = 0
        fn = getattr(module, name)

        def counted(*args, **kwargs):
            self.calls += 1
            return fn(*args, **kwargs)

        monkeypatch.setattr(module, name, counted)


@pytest.fixture()
def world():
    store = Store()
    for kind in KINDS:
        store.replace(kind, [])
    by_kind: dict[str, list[dict]] = {}
    for n, doc in enumerate(manifests.gateway_setup({"bench-backend": 18301})):
        by_kind.setdefault(doc["kind"], []).append(_stored(doc, n + 1))
    for kind, docs in by_kind.items():
        store.replace(kind, docs)
    routes = manifests.httproute_filler(ROUTES, "bench-backend")
    store.replace(HTTPROUTE, [_stored(d, 100 + i) for i, d in enumerate(d for docs in routes.values() for d in docs)])
    compiler = Compiler(CompileOptions())
    snap = store.snapshot()
    result = compiler.compile(snap, CompileOptions(), 1)
    assert _attached(result) == ROUTES
    return store, compiler, [snap]


def _attached(result) -> int:
    (listener,) = result.statuses[GW].listeners
    return listener.attached_routes


def _one_change(world, monkeypatch, event: str, doc: dict):
    store, compiler, snaps = world
    compiled = Counting(monkeypatch, objects, "compile_httproute")
    # a recount over every route (listeners.count_attached) goes through listeners' own name
    counted = Counting(monkeypatch, incremental, "attached_listeners")
    recounted = Counting(monkeypatch, listeners, "attached_listeners")
    parsed = Counting(monkeypatch, listeners, "parse")
    store.apply(HTTPROUTE, event, _stored(doc, 10_000 + len(snaps)))
    snap = store.snapshot(since=snaps[-1].version)
    snaps.append(snap)
    result = compiler.compile(snap, CompileOptions(), len(snaps))
    calls = compiled.calls, counted.calls + recounted.calls, parsed.calls
    assert result.incremental and not compiler.failures
    fresh = compile_snapshot(snap)
    assert result.statuses[GW] == fresh.statuses[GW]  # the counts are exactly a recount's
    return (result, *calls)


def test_adding_one_route_counts_it_without_a_recount(world, monkeypatch):
    doc = manifests.http_route("new", "/new", "bench-backend", path_type="Exact")
    result, compiled, counted, parsed = _one_change(world, monkeypatch, "ADDED", doc)
    assert _attached(result) == ROUTES + 1
    assert compiled == 1  # only the new route is compiled
    assert counted <= 2  # its status before and after, not every route's
    assert parsed == 0  # the Gateway is not parsed again


def test_deleting_one_route_uncounts_it(world, monkeypatch):
    doc = manifests.http_route("h-7", manifests.httproute_filler_path(7), "bench-backend")
    result, compiled, counted, parsed = _one_change(world, monkeypatch, "DELETED", doc)
    assert _attached(result) == ROUTES - 1
    assert compiled == 0 and counted <= 2 and parsed == 0


def test_a_route_moved_to_another_gateway_leaves_the_count(world, monkeypatch):
    doc = manifests.http_route("h-8", manifests.httproute_filler_path(8), "bench-backend")
    doc["spec"]["parentRefs"] = [{"name": "elsewhere"}]
    result, compiled, counted, parsed = _one_change(world, monkeypatch, "MODIFIED", doc)
    assert _attached(result) == ROUTES - 1
    assert compiled == 1 and counted <= 2 and parsed == 0


def test_a_route_edit_that_keeps_its_listener_does_not_redo_the_gateway(world, monkeypatch):
    statuses = Counting(monkeypatch, incremental, "gateway_statuses")
    doc = manifests.http_route("h-9", "/elsewhere", "bench-backend")
    result, compiled, counted, parsed = _one_change(world, monkeypatch, "MODIFIED", doc)
    assert _attached(result) == ROUTES
    assert compiled == 1 and counted <= 2 and parsed == 0
    assert statuses.calls == 0  # nothing a Gateway shows has moved
