"""End to end: the real gateway on a manifests folder honours ReferenceGrants as they come and go.

tenant-a's APIEndpoint points at tenant-b's Service (and, on another route,
authenticates with tenant-b's Secret). Without a grant in tenant-b: 500 (and
503 for the auth route); a grant file appears: 200; it goes: refused again.
"""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from gatewayproc import GatewayProcess, endpoint_manifests
from proxyharness import start_backend

ROUTES = """\
apiVersion: crdgate.io/v1
kind: APIEndpoint
metadata: {name: steal, namespace: tenant-a}
spec:
  path: /steal
  backends: [{service: {name: db, namespace: tenant-b}}]
---
apiVersion: crdgate.io/v1
kind: APIEndpoint
metadata: {name: keyed, namespace: tenant-a}
spec:
  path: /keyed
  backendService: web
  auth: {type: APIKey, secretRef: {name: keys, namespace: tenant-b}}
---
apiVersion: v1
kind: Secret
metadata: {name: keys, namespace: tenant-b}
stringData: {alice: key-1}
"""

GRANT = """\
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {name: tenant-a-may-use, namespace: tenant-b}
spec:
  from: [{group: crdgate.io, kind: APIEndpoint, namespace: tenant-a}]
  to: [{group: "", kind: Service, name: db}, {group: "", kind: Secret, name: keys}]
"""


@pytest.fixture
async def world(tmp_path):
    db = await start_backend("db")
    web = await start_backend("web")
    (tmp_path / "services.yaml").write_text(
        endpoint_manifests("tenant-b", "db", db.port) + "---" + endpoint_manifests("tenant-a", "web", web.port)
    )
    (tmp_path / "routes.yaml").write_text(ROUTES)
    yield tmp_path
    await db.runner.cleanup()
    await web.runner.cleanup()


async def status(session, url, **kw) -> int:
    async with session.get(url, **kw) as r:
        await r.read()
        return r.status


async def until(session, url, want: int, timeout: float = 10.0, **kw) -> int:
    """Poll ``url`` until it answers ``want`` or the deadline passes; the last status."""
    deadline = time.monotonic() + timeout
    got = await status(session, url, **kw)
    while got != want and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        got = await status(session, url, **kw)
    return got


async def test_grant_file_added_then_removed(world):
    gw = GatewayProcess(world)
    try:
        await asyncio.get_running_loop().run_in_executor(None, gw.wait_ready)
        key = {"X-API-Key": "key-1"}
        async with aiohttp.ClientSession() as s:
            assert await status(s, gw.base + "/steal") == 500, gw.logs()
            assert await status(s, gw.base + "/keyed", headers=key) == 503

            (world / "grant.yaml").write_text(GRANT)
            assert await until(s, gw.base + "/steal", 200) == 200, gw.logs()
            assert await until(s, gw.base + "/keyed", 200, headers=key) == 200
            assert await status(s, gw.base + "/keyed") == 401

            (world / "grant.yaml").unlink()
            assert await until(s, gw.base + "/steal", 500) == 500, gw.logs()
            assert await until(s, gw.base + "/keyed", 503, headers=key) == 503
    finally:
        gw.close()


async def test_allow_cross_namespace_refs_flag(world):
    gw = GatewayProcess(world, "--allow-cross-namespace-refs", "on")
    try:
        await asyncio.get_running_loop().run_in_executor(None, gw.wait_ready)
        async with aiohttp.ClientSession() as s:
            assert await status(s, gw.base + "/steal") == 200, gw.logs()
            assert await status(s, gw.base + "/keyed", headers={"X-API-Key": "key-1"}) == 200
    finally:
        gw.close()
