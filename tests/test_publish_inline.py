"""Where a compile runs: a change to a few routes on the event loop (a thread would
hold the GIL as long, plus the hand-offs), anything bigger in a worker thread."""

from __future__ import annotations

import asyncio
import threading

import pytest

from controller.compile import Compiler
from controller.publish import INLINE_OBJECTS, Publisher
from controller.store import APIENDPOINT, ENDPOINTSLICE, SERVICE, Store
from kobjects import apiendpoint, endpointslice, service
from polling import eventually

KINDS = (APIENDPOINT, SERVICE, ENDPOINTSLICE)


def route(i: int) -> dict:
    return apiendpoint(f"r{i}", {"path": f"/r/{i}", "backendService": "users"})


@pytest.fixture
async def running():
    store = Store(KINDS)
    compiler = Compiler()
    on_main: list[bool] = []  # per compile: did it run on the event loop's thread

    def compile(snapshot, options, generation):
        on_main.append(threading.current_thread() is threading.main_thread())
        return compiler.compile(snapshot, options, generation)

    tables = []
    pub = Publisher(store, on_table=tables.append, required_kinds=KINDS, compiler=compile,
                    refresh=compiler.refresh, adopt=compiler.adopt)
    task = asyncio.create_task(pub.run())
    store.replace(APIENDPOINT, [route(0)])
    store.replace(SERVICE, [service("users")])
    store.replace(ENDPOINTSLICE, [endpointslice("users", ["10.0.0.1"])])
    await eventually(lambda: len(tables) == 1)
    yield store, on_main, tables
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_the_first_compile_runs_in_a_thread(running):
    _, on_main, _ = running
    assert on_main == [False]


async def test_a_changed_route_compiles_on_the_event_loop(running):
    store, on_main, tables = running
    store.update(APIENDPOINT, {"shop/r1": route(1)}, [])
    await eventually(lambda: len(tables) == 2)
    store.update(APIENDPOINT, {}, ["shop/r0"])
    await eventually(lambda: len(tables) == 3)
    assert on_main == [False, True, True]
    assert [r.path for r in tables[-1].routes] == ["/r/1"]


async def test_many_routes_or_what_routes_read_compile_in_a_thread(running):
    store, on_main, tables = running
    burst = {f"shop/r{i}": route(i) for i in range(1, INLINE_OBJECTS + 2)}
    store.update(APIENDPOINT, burst, [])
    await eventually(lambda: len(tables) == 2)
    store.update(SERVICE, {"shop/users": service("users", ports=[{"name": "http", "port": 80, "targetPort": 9090}])}, [])
    await eventually(lambda: len(tables) == 3)
    assert on_main == [False, False, False]
