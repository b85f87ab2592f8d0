"""End to end: the real `crdgate run --manifests DIR` process, real backends, real clients.

Covers the foundation's promises: proxying through Service -> EndpointSlice,
hot reload with requests in flight and none failing, a broken file leaving the
last good table serving, deletion, admin endpoints, and the CLI's offline
commands with their exit codes.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import aiohttp
import pytest

from gatewayproc import ROOT, GatewayProcess, endpoint_manifests
from proxyharness import start_backend
from polling import eventually

USERS = """
apiVersion: crdgate.io/v1
kind: APIEndpoint
metadata: {name: list-users, namespace: shop, creationTimestamp: "2026-01-01T00:00:00Z"}
spec:
  path: /api/v1/users
  method: GET
  backendService: users
"""


def orders(path: str = "/api/v1/orders") -> str:
    return f"""
apiVersion: crdgate.io/v1
kind: APIEndpoint
metadata: {{name: orders, namespace: shop}}
spec:
  path: {path}
  methods: [GET, POST]
  backendService: orders
"""


@pytest.fixture
async def world(tmp_path):
    users = await start_backend("users")
    orders_b = await start_backend("orders")
    (tmp_path / "services.yaml").write_text(
        endpoint_manifests("shop", "users", users.port) + "---" + endpoint_manifests("shop", "orders", orders_b.port)
    )
    (tmp_path / "users.yaml").write_text(USERS)
    (tmp_path / "orders.yaml").write_text(orders())
    gw = GatewayProcess(tmp_path, access_log=True)
    try:
        await asyncio.get_running_loop().run_in_executor(None, gw.wait_ready)
        yield gw, tmp_path, users, orders_b
    finally:
        gw.close()
        await users.runner.cleanup()
        await orders_b.runner.cleanup()


async def get(session, url, **kw):
    async with session.get(url, **kw) as r:
        return r.status, await r.read(), r.headers


async def test_proxies_through_service_and_endpointslice(world):
    gw, _, users, _ = world
    async with aiohttp.ClientSession() as s:
        status, body, _ = await get(s, gw.base + "/api/v1/users?page=2")
        assert status == 200, body
        doc = json.loads(body)
        assert doc["backend"] == "users" and doc["path"] == "/api/v1/users?page=2"
        status, _, _ = await get(s, gw.base + "/api/v1/userz")
        assert status == 404
        async with s.post(gw.base + "/api/v1/users", data=b"x") as r:
            assert r.status == 405


async def test_admin_endpoints(world):
    gw, _, _, _ = world
    async with aiohttp.ClientSession() as s:
        await get(s, gw.base + "/api/v1/users")
        status, body, _ = await get(s, gw.admin + "/healthz")
        assert status == 200
        status, body, _ = await get(s, gw.admin + "/routes")
        routes = json.loads(body)
        assert {r["route"] if "route" in r else r.get("name") for r in routes["routes"]} >= {"shop/list-users", "shop/orders"}
        status, body, _ = await get(s, gw.admin + "/metrics")
        text = body.decode()
        assert 'crdgate_requests_total{code="2xx",method="GET",route="shop/list-users"}' in text
        assert "crdgate_table_generation" in text
        assert "crdgate_compile_duration_seconds_count" in text


async def test_hot_reload_with_requests_in_flight_never_fails(world):
    gw, root, _, orders_b = world
    failures: list = []
    done = asyncio.Event()

    async def hammer():
        async with aiohttp.ClientSession() as s:
            while not done.is_set():
                for url in ("/api/v1/users", "/api/v1/orders"):
                    try:
                        status, body, _ = await get(s, gw.base + url)
                        if status != 200:
                            failures.append((url, status, body[:200]))
                    except aiohttp.ClientError as e:
                        failures.append((url, repr(e)))

    workers = [asyncio.ensure_future(hammer()) for _ in range(4)]
    try:
        # Add a route, change one, many times over, while requests keep flowing.
        for i in range(15):
            (root / f"extra-{i}.yaml").write_text(orders(f"/extra/{i}").replace("name: orders", f"name: extra-{i}"))
            (root / "users.yaml").write_text(USERS.replace("method: GET", "methods: [GET, HEAD]") if i % 2 else USERS)
            await asyncio.sleep(0.05)
        async with aiohttp.ClientSession() as s:
            async def extra_routed():
                return (await get(s, gw.base + "/extra/14/x"))[0] == 200
            await eventually(extra_routed, 5, "a new manifest to be routed")
    finally:
        done.set()
        await asyncio.gather(*workers)
    assert failures == []


async def test_broken_file_keeps_last_good_table_and_is_reported(world):
    gw, root, _, _ = world
    (root / "users.yaml").write_text("apiVersion: crdgate.io/v1\nkind: APIEndpoint\nmetadata: {name: list-users\n  oops: [")
    await asyncio.to_thread(gw.wait_log, "users.yaml")  # the broken file was read
    async with aiohttp.ClientSession() as s:
        status, _, _ = await get(s, gw.base + "/api/v1/users")
        assert status == 200, "the last good table keeps serving"
    # A semantically bad object is isolated: it gets an error, everyone else keeps routing.
    (root / "bad.yaml").write_text(orders("/bad").replace("name: orders", "name: bad").replace("methods: [GET, POST]", "methods: GET"))
    await asyncio.to_thread(gw.wait_log, "shop/bad")  # compiled, and refused
    async with aiohttp.ClientSession() as s:
        assert (await get(s, gw.base + "/api/v1/orders"))[0] == 200
        assert (await get(s, gw.base + "/bad"))[0] == 404


async def test_deleting_a_file_removes_its_routes(world):
    gw, root, _, _ = world
    (root / "orders.yaml").unlink()
    async with aiohttp.ClientSession() as s:
        async def gone():
            return (await get(s, gw.base + "/api/v1/orders"))[0] == 404
        await eventually(gone, 5, "the deleted file's route to go")
        assert (await get(s, gw.base + "/api/v1/users"))[0] == 200


async def test_access_log_lines_are_json_with_documented_fields(world):
    gw, _, _, _ = world
    async with aiohttp.ClientSession() as s:
        await get(s, gw.base + "/api/v1/users", headers={"X-Request-Id": "rid-42"})

    def logged():  # the access log is written in batches
        lines = [json.loads(line) for line in gw.stdout().splitlines() if line.strip()]
        return [e for e in lines if e.get("request_id") == "rid-42"]

    mine = await eventually(logged, 10, lambda: "the access log line of rid-42:\n" + gw.stdout()[-2000:])
    entry = mine[0]
    for field in ("time", "route", "method", "path", "status", "bytes_in", "bytes_out", "duration_ms",
                  "upstream_ms", "upstream", "consumer", "request_id", "client"):
        assert field in entry, field
    assert entry["route"] == "shop/list-users" and entry["status"] == 200


async def test_sigterm_drains_in_flight_requests(world):
    gw, root, _, _ = world
    slow = await start_backend("slow", _slow_handler)
    (root / "slow.yaml").write_text(endpoint_manifests("shop", "slow", slow.port) + "---" + orders("/slow").replace(
        "name: orders", "name: slow").replace("backendService: orders", "backendService: slow"))
    try:
        async with aiohttp.ClientSession() as s:
            async def routed():
                return (await get(s, gw.base + "/slow/ready"))[0] == 200
            await eventually(routed, 5, "/slow to be routed")
            inflight = [asyncio.ensure_future(get(s, gw.base + "/slow/wait")) for _ in range(5)]
            await eventually(lambda: [r[1] for r in slow.seen].count("/slow/wait") == 5, 10,
                             "the 5 requests to reach the backend")
            gw.proc.send_signal(__import__("signal").SIGTERM)

            async def not_ready():
                return (await get(s, gw.admin + "/readyz"))[0] == 503

            await eventually(not_ready, 5, "readiness to go 503 first")
            results = await asyncio.gather(*inflight)
            assert [r[0] for r in results] == [200] * 5
        rc = await asyncio.get_running_loop().run_in_executor(None, gw.proc.wait, 15)
        assert rc == 0
    finally:
        await slow.runner.cleanup()


async def _slow_handler(request, body):
    from aiohttp import web

    if request.path.endswith("/wait"):
        await asyncio.sleep(1.5)
    return web.Response(text="done")


def test_validate_and_routes_commands(tmp_path):
    (tmp_path / "svc.yaml").write_text(endpoint_manifests("shop", "users", 18999))
    (tmp_path / "users.yaml").write_text(USERS)
    ok = subprocess.run([sys.executable, "-m", "crdgate", "validate", str(tmp_path)], cwd=ROOT,
                        capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "shop/list-users" in ok.stdout
    routes = subprocess.run([sys.executable, "-m", "crdgate", "routes", str(tmp_path)], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert routes.returncode == 0 and "/api/v1/users" in routes.stdout
    (tmp_path / "bad.yaml").write_text(USERS.replace("list-users", "bad").replace("method: GET", "method: GET\n  colour: blue"))
    bad = subprocess.run([sys.executable, "-m", "crdgate", "validate", str(tmp_path)], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1
    assert "colour" in bad.stdout and "shop/bad" in bad.stdout
    usage = subprocess.run([sys.executable, "-m", "crdgate", "run"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert usage.returncode == 2
