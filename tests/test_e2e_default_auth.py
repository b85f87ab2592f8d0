"""--default-auth-secret / --default-auth-type through the real process, folder and Kubernetes sources.

A route with ``authRequired: true`` and no namespace default takes the
gateway-wide default: 401 without a key, 200 with a key from that Secret,
which lives in the namespace the flag names (not the route's).
"""

from __future__ import annotations

import asyncio
import base64
import json

import aiohttp

from fakekube import FakeKube, apiendpoint
from gatewayproc import GatewayProcess, endpoint_manifests
from proxyharness import start_backend
from polling import eventually

KEY = "ops-key-0123456789"
FLAGS = ("--default-auth-secret", "crdgate-system/gateway-keys", "--default-auth-type", "APIKey")


def gateway_keys() -> dict:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "gateway-keys", "namespace": "crdgate-system"},
            "type": "Opaque", "data": {"ops": base64.b64encode(KEY.encode()).decode()}}


async def answers(session, url, headers=None) -> int:
    async with session.get(url, headers=headers or {}) as r:
        await r.read()
        return r.status


async def check_default_auth(gw: GatewayProcess) -> None:
    await asyncio.get_running_loop().run_in_executor(None, gw.wait_ready, 30.0)
    async with aiohttp.ClientSession() as s:
        url = gw.base + "/users"

        async def keyed_ok():
            return await answers(s, url, {"X-API-Key": KEY}) == 200
        await eventually(keyed_ok, 15, lambda: "a keyed request to pass:\n" + gw.logs())
        assert await answers(s, url) == 401
        assert await answers(s, url, {"X-API-Key": "not-" + KEY}) == 401


async def test_folder_source_uses_the_gateway_default(tmp_path):
    users = await start_backend("users")
    (tmp_path / "svc.yaml").write_text(endpoint_manifests("shop", "users", users.port))
    (tmp_path / "keys.json").write_text(json.dumps(gateway_keys()))
    (tmp_path / "route.json").write_text(json.dumps(apiendpoint("shop", "users", path="/users", backendService="users",
                                                                authRequired=True)))
    gw = GatewayProcess(tmp_path, *FLAGS)
    try:
        await check_default_auth(gw)
    finally:
        await asyncio.to_thread(gw.close)  # the fake API server shares this loop: it must answer the Lease release
        await users.runner.cleanup()


async def test_kube_source_watches_the_gateway_default_secret(tmp_path):
    """Only ``shop`` is watched; the default Secret in crdgate-system is fetched by name all the same."""
    fk = FakeKube()
    await fk.start()
    users = await start_backend("users")
    fk.create({"apiVersion": "v1", "kind": "Service", "metadata": {"namespace": "shop", "name": "users"},
               "spec": {"ports": [{"name": "http", "port": 80, "targetPort": users.port}]}})
    fk.create({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
               "metadata": {"namespace": "shop", "name": "users-x", "labels": {"kubernetes.io/service-name": "users"}},
               "addressType": "IPv4", "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": True}}],
               "ports": [{"name": "http", "port": users.port, "protocol": "TCP"}]})
    fk.create(gateway_keys())
    fk.create(apiendpoint("shop", "users", path="/users", backendService="users", authRequired=True))
    gw = GatewayProcess(None, "--kube", "--kubeconfig", fk.kubeconfig(tmp_path / "kubeconfig"), "--namespace", "shop",
                        "--leader-elect", "off", *FLAGS)
    try:
        await check_default_auth(gw)
        assert any(q.get("fieldSelector") == "metadata.name=gateway-keys" for q in fk.list_requests("secrets"))

        # The Secret's keys rotate: the gateway follows.
        rotated = gateway_keys()
        rotated["data"] = {"ops": base64.b64encode(b"rotated-key-000000").decode()}
        fk.update(rotated)
        async with aiohttp.ClientSession() as s:
            async def rotated_ok():
                return await answers(s, gw.base + "/users", {"X-API-Key": "rotated-key-000000"}) == 200
            await eventually(rotated_ok, 15, lambda: "the rotated key to pass:\n" + gw.logs())
            assert await answers(s, gw.base + "/users", {"X-API-Key": KEY}) == 401
    finally:
        await asyncio.to_thread(gw.close)  # the fake API server shares this loop: it must answer the Lease release
        await users.runner.cleanup()
        await fk.stop()
