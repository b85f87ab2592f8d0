"""--workers N: one controller, N proxy workers sharing the port; tables reach every worker; restarts; drain."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import aiohttp
from aiohttp import web

from gatewayproc import GatewayProcess, endpoint_manifests
from polling import eventually
from proxyharness import start_backend

ROUTE = """
apiVersion: crdgate.io/v1
kind: APIEndpoint
metadata: {name: users, namespace: shop}
spec: {path: /users, backendService: users}
"""


ORDERS = """
apiVersion: crdgate.io/v1
kind: APIEndpoint
metadata: {name: orders, namespace: shop}
spec: {path: /orders, backendService: users}
"""


def worker_sockets(gw: GatewayProcess, n: int = 2) -> list[str]:
    """The workers' admin sockets, from the log (worker i logs ``admin on unix:<dir>/worker-<i>.sock``).
    Polled until all ``n`` are logged: the workers start side by side, in no set order."""
    deadline = time.monotonic() + 20
    while True:
        log = gw.wait_log("worker-", timeout=20)
        found = sorted(set(re.findall(r"admin on unix:(\S+?\.sock)", log)))
        if len(found) >= n or time.monotonic() >= deadline:
            return found
        time.sleep(0.05)


async def worker_get(sock: str, path: str):
    """GET ``path`` on one worker's own admin (its Unix socket): what that worker serves."""
    async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=sock)) as s:
        async with s.get("http://worker" + path, timeout=aiohttp.ClientTimeout(total=3)) as r:
            return r.status, await r.json()


async def worker_routes(sock: str) -> set[str]:
    status, body = await worker_get(sock, "/routes")
    return {r["name"] for r in body["routes"]} if status == 200 else set()


async def worker_endpoints(sock: str, backend: str) -> set[str]:
    status, body = await worker_get(sock, "/dashboard.json")
    if status != 200:
        return set()
    return {e["address"] for b in body["upstreams"]["backends"] if b["backend"] == backend for e in b["endpoints"]}


def children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [int(p) for p in out]


def workers_of(pid: int) -> list[int]:
    """The worker processes (spawned via multiprocessing: skip its resource tracker)."""
    found = []
    for child in children(pid):
        try:
            cmd = open(f"/proc/{child}/cmdline", "rb").read().replace(b"\0", b" ")
        except OSError:
            continue
        if b"resource_tracker" not in cmd:
            found.append(child)
    return found


async def test_workers_share_the_port_and_are_restarted(tmp_path):
    users = await start_backend("users")
    (tmp_path / "svc.yaml").write_text(endpoint_manifests("shop", "users", users.port))
    (tmp_path / "route.yaml").write_text(ROUTE)
    gw = GatewayProcess(tmp_path, "--workers", "2")
    loop = asyncio.get_running_loop()
    try:
        await loop.run_in_executor(None, gw.wait_ready, 60.0)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as s:
            for _ in range(20):
                async with s.get(gw.base + "/users") as r:
                    assert r.status == 200
            async with s.get(gw.admin + "/readyz") as r:
                body = await r.json()
                assert r.status == 200 and body["workers_ready"] == 2
            async with s.get(gw.admin + "/metrics") as r:
                text = await r.text()
            assert 'worker="0"' in text and 'worker="1"' in text
            assert "crdgate_requests_total" in text

            before = workers_of(gw.proc.pid)
            assert len(before) == 2, before
            os.kill(before[0], signal.SIGKILL)
            # The supervisor notices and starts a new worker; the other kept serving meanwhile.
            # A connection the kernel had already queued on the killed worker's socket is
            # reset with it (as with any crashed process): this client makes one connection
            # at a time, so at most its first one after the kill may be lost that way.
            deadline = time.monotonic() + 20
            restarted = False
            attempts = resets = 0
            while time.monotonic() < deadline:
                now = workers_of(gw.proc.pid)
                if len(now) == 2 and before[0] not in now:
                    async with s.get(gw.admin + "/readyz") as r:
                        if r.status == 200:
                            restarted = True
                            break
                attempts += 1
                try:
                    async with s.get(gw.base + "/users") as r:
                        assert r.status == 200
                except (aiohttp.ClientConnectionError, ConnectionError):
                    assert attempts == 1, f"connection lost on request {attempts} after the kill"
                    resets += 1
                await asyncio.sleep(0.2)
            assert restarted, gw.logs()
            assert attempts - resets >= 1  # the surviving worker answered while the other restarted
        assert gw.terminate(timeout=30) == 0
        assert workers_of(gw.proc.pid) == []
    finally:
        await asyncio.to_thread(gw.close)  # the fake API server shares this loop: it must answer the Lease release
        await users.runner.cleanup()


async def test_a_worker_without_a_table_takes_no_connections_from_its_siblings():
    """Workers share the port through SO_REUSEPORT: one still waiting for its
    first table (a restarted worker, say) must not be handed connections."""
    from gateway.config import GatewayConfig, Limits
    from gateway.server import Server
    from proxyharness import free_port, request, route, table

    backend = await start_backend("users")
    tbl = table([route("shop/users", "/users", ("shop/users:80",))],
                {"shop/users:80": (backend.endpoint,)})
    port = free_port()
    servers = []
    try:
        for has_table in (True, False):
            config = GatewayConfig(listen=("127.0.0.1", port), access_log=False, limits=Limits())
            server = Server(config)
            if has_table:
                server.swap(tbl)
            await server.start(reuse_port=True)
            servers.append(server)
        serving, waiting = servers
        assert not serving.deferred and waiting.deferred
        # Fresh connections: the kernel hashes each to one listening socket of the group.
        statuses = [(await request(port, path="/users", headers={"Connection": "close"})).status
                    for _ in range(60)]
        assert statuses == [200] * 60
        waiting.swap(tbl)
        assert not waiting.deferred
        # With its table in, the late one accepts (start_serving runs as a task): close the
        # other and it serves alone.
        await serving.close()

        async def served():
            return (await request(port, path="/users", headers={"Connection": "close"})).status == 200

        await eventually(served, 5, "the late listener to accept", ignore=(OSError,))
        for _ in range(10):
            assert (await request(port, path="/users", headers={"Connection": "close"})).status == 200
    finally:
        for server in servers:
            await server.close()
        await backend.runner.cleanup()


async def test_workers_need_no_port_besides_the_admin_and_proxy_ones(tmp_path):
    """The ports after the admin port may be anyone's: workers' admin servers use Unix sockets."""
    import socket

    from proxyharness import free_port

    users = await start_backend("users")
    (tmp_path / "svc.yaml").write_text(endpoint_manifests("shop", "users", users.port))
    (tmp_path / "route.yaml").write_text(ROUTE)
    admin_port = free_port()
    squatters = []
    for offset in (1, 2):
        sock = socket.socket()
        try:
            sock.bind(("127.0.0.1", admin_port + offset))
            sock.listen()
        except OSError:
            sock.close()  # already taken by someone else: as good for this test
            continue
        squatters.append(sock)
    # Taken before the gateway starts; the last --admin-listen wins.
    gw = GatewayProcess(tmp_path, "--workers", "2", "--admin-listen", f"127.0.0.1:{admin_port}")
    gw.admin_port = admin_port
    loop = asyncio.get_running_loop()
    try:
        await loop.run_in_executor(None, gw.wait_ready, 60.0)
        async with aiohttp.ClientSession() as s:
            async with s.get(gw.admin + "/readyz") as r:
                assert r.status == 200 and (await r.json())["workers_ready"] == 2
            for _ in range(10):
                async with s.get(gw.base + "/users") as r:
                    assert r.status == 200
            async with s.get(gw.admin + "/metrics") as r:
                text = await r.text()
            assert 'worker="0"' in text and 'worker="1"' in text and "crdgate_requests_total" in text
            async with s.get(gw.admin + "/routes") as r:
                assert r.status == 200 and (await r.json())["routes"][0]["name"] == "shop/users"
        sockets = worker_sockets(gw)
        log = Path(gw.log.name).read_text(errors="replace")
        assert "address already in use" not in log.lower()
        assert len(sockets) == 2, log[-3000:]
        assert gw.terminate(timeout=30) == 0
        # The workers' private socket directory goes with the supervisor.
        assert not any(Path(p).parent.exists() for p in sockets)
    finally:
        for sock in squatters:
            sock.close()
        await asyncio.to_thread(gw.close)  # the fake API server shares this loop: it must answer the Lease release
        await users.runner.cleanup()


async def test_one_controller_per_replica_on_the_api_server(tmp_path):
    """--workers 2: one list and one watch per kind, one leader election under the replica's
    identity, one status writer; both workers serve what the API holds."""
    from fakekube import FakeKube, apiendpoint

    users = await start_backend("users")
    fk = FakeKube()
    await fk.start()
    fk.create(apiendpoint("shop", "users", path="/users", backendService=None,
                          backends=[{"url": f"http://127.0.0.1:{users.port}"}]))
    gw = GatewayProcess(None, "--kubeconfig", fk.kubeconfig(tmp_path / "kubeconfig"), "--lease-namespace", "default",
                        "--identity", "replica-a", "--workers", "2")
    loop = asyncio.get_running_loop()
    try:
        await loop.run_in_executor(None, gw.wait_ready, 60.0)
        for plural in ("apiendpoints", "services", "endpointslices", "ingresses"):
            assert len(fk.list_requests(plural)) == 1, (plural, fk.list_requests(plural))

            async def watching(plural=plural):
                return len(fk.watch_requests(plural)) >= 1

            await eventually(watching, 10, f"a watch on {plural}")
            assert len(fk.watch_requests(plural)) == 1, (plural, fk.watch_requests(plural))
        holder = None
        leaders: list[str] = []
        deadline = time.monotonic() + 20
        async with aiohttp.ClientSession() as s:
            while time.monotonic() < deadline:
                lease = fk.get("Lease", "default", "crdgate-leader")
                holder = lease and lease["spec"]["holderIdentity"]
                async with s.get(gw.admin + "/metrics") as r:
                    leaders = re.findall(r"^crdgate_leader(\{[^}]*\})? (\S+)$", await r.text(), re.M)
                if holder and leaders:
                    break
                await asyncio.sleep(0.2)
            assert holder == "replica-a", holder
            assert leaders == [("", "1.0")], leaders
            # Status written once, by the one controller.
            def ready_status():
                return (fk.get("APIEndpoint", "shop", "users").get("status") or {}).get("state") == "Ready"

            await eventually(ready_status, 20, "the status written")
            # A new object reaches both workers through the one watch.
            fk.create(apiendpoint("shop", "orders", path="/orders", backendService=None,
                                  backends=[{"url": f"http://127.0.0.1:{users.port}"}]))
            sockets = worker_sockets(gw)

            async def both():
                return all(["shop/orders" in await worker_routes(sock) for sock in sockets])

            await eventually(both, 20, "both workers to route /orders", ignore=(OSError, aiohttp.ClientError))
            assert len(fk.watch_requests("apiendpoints")) == 1
    finally:
        await asyncio.to_thread(gw.close)  # the fake API server shares this loop: it must answer the Lease release
        await fk.stop()
        await users.runner.cleanup()


async def test_a_change_reaches_every_worker_and_a_restarted_one_gets_the_current_table(tmp_path):
    """One controller compiles; each worker serves the new route, the moved endpoints, and a
    worker killed meanwhile comes back with the table as it is now, not as it was."""
    users = await start_backend("users")
    users2 = await start_backend("users2")
    service, endpoints = endpoint_manifests("shop", "users", users.port).split("---")
    (tmp_path / "svc.yaml").write_text(service)
    (tmp_path / "slice.yaml").write_text(endpoints)
    (tmp_path / "route.yaml").write_text(ROUTE)
    gw = GatewayProcess(tmp_path, "--workers", "2")
    loop = asyncio.get_running_loop()
    try:
        await loop.run_in_executor(None, gw.wait_ready, 60.0)
        sockets = worker_sockets(gw)
        assert len(sockets) == 2

        # A new route: compiled once (one "serving routing table" line), served by both workers.
        (tmp_path / "orders.yaml").write_text(ORDERS)

        async def both_route_orders():
            return all(["shop/orders" in await worker_routes(sock) for sock in sockets])

        await eventually(both_route_orders, 20, "both workers to route /orders", ignore=(OSError, aiohttp.ClientError))
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as s:
            for _ in range(20):  # fresh connections: the kernel spreads them over both workers
                async with s.get(gw.base + "/orders") as r:
                    assert r.status == 200

        # Endpoint churn: the Service moves to another backend; every worker sends there.
        (tmp_path / "slice.yaml").write_text(endpoint_manifests("shop", "users", users2.port).split("---")[1])

        async def both_moved():
            want = {f"127.0.0.1:{users2.port}"}
            return all([await worker_endpoints(sock, "shop/users:80") == want for sock in sockets])

        await eventually(both_moved, 20, "both workers to use the new endpoints", ignore=(OSError, aiohttp.ClientError))
        gw.wait_log('"update": "endpoints"')  # the cheap path: no route recompiled, none sent
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as s:
            for _ in range(20):
                async with s.get(gw.base + "/users") as r:
                    assert r.status == 200 and r.headers["X-Backend"] == "users2"

        # Kill a worker, change the routes while it is down: it must come back with the newest table.
        before = workers_of(gw.proc.pid)
        assert len(before) == 2
        os.kill(before[0], signal.SIGKILL)
        (tmp_path / "orders.yaml").unlink()

        async def restarted_and_current():
            now = workers_of(gw.proc.pid)
            if len(now) != 2 or before[0] in now:
                return False
            async with aiohttp.ClientSession() as s:
                async with s.get(gw.admin + "/readyz") as r:
                    body = await r.json()
            if r.status != 200 or len(set(body["applied"])) != 1 or body["applied"][0] != body["generation"]:
                return False
            return all([await worker_routes(sock) == {"shop/users"} for sock in sockets])

        await eventually(restarted_and_current, 30, "the killed worker back with the current table",
                         ignore=(OSError, aiohttp.ClientError))
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as s:
            for _ in range(20):
                async with s.get(gw.base + "/orders") as r:
                    assert r.status == 404
        # One compile per change for the whole replica: the supervisor's log has one line per table.
        log = gw.wait_log("serving routing table")
        generations = re.findall(r"serving routing table generation (\d+)", log)
        assert len(generations) == len(set(generations)), generations
        assert gw.terminate(timeout=30) == 0
    finally:
        await asyncio.to_thread(gw.close)  # the fake API server shares this loop: it must answer the Lease release
        await users.runner.cleanup()
        await users2.runner.cleanup()


async def test_shutdown_drains_requests_in_flight_on_every_worker(tmp_path):
    started = asyncio.Event()

    async def slow(request, body):
        started.set()
        await asyncio.sleep(1.5)
        return web.json_response({"slow": True})

    users = await start_backend("users", handler=slow)
    (tmp_path / "svc.yaml").write_text(endpoint_manifests("shop", "users", users.port))
    (tmp_path / "route.yaml").write_text(ROUTE)
    gw = GatewayProcess(tmp_path, "--workers", "2")
    loop = asyncio.get_running_loop()
    try:
        await loop.run_in_executor(None, gw.wait_ready, 60.0)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as s:
            async def one():
                async with s.get(gw.base + "/users") as r:
                    return r.status, await r.json()

            inflight = [asyncio.ensure_future(one()) for _ in range(6)]
            await asyncio.wait_for(started.wait(), 10)
            gw.proc.send_signal(signal.SIGTERM)
            results = await asyncio.gather(*inflight)
        assert results == [(200, {"slow": True})] * 6
        code = await loop.run_in_executor(None, gw.proc.wait, 30)
        assert code == 0
        assert workers_of(gw.proc.pid) == []
    finally:
        await asyncio.to_thread(gw.close)  # the fake API server shares this loop: it must answer the Lease release
        await users.runner.cleanup()


async def test_one_worker_with_the_controller_in_a_process_of_its_own(tmp_path):
    """--controller-process on: --workers 1 split as --workers 2+ is (one proxy process under the controller)."""
    users = await start_backend("users")
    (tmp_path / "svc.yaml").write_text(endpoint_manifests("shop", "users", users.port))
    (tmp_path / "route.yaml").write_text(ROUTE)
    gw = GatewayProcess(tmp_path, "--controller-process", "on")
    loop = asyncio.get_running_loop()
    try:
        await loop.run_in_executor(None, gw.wait_ready, 60.0)
        assert len(workers_of(gw.proc.pid)) == 1
        async with aiohttp.ClientSession() as s:
            for _ in range(5):
                async with s.get(gw.base + "/users") as r:
                    assert r.status == 200
            async with s.get(gw.admin + "/readyz") as r:
                assert (await r.json())["workers"] == 1
        assert gw.terminate(timeout=30) == 0
    finally:
        await asyncio.to_thread(gw.close)  # the fake API server shares this loop: it must answer the Lease release
        await users.runner.cleanup()
