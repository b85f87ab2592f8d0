"""The status writer: merge patches on apiendpoints/status, only when something changed, leader only."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from fakekube import apiendpoint, eventually, fake_kube, kube_api, running  # noqa: F401

from controller.backoff import Backoff
from controller.kube import KubeSource
from controller.status import StatusWriter, with_transition_times
from controller.store import APIENDPOINT, KINDS, Store
from gateway.metrics import REGISTRY

FAST = dict(timeout_seconds=30, backoff_base=0.05, backoff_cap=0.2, min_watch_seconds=0.0)


# A stand-in for controller/compile/'s ObjectStatus: the writer only needs this shape.
@dataclass(frozen=True)
class Condition:
    type: str
    status: str
    reason: str
    message: str = ""


@dataclass(frozen=True)
class ObjectStatus:
    kind: str
    namespace: str
    name: str
    state: str
    reason: str
    message: str
    generation: int | None
    conditions: tuple[Condition, ...] = ()

    def to_status_dict(self) -> dict:
        return {
            "state": self.state,
            "message": self.message,
            "observedGeneration": self.generation,
            "conditions": [
                {"type": c.type, "status": c.status, "reason": c.reason, "message": c.message,
                 "observedGeneration": self.generation}
                for c in self.conditions
            ],
        }


def ready(ns: str, name: str, generation: int = 1, message: str = "serving") -> ObjectStatus:
    return ObjectStatus("APIEndpoint", ns, name, "Ready", "Ready", message, generation, (
        Condition("Accepted", "True", "Accepted"),
        Condition("ResolvedRefs", "True", "ResolvedRefs"),
        Condition("Ready", "True", "Ready", message),
    ))


def not_ready(ns: str, name: str, generation: int = 1) -> ObjectStatus:
    return ObjectStatus("APIEndpoint", ns, name, "Error", "BackendNotFound", "Service shop/svc not found", generation, (
        Condition("Accepted", "True", "Accepted"),
        Condition("ResolvedRefs", "False", "BackendNotFound", "Service shop/svc not found"),
        Condition("Ready", "False", "BackendNotFound", "Service shop/svc not found"),
    ))


def keyed(*statuses: ObjectStatus) -> dict:
    return {f"{s.kind}:{s.namespace}/{s.name}": s for s in statuses}


def patches(fake, name: str) -> list:
    return [p for m, p, q in fake.requests if m == "PATCH" and p.endswith(f"/apiendpoints/{name}/status")]


class Elector:
    """Leadership under the test's control."""

    def __init__(self, leading: bool = False):
        self._leading, self._following = asyncio.Event(), asyncio.Event()
        self.set(leading)

    def set(self, leading: bool) -> None:
        (self._leading if leading else self._following).set()
        (self._following if leading else self._leading).clear()

    @property
    def is_leader(self) -> bool:
        return self._leading.is_set()

    async def wait_leading(self) -> None:
        await self._leading.wait()

    async def wait_following(self) -> None:
        await self._following.wait()


async def test_patches_status_subresource_once(fake_kube, kube_api):
    fake_kube.create(apiendpoint("shop", "a"))
    store = Store()
    writer = StatusWriter(kube_api, None, store=store)
    async with running(KubeSource(store, kube_api, **FAST).run()), running(writer.run()):
        await eventually(lambda: store.synced(KINDS), what="sync")
        rv_before = fake_kube.get("APIEndpoint", "shop", "a")["metadata"]["resourceVersion"]
        writer.submit(keyed(ready("shop", "a")))
        await eventually(lambda: (fake_kube.get("APIEndpoint", "shop", "a").get("status") or {}).get("state") == "Ready",
                         what="status written")
        obj = fake_kube.get("APIEndpoint", "shop", "a")
        status = obj["status"]
        assert status["message"] == "serving" and status["observedGeneration"] == 1
        assert [c["type"] for c in status["conditions"]] == ["Accepted", "ResolvedRefs", "Ready"]
        assert all(c["lastTransitionTime"].endswith("Z") for c in status["conditions"])
        assert obj["metadata"]["generation"] == 1  # status writes never bump the generation
        assert obj["metadata"]["resourceVersion"] != rv_before
        assert obj["spec"] == apiendpoint("shop", "a")["spec"]

        # The same status again, before and after the watch brings our write back: no patch.
        writer.submit(keyed(ready("shop", "a")))
        await eventually(lambda: writer.idle, what="writer idle")
        await eventually(lambda: (store.get(APIENDPOINT, "shop", "a").get("status") or {}).get("state") == "Ready",
                         what="cache caught up")
        writer.submit(keyed(ready("shop", "a")))
        await eventually(lambda: writer.idle, what="writer idle")
        assert len(patches(fake_kube, "a")) == 1


async def test_transition_time_kept_while_condition_status_holds(fake_kube, kube_api):
    fake_kube.create(apiendpoint("shop", "a"))
    store = Store()
    times = iter(["2024-01-01T00:00:00+00:00", "2024-01-02T00:00:00+00:00", "2024-01-03T00:00:00+00:00"])
    from datetime import datetime

    writer = StatusWriter(kube_api, None, store=store, now=lambda: datetime.fromisoformat(next(times)))
    async with running(KubeSource(store, kube_api, **FAST).run()), running(writer.run()):
        await eventually(lambda: store.synced(KINDS), what="sync")
        writer.submit(keyed(ready("shop", "a")))
        await eventually(lambda: len(patches(fake_kube, "a")) == 1 and writer.idle, what="first write")
        writer.submit(keyed(not_ready("shop", "a")))
        await eventually(lambda: len(patches(fake_kube, "a")) == 2 and writer.idle, what="second write")
    conds = {c["type"]: c for c in fake_kube.get("APIEndpoint", "shop", "a")["status"]["conditions"]}
    assert conds["Accepted"]["lastTransitionTime"] == "2024-01-01T00:00:00Z"  # still True: kept
    assert conds["Ready"]["lastTransitionTime"] == "2024-01-02T00:00:00Z"  # True -> False: now
    assert conds["Ready"]["reason"] == "BackendNotFound"
    assert fake_kube.get("APIEndpoint", "shop", "a")["status"]["state"] == "Error"


def test_with_transition_times_is_per_condition_type():
    before = [{"type": "Ready", "status": "True", "lastTransitionTime": "T0"},
              {"type": "Accepted", "status": "True", "lastTransitionTime": "T0"}]
    after = with_transition_times(before, [{"type": "Ready", "status": "True", "message": "new words"},
                                           {"type": "Accepted", "status": "False"},
                                           {"type": "ResolvedRefs", "status": "True"}], "T1")
    assert [c["lastTransitionTime"] for c in after] == ["T0", "T1", "T1"]


async def test_only_the_leader_writes_and_newest_status_wins(fake_kube, kube_api):
    fake_kube.create(apiendpoint("shop", "a"))
    store = Store()
    elector = Elector(leading=False)
    writer = StatusWriter(kube_api, elector, store=store)
    async with running(KubeSource(store, kube_api, **FAST).run()), running(writer.run()):
        await eventually(lambda: store.synced(KINDS), what="sync")
        for i in range(20):
            writer.submit(keyed(ready("shop", "a", message=f"version {i}")))
        await asyncio.sleep(0.2)
        assert patches(fake_kube, "a") == []  # a follower never writes
        elector.set(True)
        await eventually(lambda: (fake_kube.get("APIEndpoint", "shop", "a").get("status") or {}).get("message")
                         == "version 19", what="newest written")
        await eventually(lambda: writer.idle, what="idle")
        assert len(patches(fake_kube, "a")) == 1  # coalesced

        # Leadership lost, someone else changes the status, leadership regained: we put ours back.
        elector.set(False)
        fake_kube.set_status("APIEndpoint", "shop", "a", {"state": "Pending", "message": "someone else"})
        await eventually(lambda: (store.get(APIENDPOINT, "shop", "a").get("status") or {}).get("state") == "Pending",
                         what="foreign write seen")
        elector.set(True)
        await eventually(lambda: (fake_kube.get("APIEndpoint", "shop", "a").get("status") or {}).get("message")
                         == "version 19", what="rewritten on becoming leader")


async def test_stale_generation_is_not_written(fake_kube, kube_api):
    fake_kube.create(apiendpoint("shop", "a"))
    fake_kube.update(apiendpoint("shop", "a", path="/v2"))  # generation 2
    store = Store()
    writer = StatusWriter(kube_api, None, store=store)
    async with running(KubeSource(store, kube_api, **FAST).run()), running(writer.run()):
        await eventually(lambda: store.synced(KINDS), what="sync")
        writer.submit(keyed(ready("shop", "a", generation=1)))  # compiled from the old spec
        await eventually(lambda: writer.idle, what="idle")
        assert patches(fake_kube, "a") == []
        writer.submit(keyed(ready("shop", "a", generation=2)))
        await eventually(lambda: len(patches(fake_kube, "a")) == 1, what="current generation written")
        assert fake_kube.get("APIEndpoint", "shop", "a")["status"]["observedGeneration"] == 2


async def test_without_store_reads_then_writes_and_survives_deleted_objects(fake_kube, kube_api):
    fake_kube.create(apiendpoint("shop", "a"))
    writer = StatusWriter(kube_api, None)
    notfound = REGISTRY.get_sample_value("crdgate_status_writes_total", {"kind": "APIEndpoint", "result": "notfound"}) or 0
    async with running(writer.run()):
        writer.submit(keyed(ready("shop", "a"), ready("shop", "gone")))
        await eventually(lambda: writer.idle, what="idle")
        assert fake_kube.get("APIEndpoint", "shop", "a")["status"]["state"] == "Ready"
        writer.submit(keyed(ready("shop", "a")))
        await eventually(lambda: writer.idle, what="idle")
        assert len(patches(fake_kube, "a")) == 1
    assert patches(fake_kube, "gone") == []  # its GET said 404: nothing to write

    # In the cache but gone from the server: the patch gets 404, counted, and the writer goes on.
    store = Store()
    store.replace(APIENDPOINT, [apiendpoint("shop", "ghost")])
    writer = StatusWriter(kube_api, None, store=store)
    async with running(writer.run()):
        writer.submit(keyed(ready("shop", "ghost"), ready("shop", "a", message="after the ghost")))
        await eventually(lambda: writer.idle, what="idle")
    assert (REGISTRY.get_sample_value("crdgate_status_writes_total",
                                      {"kind": "APIEndpoint", "result": "notfound"}) or 0) == notfound + 1


async def test_throttled_patch_is_retried_after_retry_after(fake_kube, kube_api):
    fake_kube.create(apiendpoint("shop", "a"))
    fake_kube.fail(429, retry_after=1, times=1, method="PATCH")
    delays: list[float] = []

    async def sleep(d: float) -> None:
        delays.append(d)
        await asyncio.sleep(d)

    writer = StatusWriter(kube_api, None, backoff=Backoff(base=0.01, cap=0.02, sleep=sleep))
    async with running(writer.run()):
        writer.submit(keyed(ready("shop", "a")))
        await eventually(lambda: (fake_kube.get("APIEndpoint", "shop", "a").get("status") or {}).get("state") == "Ready",
                         what="written after the 429")
    assert delays and delays[0] >= 1.0
    assert len(patches(fake_kube, "a")) == 2


async def test_periodic_resync_repairs_drift(fake_kube, kube_api):
    fake_kube.create(apiendpoint("shop", "a"))
    store = Store()
    writer = StatusWriter(kube_api, None, store=store, resync_seconds=0.2)
    async with running(KubeSource(store, kube_api, **FAST).run()), running(writer.run()):
        await eventually(lambda: store.synced(KINDS), what="sync")
        writer.submit(keyed(ready("shop", "a")))
        await eventually(lambda: len(patches(fake_kube, "a")) == 1, what="written")
        # Someone edits the status; the compile result did not change, so nothing is submitted.
        fake_kube.set_status("APIEndpoint", "shop", "a", {"state": "Pending", "message": "hand-edited"})
        await eventually(lambda: fake_kube.get("APIEndpoint", "shop", "a")["status"]["state"] == "Ready",
                         what="drift repaired by the resync")
        await asyncio.sleep(0.5)  # more resync rounds: nothing more to write
        assert len(patches(fake_kube, "a")) == 2
