"""The publisher: waits for every kind's first list, coalesces bursts, takes the cheap
path for endpoint churn, keeps the old table when a compile fails, sends changed statuses."""

from __future__ import annotations

import asyncio
import logging

import pytest

from controller.compile import compile_snapshot, refresh_endpoints
from controller.publish import Publisher
from controller.store import APIENDPOINT, ENDPOINTSLICE, SERVICE, Store
from gateway import metrics
from kobjects import apiendpoint, endpointslice, service
from polling import eventually

KINDS = (APIENDPOINT, SERVICE, ENDPOINTSLICE)


class Recorder:
    """Counts compiles and refreshes, and can be told to fail."""

    def __init__(self):
        self.compiles = 0
        self.refreshes = 0
        self.fail = False

    def compile(self, snapshot, options, generation):
        self.compiles += 1
        if self.fail:
            raise RuntimeError("compiler bug")
        return compile_snapshot(snapshot, options, generation)

    def refresh(self, previous, snapshot, generation):
        self.refreshes += 1
        return refresh_endpoints(previous, snapshot, generation)


async def settle() -> None:
    """Give the publisher a few loop turns (and its worker thread time) to react."""
    for _ in range(20):
        await asyncio.sleep(0.005)


@pytest.fixture
async def running():
    store = Store(KINDS)
    rec = Recorder()
    tables, status_batches = [], []
    pub = Publisher(store, on_table=tables.append, on_statuses=status_batches.append, required_kinds=KINDS,
                    compiler=rec.compile, refresh=rec.refresh)
    task = asyncio.create_task(pub.run())
    yield store, pub, rec, tables, status_batches
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def fill(store: Store, addresses=("10.0.0.1",)) -> None:
    store.replace(APIENDPOINT, [apiendpoint("users", {"path": "/users", "backendService": "users"})])
    store.replace(SERVICE, [service("users")])
    store.replace(ENDPOINTSLICE, [endpointslice("users", list(addresses))])


async def test_waits_for_every_required_kind(running):
    store, pub, rec, tables, _ = running
    store.replace(APIENDPOINT, [apiendpoint("users", {"path": "/users", "backendService": "users"})])
    store.replace(SERVICE, [service("users")])
    await settle()
    assert rec.compiles == 0 and tables == [] and not pub.ready and not pub.first_published.is_set()
    store.replace(ENDPOINTSLICE, [endpointslice("users", ["10.0.0.1"])])
    await asyncio.wait_for(pub.first_published.wait(), 3)
    assert pub.ready and rec.compiles == 1
    assert tables[-1] is pub.table and pub.table.generation == 1
    assert pub.table.match("GET", "h", "/users").route is not None


async def test_bursts_coalesce_and_the_newest_wins(running):
    store, pub, rec, tables, _ = running
    fill(store)
    await eventually(lambda: pub.ready)
    for i in range(50):
        store.apply(APIENDPOINT, "ADDED", apiendpoint(f"r{i}", {"path": f"/r{i}", "backendService": "users"}))
    await eventually(lambda: len(pub.table) == 51)
    await settle()
    assert rec.compiles <= 3  # 50 events, a handful of compiles at most
    assert len(tables) == rec.compiles
    assert [t.generation for t in tables] == list(range(1, len(tables) + 1))


async def test_endpoint_churn_takes_the_cheap_path(running):
    store, pub, rec, tables, _ = running
    fill(store)
    await eventually(lambda: pub.ready)
    first = pub.table
    swaps = metrics.TABLE_SWAPS.labels("endpoints")._value.get()
    store.apply(ENDPOINTSLICE, "MODIFIED", endpointslice("users", ["10.0.0.1", "10.0.0.2"]))
    await eventually(lambda: pub.table is not first)
    assert rec.compiles == 1 and rec.refreshes == 1
    assert metrics.TABLE_SWAPS.labels("endpoints")._value.get() == swaps + 1
    assert pub.table.routes is first.routes  # routes untouched
    assert [e.host for e in pub.table.endpoints["shop/users:80"].endpoints] == ["10.0.0.1", "10.0.0.2"]
    assert pub.table.generation == 2
    # A Service change is not endpoint-only: full compile.
    store.apply(SERVICE, "MODIFIED", service("users", ports=[{"name": "http", "port": 81, "targetPort": 8080}]))
    await eventually(lambda: rec.compiles == 2)


async def test_failed_compile_keeps_the_previous_table(running, caplog):
    store, pub, rec, tables, _ = running
    fill(store)
    await eventually(lambda: pub.ready)
    good = pub.table
    rec.fail = True
    with caplog.at_level(logging.ERROR, logger="crdgate.controller"):
        store.apply(APIENDPOINT, "ADDED", apiendpoint("more", {"path": "/more", "backendService": "users"}))
        await eventually(lambda: pub.failures == 1)
    assert pub.table is good and pub.generation == 1 and tables == [good]
    assert "still serving generation 1" in caplog.text
    # After a failure even an endpoint-only change recompiles everything.
    rec.fail = False
    store.apply(ENDPOINTSLICE, "MODIFIED", endpointslice("users", ["10.0.0.9"]))
    await eventually(lambda: pub.generation == 2)
    assert rec.refreshes == 0
    assert pub.table.match("GET", "h", "/more").route is not None


async def test_only_changed_statuses_are_delivered(running, caplog):
    store, pub, rec, tables, batches = running
    with caplog.at_level(logging.WARNING, logger="crdgate.controller"):
        store.replace(APIENDPOINT, [apiendpoint("users", {"path": "/users", "backendService": "users"}),
                                    apiendpoint("bad", {"path": "bad", "backendService": "users"})])
        store.replace(SERVICE, [service("users")])
        store.replace(ENDPOINTSLICE, [])
        await eventually(lambda: len(batches) == 1)
    assert {k: s.state for k, s in batches[0].items()} == {"APIEndpoint:shop/users": "Pending", "APIEndpoint:shop/bad": "Error"}
    assert "APIEndpoint shop/bad: Error (InvalidSpec): spec.path: must start with '/'" in caplog.text
    store.apply(ENDPOINTSLICE, "ADDED", endpointslice("users", ["10.0.0.1"]))
    await eventually(lambda: len(batches) == 2)
    assert {k: s.state for k, s in batches[1].items()} == {"APIEndpoint:shop/users": "Ready"}
    assert metrics.OBJECTS.labels("APIEndpoint", "Ready")._value.get() == 1
    assert metrics.OBJECTS.labels("APIEndpoint", "Error")._value.get() == 1


async def test_slow_status_writer_does_not_hold_up_tables():
    store = Store(KINDS)
    release = asyncio.Event()
    delivered = []

    async def slow_writer(batch):
        delivered.append(dict(batch))
        await release.wait()

    pub = Publisher(store, on_statuses=slow_writer, required_kinds=KINDS)
    task = asyncio.create_task(pub.run())
    try:
        fill(store)
        await eventually(lambda: pub.ready and len(delivered) == 1)
        store.apply(APIENDPOINT, "ADDED", apiendpoint("a", {"path": "/a", "backendService": "users"}))
        await eventually(lambda: pub.generation == 2)  # published while the writer is stuck
        store.apply(APIENDPOINT, "ADDED", apiendpoint("b", {"path": "/b", "backendService": "users"}))
        await eventually(lambda: pub.generation == 3)
        assert len(delivered) == 1
        release.set()
        await eventually(lambda: len(delivered) == 2)
        assert set(delivered[1]) == {"APIEndpoint:shop/a", "APIEndpoint:shop/b"}  # merged while waiting
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_default_compiler_builds_on_the_previous_table_and_sends_only_what_changed():
    store = Store(KINDS)
    tables, batches = [], []
    pub = Publisher(store, on_table=tables.append, on_statuses=batches.append, required_kinds=KINDS)
    task = asyncio.create_task(pub.run())
    try:
        fill(store)
        await eventually(lambda: pub.ready and len(batches) == 1)
        first = pub.table
        # Our own status write coming back through the watch: nothing to compile, nothing to send,
        # no table swapped; the compiler lets go of the previous version of the object.
        echoed = dict(store.get(APIENDPOINT, "shop", "users"), status={"state": "Ready"})
        store.apply(APIENDPOINT, "MODIFIED", echoed)
        entries = pub._compiler._state.entries
        await eventually(lambda: entries["APIEndpoint:shop/users"].obj is echoed, what="echo adopted")
        assert pub.generation == 1 and pub.table is first and len(tables) == 1
        store.apply(APIENDPOINT, "ADDED", apiendpoint("orders", {"path": "/orders", "backendService": "users"}))
        await eventually(lambda: pub.generation == 2 and len(batches) == 2)
        assert set(batches[1]) == {"APIEndpoint:shop/orders"}
        assert pub.table.match("GET", "h", "/orders").route.name == "shop/orders"
        assert first.match("GET", "h", "/orders").route is None  # the table that was live is untouched
        assert metrics.OBJECTS.labels("APIEndpoint", "Ready")._value.get() == 2
        store.apply(APIENDPOINT, "DELETED", apiendpoint("users", {"path": "/users", "backendService": "users"}))
        await eventually(lambda: pub.generation == 3)
        assert metrics.OBJECTS.labels("APIEndpoint", "Ready")._value.get() == 1
        assert pub._compiler.failures == 0
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
