"""Lease leader election between replicas: one leader, optimistic concurrency, release and failover."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from fakekube import eventually, fake_kube, kube_api, running  # noqa: F401

from controller.kubeapi import KubeAPI
from controller.leader import LeaderElector
from gateway.metrics import REGISTRY

NS, NAME = "crdgate-system", "crdgate-leader"
QUICK = dict(lease_duration=2.0, renew_interval=0.2, renew_deadline=1.0, retry_interval=0.1)


def lease(fake) -> dict:
    return fake.get("Lease", NS, NAME)


async def test_one_leader_then_failover_on_release(fake_kube, kube_api):
    electors = {i: LeaderElector(kube_api, NS, NAME, i, **QUICK) for i in ("one", "two")}
    tasks = {i: asyncio.ensure_future(e.run()) for i, e in electors.items()}
    try:
        await eventually(lambda: any(e.is_leader for e in electors.values()), what="a leader")
        for _ in range(15):  # several renew rounds: never two leaders
            assert sum(e.is_leader for e in electors.values()) == 1
            await asyncio.sleep(0.05)
        leader = next(i for i, e in electors.items() if e.is_leader)
        follower = "two" if leader == "one" else "one"
        spec = lease(fake_kube)["spec"]
        assert spec["holderIdentity"] == leader
        assert spec["leaseDurationSeconds"] == 2
        transitions = spec["leaseTransitions"]

        # The leader shuts down and releases: the follower takes over without waiting for expiry.
        tasks[leader].cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await tasks[leader]
        assert not electors[leader].is_leader
        await eventually(lambda: electors[follower].is_leader, timeout=1.5, what="failover after release")
        spec = lease(fake_kube)["spec"]
        assert spec["holderIdentity"] == follower
        assert spec["leaseTransitions"] == transitions + 1
    finally:
        for t in tasks.values():
            t.cancel()
        await asyncio.gather(*tasks.values(), return_exceptions=True)


async def test_release_empties_the_holder(fake_kube, kube_api):
    one = LeaderElector(kube_api, NS, NAME, "one", **QUICK)
    async with running(one.run()):
        await eventually(lambda: one.is_leader, what="leader")
        assert REGISTRY.get_sample_value("crdgate_leader") == 1.0
    spec = lease(fake_kube)["spec"]
    assert spec["holderIdentity"] == ""
    assert spec["leaseDurationSeconds"] == 1
    assert REGISTRY.get_sample_value("crdgate_leader") == 0.0


async def test_failover_when_the_leader_stops_renewing(fake_kube, kube_api):
    one = LeaderElector(kube_api, NS, NAME, "one", **QUICK)
    two = LeaderElector(kube_api, NS, NAME, "two", **QUICK)

    async def crash() -> None:  # a leader that dies without releasing
        pass

    one.release = crash
    async with running(one.run()):
        await eventually(lambda: one.is_leader, what="one leads")
    async with running(two.run()):
        await asyncio.sleep(0.5)
        assert not two.is_leader  # the lease is still valid
        await eventually(lambda: two.is_leader, timeout=4, what="takeover after expiry")
    assert lease(fake_kube)["spec"]["holderIdentity"] == ""  # two released on exit


def hold_reads_until_both_answered(api: KubeAPI) -> None:
    """Each GET's answer is held until two GETs have been answered: both electors
    then PUT from the same resourceVersion, however the event loop interleaves
    them (under load, one could otherwise read the Lease after the other had
    already taken it, and never PUT)."""
    request = api.request
    both = asyncio.Event()
    reads = []

    async def held(method: str, path: str, **kwargs):
        answer = await request(method, path, **kwargs)
        if method == "GET":
            reads.append(path)
            if len(reads) == 2:
                both.set()
            await asyncio.wait_for(both.wait(), 5)
        return answer

    api.request = held


async def test_concurrent_takeover_only_one_wins(fake_kube, kube_api):
    fake_kube.create({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                      "metadata": {"name": NAME, "namespace": NS}, "spec": {"holderIdentity": ""}})
    hold_reads_until_both_answered(kube_api)
    one = LeaderElector(kube_api, NS, NAME, "one", **QUICK)
    two = LeaderElector(kube_api, NS, NAME, "two", **QUICK)
    # Both read the same resourceVersion; the second PUT must get 409 Conflict.
    results = await asyncio.gather(one._try_acquire_or_renew(0.0), two._try_acquire_or_renew(0.0))
    assert sorted(results, key=str) == sorted([True, None], key=str)
    puts = [p for m, p, q in fake_kube.requests if m == "PUT"]
    winner = lease(fake_kube)["spec"]["holderIdentity"]
    assert winner in ("one", "two")
    assert len(puts) == 2


async def test_leader_steps_down_when_it_cannot_renew(fake_kube, kube_api):
    one = LeaderElector(kube_api, NS, NAME, "one", **QUICK)
    async with running(one.run()):
        await eventually(lambda: one.is_leader, what="leader")
        await fake_kube.stop()
        await eventually(lambda: not one.is_leader, timeout=3, what="stepped down after renew deadline")
        await fake_kube.start(fake_kube.port)
        await eventually(lambda: one.is_leader, timeout=3, what="leads again")


def test_timings_must_nest():
    with pytest.raises(ValueError, match="renew_deadline"):
        LeaderElector(KubeAPI(None), lease_duration=5, renew_interval=2, renew_deadline=6)


async def test_missing_lease_namespace_is_one_error_then_quiet_retries_until_it_exists(fake_kube, kube_api, caplog):
    from controller.backoff import Backoff

    fake_kube.strict_namespaces = True  # the real server's answer: 404 namespaces "crdgate-system" not found
    # The API server answers: attempts come every retry_interval, not after the growing
    # backoff kept for failures of the API itself (30 s here would time the test out).
    one = LeaderElector(kube_api, NS, NAME, "one", **QUICK, failure_backoff=Backoff(base=30.0, cap=60.0))

    def posts():
        return sum(1 for m, p, _ in fake_kube.requests if m == "POST" and p.endswith("/leases"))

    with caplog.at_level("DEBUG", logger="crdgate.controller.leader"):
        async with running(one.run()):
            await eventually(lambda: posts() >= 5, what="five attempts")
            loud = [r for r in caplog.records if r.levelname in ("WARNING", "ERROR")]
            assert [r.levelname for r in loud] == ["ERROR"]
            assert "kubectl create namespace crdgate-system" in loud[0].getMessage()
            assert not one.is_leader
            fake_kube.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
            await eventually(lambda: one.is_leader, what="leads once the namespace exists")
    assert any("reachable again" in r.getMessage() for r in caplog.records)
    assert one.failure_backoff.attempt == 0
