"""End to end: `crdgate run --kube` against the fake API server, real backends, real clients.

Objects created through the API are routed; status is written back with
conditions; losing the API server keeps the last table serving; changes made
while it was away arrive after it returns.
"""

from __future__ import annotations

import asyncio

import aiohttp

from fakekube import FakeKube, apiendpoint
from gatewayproc import GatewayProcess
from proxyharness import start_backend
from polling import eventually


def service(ns, name, port):
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"namespace": ns, "name": name},
            "spec": {"ports": [{"name": "http", "port": 80, "targetPort": port}]}}


def slice_(ns, name, port):
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"namespace": ns, "name": name + "-x", "labels": {"kubernetes.io/service-name": name}},
            "addressType": "IPv4", "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": True}}],
            "ports": [{"name": "http", "port": port, "protocol": "TCP"}]}


async def status_of(session, url):
    async with session.get(url) as r:
        await r.read()
        return r.status


async def test_kube_source_end_to_end(tmp_path):
    fk = FakeKube()
    await fk.start()
    users = await start_backend("users")
    fk.create(service("shop", "users", users.port))
    fk.create(slice_("shop", "users", users.port))
    fk.create(apiendpoint("shop", "list-users", path="/api/v1/users", method="GET", backendService="users"))
    fk.create(apiendpoint("shop", "broken", path="/broken", backendService="nope"))
    gw = GatewayProcess(None, "--kube", "--kubeconfig", fk.kubeconfig(tmp_path / "kubeconfig"),
                        "--lease-namespace", "default", "--publish-address", "203.0.113.9")
    try:
        await asyncio.get_running_loop().run_in_executor(None, gw.wait_ready)
        async with aiohttp.ClientSession() as s:
            assert await status_of(s, gw.base + "/api/v1/users") == 200

            # Status is written back by the leader, with conditions a user can act on.
            async def statuses_written():
                ok = (fk.get("APIEndpoint", "shop", "list-users") or {}).get("status", {})
                bad = (fk.get("APIEndpoint", "shop", "broken") or {}).get("status", {})
                return ok.get("state") == "Ready" and bad.get("state") == "Error"
            await eventually(statuses_written, 10, lambda: "statuses written:\n" + gw.logs())
            bad = fk.get("APIEndpoint", "shop", "broken")["status"]
            reasons = {c["type"]: c["reason"] for c in bad["conditions"]}
            assert reasons["ResolvedRefs"] == "BackendNotFound"
            assert bad["observedGeneration"] == fk.get("APIEndpoint", "shop", "broken")["metadata"]["generation"]
            assert await status_of(s, gw.base + "/broken") == 500

            # A new object is routed at once; a deleted one goes away.
            fk.create(apiendpoint("shop", "orders", path="/api/v1/orders", backendService="users"))
            async def orders_routed():
                return await status_of(s, gw.base + "/api/v1/orders") == 200
            await eventually(orders_routed, 10, "orders routed")

            # The API server goes away: the last table keeps serving, readiness holds.
            port = fk.port
            await fk.stop()
            await asyncio.sleep(0.5)
            for _ in range(20):
                assert await status_of(s, gw.base + "/api/v1/users") == 200
            assert await status_of(s, gw.admin + "/readyz") == 200

            # It comes back, with a change made meanwhile: the reflectors reconnect and catch up.
            fk.delete("APIEndpoint", "shop", "orders")
            await fk.start(port)
            async def orders_gone():
                return await status_of(s, gw.base + "/api/v1/orders") == 404
            await eventually(orders_gone, 20, lambda: "orders gone:\n" + gw.logs())
            assert await status_of(s, gw.base + "/api/v1/users") == 200
            async with s.get(gw.admin + "/metrics") as r:
                text = await r.text()
            assert "crdgate_watch_reconnects_total" in text
            assert "crdgate_leader 1.0" in text
    finally:
        await asyncio.to_thread(gw.close)  # the fake API server shares this loop: it must answer the Lease release
        await users.runner.cleanup()
        await fk.stop()
