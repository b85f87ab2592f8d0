"""A relist is a diff: unchanged objects stay the cached dicts, one change compiles one object, memory returns."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import tracemalloc

from fakekube import apiendpoint, eventually, fake_kube, kube_api, running, service  # noqa: F401

from controller.compile import CompileOptions
from controller.kube import KubeSource
from controller.publish import Publisher
from controller.store import APIENDPOINT, KINDS, Store
from gateway.metrics import REGISTRY

FAST = dict(timeout_seconds=30, backoff_base=0.05, backoff_cap=0.2, min_watch_seconds=0.0)


def sample(name: str, labels: dict) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0


def relists() -> float:
    return sample("crdgate_relists_total", {"kind": "APIEndpoint"})


async def force_relist(fake_kube, n: int) -> None:
    """What an API server restart does: the watch cannot resume (410), the reflector lists again."""
    before = relists()
    fake_kube.drop_watches()
    # Writes elsewhere move the resourceVersion on; the history before it is gone.
    fake_kube.create({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                      "metadata": {"namespace": "other", "name": f"elsewhere-{n}"}, "spec": {}})
    fake_kube.compact()
    await eventually(lambda: relists() > before, timeout=60, what="relist")


def filled(fake_kube, count: int) -> list[str]:
    fake_kube.create(service("shop", "svc"))
    names = [f"r{i}" for i in range(count)]
    for name in names:
        obj = apiendpoint("shop", name, backendService="svc")
        obj["metadata"]["labels"] = {"team": "shop", "tier": "web"}
        obj["metadata"]["managedFields"] = [{"manager": "kubectl", "operation": "Apply", "fieldsV1": {"f:spec": {}}}]
        fake_kube.create(obj)
    return names


async def test_relist_keeps_unchanged_objects_and_compiles_only_the_change(fake_kube, kube_api):
    names = filled(fake_kube, 100)
    store = Store()
    publisher = Publisher(store, CompileOptions(), required_kinds=KINDS)
    async with running(KubeSource(store, kube_api, **FAST).run()), running(publisher.run()):
        await eventually(lambda: publisher.ready, what="first table")
        cached = {n: store.get(APIENDPOINT, "shop", n) for n in names}
        full = sample("crdgate_table_swaps_total", {"kind": "full"})
        fake_kube.update(apiendpoint("shop", "r7", path="/moved", backendService="svc"))
        await force_relist(fake_kube, 0)
        await eventually(lambda: publisher.table.match("GET", "h", "/moved").route is not None, what="change served")
        assert all(store.get(APIENDPOINT, "shop", n) is cached[n] for n in names if n != "r7")
        assert publisher.generation == 2  # one compile for the relist, of what changed
        assert sample("crdgate_table_swaps_total", {"kind": "full"}) == full
        assert publisher._compiler.failures == 0


def held_by_controller() -> int:
    """Bytes alive that the controller allocated (the cached objects are made by controller/store.py's
    compact; the compiled state by controller/compile/): not the fake server's, nor aiohttp's buffers."""
    gc.collect()
    snap = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(True, "*/controller/*")])
    return sum(t.size for t in snap.traces)


def test_memory_returns_to_its_level_after_relists():
    """Run in a fresh interpreter: in the suite's process, tasks and caches other tests leave
    behind allocate in controller/ code too, and tracemalloc cannot tell them apart."""
    test = f"{__file__}::isolated_memory_after_relists"  # collected only with the option below
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "-o", "python_functions=isolated_*", test],
                          cwd=os.path.dirname(os.path.dirname(__file__)),
                          capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0 and "1 passed" in proc.stdout, proc.stdout[-4000:] + proc.stderr[-2000:]


async def isolated_memory_after_relists(fake_kube, kube_api):
    names = filled(fake_kube, 200)
    store = Store()
    publisher = Publisher(store, CompileOptions(), required_kinds=KINDS)
    tracemalloc.start(1)
    try:
        async with running(KubeSource(store, kube_api, **FAST).run()), running(publisher.run()):
            await eventually(lambda: publisher.ready, timeout=60, what="first table")
            # The first relist may grow a few containers once (dict and set tables sized for
            # both copies while they are compared); every later one must leave no trace.
            await force_relist(fake_kube, 0)
            level = held_by_controller()  # the cache, the compiled state, the table: all of it
            for n in range(1, 6):
                await force_relist(fake_kube, n)
                assert all(store.get(APIENDPOINT, "shop", name) is not None for name in names)
            after = held_by_controller()
    finally:
        tracemalloc.stop()
    assert after - level < level * 0.05, f"{(after - level) / 1024:.0f} KiB more after 5 relists ({level / 1024:.0f} KiB)"
