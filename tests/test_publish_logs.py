"""What the publisher tells a user at info: one line per table served, one per object state change,
and the swaps metric says which updates were incremental."""

from __future__ import annotations

import asyncio
import logging

import pytest

from controller.compile import Compiler
from controller.publish import Publisher
from controller.store import APIENDPOINT, ENDPOINTSLICE, SERVICE, Store
from gateway import metrics
from kobjects import apiendpoint, endpointslice, service
from polling import eventually

KINDS = (APIENDPOINT, SERVICE, ENDPOINTSLICE)


@pytest.fixture
async def running(caplog):
    caplog.set_level(logging.INFO, logger="crdgate")
    store = Store(KINDS)
    pub = Publisher(store, required_kinds=KINDS)
    task = asyncio.create_task(pub.run())
    yield store, pub
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def lines(caplog, start: int = 0) -> list[str]:
    return [r.getMessage() for r in caplog.records[start:] if r.name.startswith("crdgate")]


def served(caplog, start: int = 0) -> list[str]:
    return [m for m in lines(caplog, start) if m.startswith("serving routing table")]


def swaps(kind: str) -> float:
    return metrics.TABLE_SWAPS.labels(kind)._value.get()


async def test_a_served_table_and_a_state_change_are_one_line_each(running, caplog):
    store, pub = running
    store.replace(APIENDPOINT, [apiendpoint("users", {"path": "/users", "backendService": "users"}),
                                apiendpoint("orders", {"path": "/orders", "backendService": "orders"})])
    store.replace(SERVICE, [service("users")])
    store.replace(ENDPOINTSLICE, [endpointslice("users", ["10.0.0.1"])])
    await eventually(lambda: pub.generation == 1 and served(caplog))
    (first,) = served(caplog)
    assert first.startswith("serving routing table generation 1: 2 route(s), from 4 object(s), compiled in ")
    assert first.endswith(" ms")
    # The first table: the Ready object is counted in that line, the broken one is named.
    changes = [m for m in lines(caplog) if m.startswith("APIEndpoint ")]
    assert changes == [m for m in changes if m.startswith("APIEndpoint shop/orders: Error (BackendNotFound): ")]
    assert len(changes) == 1

    mark = len(caplog.records)
    store.apply(SERVICE, "ADDED", service("orders"))
    store.apply(ENDPOINTSLICE, "ADDED", endpointslice("orders", ["10.0.0.2"]))
    await eventually(lambda: pub.last_statuses["APIEndpoint:shop/orders"].state == "Ready" and served(caplog, mark))
    (second,) = served(caplog, mark)
    assert second.startswith("serving routing table generation 2: 2 route(s), 2 object(s) changed, compiled in ")
    (change,) = [m for m in lines(caplog, mark) if m.startswith("APIEndpoint ")]
    status = pub.last_statuses["APIEndpoint:shop/orders"]
    assert change == f"APIEndpoint shop/orders: Ready (was Error): {status.message}"

    # A new object is a change of state; a recompile that changes nobody's state logs the table only.
    mark = len(caplog.records)
    store.apply(APIENDPOINT, "ADDED", apiendpoint("more", {"path": "/more", "backendService": "users"}))
    await eventually(lambda: "APIEndpoint:shop/more" in pub.last_statuses and served(caplog, mark))
    assert [m for m in lines(caplog, mark) if m.startswith("APIEndpoint ")] == ["APIEndpoint shop/more: Ready: routed"]
    mark = len(caplog.records)
    store.apply(ENDPOINTSLICE, "MODIFIED", endpointslice("users", ["10.0.0.1", "10.0.0.3"]))
    await eventually(lambda: served(caplog, mark))
    assert served(caplog, mark)[0].endswith(" ms (endpoints only)")
    assert [m for m in lines(caplog, mark) if m.startswith("APIEndpoint ")] == []


async def test_the_swaps_metric_labels_incremental_compiles(running):
    store, pub = running
    full, incremental, endpoints = swaps("full"), swaps("incremental"), swaps("endpoints")
    store.replace(APIENDPOINT, [apiendpoint("users", {"path": "/users", "backendService": "users"})])
    store.replace(SERVICE, [service("users")])
    store.replace(ENDPOINTSLICE, [endpointslice("users", ["10.0.0.1"])])
    await eventually(lambda: pub.generation == 1)
    assert (swaps("full"), swaps("incremental")) == (full + 1, incremental)
    store.apply(APIENDPOINT, "ADDED", apiendpoint("more", {"path": "/more", "backendService": "users"}))
    await eventually(lambda: pub.generation == 2)
    assert (swaps("full"), swaps("incremental")) == (full + 1, incremental + 1)
    store.apply(ENDPOINTSLICE, "MODIFIED", endpointslice("users", ["10.0.0.1", "10.0.0.3"]))
    await eventually(lambda: pub.generation == 3)
    assert swaps("endpoints") == endpoints + 1
    assert isinstance(pub._compiler, Compiler)
