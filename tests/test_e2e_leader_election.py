"""Outside a cluster: --kubeconfig alone selects the Kubernetes source; the Lease namespace may be missing.

Against the fake API server holding only the namespaces ``default`` and
``shop`` (it answers a create elsewhere as the real one does: 404
``namespaces "x" not found``): the gateway routes, says once at error level
what to do about the missing Lease namespace, retries quietly, and writes
status as soon as the namespace exists. ``--leader-elect off`` writes status
with no Lease at all.
"""

from __future__ import annotations

import asyncio
import json

import aiohttp

from fakekube import FakeKube, apiendpoint
from gatewayproc import GatewayProcess
from proxyharness import start_backend
from polling import eventually

LEASE_NS = "crdgate-system"


async def world(tmp_path):
    fk = FakeKube(namespaces=("default", "shop"))
    await fk.start()
    users = await start_backend("users")
    fk.create({"apiVersion": "v1", "kind": "Service", "metadata": {"namespace": "shop", "name": "users"},
               "spec": {"ports": [{"name": "http", "port": 80, "targetPort": users.port}]}})
    fk.create({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
               "metadata": {"namespace": "shop", "name": "users-x", "labels": {"kubernetes.io/service-name": "users"}},
               "addressType": "IPv4", "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": True}}],
               "ports": [{"name": "http", "port": users.port, "protocol": "TCP"}]})
    fk.create(apiendpoint("shop", "users", path="/users", backendService="users"))
    return fk, users


def log_lines(gw: GatewayProcess) -> list[dict]:
    out = []
    with open(gw.log.name, errors="replace") as f:
        for line in f:
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
    return out


def lease_posts(fk: FakeKube) -> int:
    return sum(1 for m, p, _ in fk.requests if m == "POST" and p.endswith(f"/namespaces/{LEASE_NS}/leases"))


def status_state(fk: FakeKube) -> str | None:
    return ((fk.get("APIEndpoint", "shop", "users") or {}).get("status") or {}).get("state")


async def test_missing_lease_namespace_is_reported_once_and_recovers(tmp_path):
    fk, users = await world(tmp_path)
    # No --kube: the kubeconfig says it.
    gw = GatewayProcess(None, "--kubeconfig", fk.kubeconfig(tmp_path / "kubeconfig"))
    try:
        await asyncio.get_running_loop().run_in_executor(None, gw.wait_ready, 30.0)
        async with aiohttp.ClientSession() as s:
            async with s.get(gw.base + "/users") as r:
                assert r.status == 200  # it routes meanwhile

        def lease_errors():
            return [e for e in log_lines(gw) if "Lease" in e["message"] and e["level"] in ("warning", "error")]

        await eventually(lambda: lease_errors(), 15, lambda: "the Lease error:\n" + gw.logs())
        first = lease_errors()
        assert len(first) == 1 and first[0]["level"] == "error", first
        assert "kubectl create namespace crdgate-system" in first[0]["message"]
        assert "--lease-namespace" in first[0]["message"] and "--leader-elect off" in first[0]["message"]

        # It keeps trying (three more attempts), and says nothing more.
        seen = lease_posts(fk)
        await eventually(lambda: lease_posts(fk) >= seen + 3, 20, lambda: "three more Lease attempts:\n" + gw.logs())
        assert lease_errors() == first
        assert status_state(fk) is None

        # The namespace appears: the next attempt takes the Lease and status is written.
        fk.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": LEASE_NS}})
        await eventually(lambda: status_state(fk) == "Ready", 40, lambda: "status written:\n" + gw.logs())
        assert fk.get("Lease", LEASE_NS, "crdgate-leader")["spec"]["holderIdentity"]
        await asyncio.to_thread(gw.wait_log, "reachable again")  # the log is written in batches
        assert any("reachable again" in e["message"] for e in log_lines(gw))
    finally:
        await asyncio.to_thread(gw.close)  # the fake API server shares this loop: it must answer the Lease release
        await users.runner.cleanup()
        await fk.stop()


async def test_leader_election_off_writes_status_without_a_lease(tmp_path):
    fk, users = await world(tmp_path)
    gw = GatewayProcess(None, "--kubeconfig", fk.kubeconfig(tmp_path / "kubeconfig"), "--leader-elect", "off")
    try:
        await asyncio.get_running_loop().run_in_executor(None, gw.wait_ready, 30.0)
        await eventually(lambda: status_state(fk) == "Ready", 15, lambda: "status written:\n" + gw.logs())
        assert fk.objects[fk.by_kind["Lease"]] == {}
        assert not [p for _, p, _ in fk.requests if "/leases" in p]
        async with aiohttp.ClientSession() as s:
            async with s.get(gw.admin + "/metrics") as r:
                assert "crdgate_leader 1.0" in await r.text()
    finally:
        await asyncio.to_thread(gw.close)  # the fake API server shares this loop: it must answer the Lease release
        await users.runner.cleanup()
        await fk.stop()
