"""The status writer at scale: several patches in flight, never above --status-qps/--status-burst."""

from __future__ import annotations

import asyncio

import pytest
from fakekube import apiendpoint, eventually, fake_kube, kube_api, running  # noqa: F401
from test_kube_status_writer import keyed, ready

from controller.kube import KubeSource
from controller.status import TokenBucket, StatusWriter
from controller.store import KINDS, Store

FAST = dict(timeout_seconds=30, backoff_base=0.05, backoff_cap=0.2, min_watch_seconds=0.0)


async def test_concurrent_takers_never_share_a_token():
    now = [0.0]
    granted: list[float] = []

    async def sleep(d: float) -> None:
        await asyncio.sleep(0)
        now[0] = max(now[0], d)  # every take happens at 0: each waiter wakes at its own delay

    bucket = TokenBucket(10.0, 5, clock=lambda: now[0], sleep=sleep)

    async def taker() -> None:
        await bucket.take()
        granted.append(now[0])

    await asyncio.gather(*(taker() for _ in range(25)))
    # 5 at once, then one every 0.1 s: the 25th at 2.0 s, never two on one token.
    assert sorted(granted)[:5] == [0.0] * 5
    assert max(granted) == pytest.approx(2.0)
    for t in (0.0, 0.5, 1.0, 1.5, 2.0):
        assert sum(1 for g in granted if g <= t + 1e-9) <= 5 + round(t * 10)


def test_bucket_refuses_a_rate_it_cannot_keep():
    with pytest.raises(ValueError, match="rate > 0"):
        TokenBucket(0, 10)


async def test_writes_overlap_and_stay_within_the_rate(fake_kube, kube_api):
    names = [f"r{i}" for i in range(60)]
    for name in names:
        fake_kube.create(apiendpoint("shop", name))
    fake_kube.latency = 0.05  # a server 50 ms away: one write at a time would do 20/s
    store = Store()
    writer = StatusWriter(kube_api, None, store=store, qps=40, burst=10, concurrency=8)
    async with running(KubeSource(store, kube_api, **FAST).run()), running(writer.run()):
        await eventually(lambda: store.synced(KINDS), what="sync")
        start = len(fake_kube.requests)
        writer.submit(keyed(*(ready("shop", n) for n in names)))
        await eventually(lambda: all((fake_kube.get("APIEndpoint", "shop", n).get("status") or {}).get("state")
                                     == "Ready" for n in names), timeout=30, what="every status written")
    times = [t for (m, _, _), t in zip(fake_kube.requests[start:], fake_kube.request_times[start:]) if m == "PATCH"]
    assert len(times) == len(names)
    # Never more than the burst plus what the rate refills, in any second (one of slack for clocks).
    for i, t in enumerate(times):
        assert sum(1 for u in times[i:] if u < t + 1.0) <= 10 + 40 + 1
    assert 1 < fake_kube.peak_in_flight <= 8


async def test_a_newer_status_waits_for_the_write_in_flight_of_the_same_object(fake_kube, kube_api):
    fake_kube.create(apiendpoint("shop", "a"))
    fake_kube.latency = 0.1
    writer = StatusWriter(kube_api, None, concurrency=8)
    async with running(writer.run()):
        writer.submit(keyed(ready("shop", "a", message="first")))
        await eventually(lambda: fake_kube.in_flight > 0, what="first write in flight")
        writer.submit(keyed(ready("shop", "a", message="second")))
        await eventually(lambda: writer.idle, timeout=10, what="writer idle")
    assert fake_kube.get("APIEndpoint", "shop", "a")["status"]["message"] == "second"
    assert fake_kube.peak_in_flight == 1  # GET then PATCH, one after the other, never the two writes at once
