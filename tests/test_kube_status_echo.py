"""The echo of our own status write: cached, never compiled, no table swapped."""

from __future__ import annotations

from fakekube import apiendpoint, eventually, fake_kube, kube_api, running, service  # noqa: F401

from controller.compile import CompileOptions
from controller.kube import KubeSource
from controller.publish import Publisher
from controller.status import StatusWriter
from controller.store import APIENDPOINT, KINDS, Store, same_input
from gateway.metrics import REGISTRY

FAST = dict(timeout_seconds=30, backoff_base=0.05, backoff_cap=0.2, min_watch_seconds=0.0)
N = 40


def sample(name: str, labels: dict) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0


def swaps() -> float:
    return sum(sample("crdgate_table_swaps_total", {"kind": k}) for k in ("full", "incremental", "endpoints"))


def echoes() -> float:
    return sample("crdgate_store_status_only_updates_total", {"kind": "APIEndpoint"})


def test_same_input_ignores_status_and_bookkeeping_only():
    a = apiendpoint("shop", "a")
    a["metadata"].update(resourceVersion="1", generation=1, labels={"team": "x"})
    b = {**a, "metadata": {**a["metadata"], "resourceVersion": "2", "managedFields": [{}]}, "status": {"state": "Ready"}}
    assert same_input(a, b)
    assert not same_input(a, {**b, "metadata": {**b["metadata"], "labels": {"team": "y"}}})
    assert not same_input(a, {**b, "metadata": {**b["metadata"], "annotations": {"x": "1"}}})
    assert not same_input(a, {**b, "spec": {**a["spec"], "path": "/b"}})


async def test_status_echoes_cost_no_compile_and_no_swap(fake_kube, kube_api):
    fake_kube.create(service("shop", "svc"))
    names = [f"r{i}" for i in range(N)]
    for name in names:
        fake_kube.create(apiendpoint("shop", name, backendService="svc"))
    store = Store()
    writer = StatusWriter(kube_api, None, store=store, resync_seconds=None)
    publisher = Publisher(store, CompileOptions(), on_statuses=writer.submit, required_kinds=KINDS)
    # Counted before anything runs: a status can be written and echoed between the
    # first table and the first poll that sees it.
    echoes_before = echoes()
    async with running(KubeSource(store, kube_api, **FAST).run()), running(writer.run()), running(publisher.run()):
        await eventually(lambda: publisher.ready, what="first table")
        swaps_before = swaps()
        first = publisher.table

        def written_and_echoed() -> bool:
            return all(((store.get(APIENDPOINT, "shop", n) or {}).get("status") or {}).get("observedGeneration") == 1
                       for n in names)

        await eventually(written_and_echoed, timeout=30, what="every status written and echoed back")
        await eventually(lambda: writer.idle, what="writer idle")
        await eventually(lambda: echoes() - echoes_before >= N, what="echoes counted")
        assert swaps() == swaps_before
        assert publisher.table is first and publisher.generation == 1
        # The compiler holds the cached dicts: the versions they replaced can go.
        entries = publisher._compiler._state.entries
        await eventually(lambda: all(entries[f"APIEndpoint:shop/{n}"].obj is store.get(APIENDPOINT, "shop", n)
                                     for n in names), what="compiler adopted the echoed objects")

        # A real change still compiles, once.
        fake_kube.update(apiendpoint("shop", "r0", path="/moved", backendService="svc"))
        await eventually(lambda: publisher.table.match("GET", "h", "/moved").route is not None, what="change served")
        assert swaps() >= swaps_before + 1


def test_settle_reuses_what_is_cached():
    store = Store()
    raw = apiendpoint("shop", "a")
    raw["metadata"].update(resourceVersion="5", generation=1, labels={"team": "x"})
    store.replace(APIENDPOINT, [store.settle(APIENDPOINT, raw)])
    cached = store.get(APIENDPOINT, "shop", "a")
    # The same version again (a relist): the cached dict, whatever else came with it.
    assert store.settle(APIENDPOINT, {**raw, "metadata": {**raw["metadata"]}}) is cached
    # The echo of a status write: a new dict for the new status, the rest shared with the cached one.
    echo = {**raw, "metadata": {**raw["metadata"], "resourceVersion": "6"}, "status": {"state": "Ready"}}
    settled = store.settle(APIENDPOINT, echo)
    assert settled is not cached and settled["status"] == {"state": "Ready"}
    assert settled["spec"] is cached["spec"] and settled["metadata"]["labels"] is cached["metadata"]["labels"]
    assert settled["metadata"]["resourceVersion"] == "6"
    version = store.version
    store.apply(APIENDPOINT, "MODIFIED", settled)
    assert store.get(APIENDPOINT, "shop", "a") is settled and store.version == version  # nothing to compile
    assert store.take_status_only() == {APIENDPOINT: {"shop/a"}}
    # A change of spec is a change.
    moved = store.settle(APIENDPOINT, {**echo, "metadata": {**echo["metadata"], "resourceVersion": "7"},
                                       "spec": {**raw["spec"], "path": "/b"}})
    store.apply(APIENDPOINT, "MODIFIED", moved)
    assert store.version == version + 1
