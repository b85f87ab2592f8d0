"""--workers N: several processes share the port; a dead worker is restarted; SIGTERM stops all."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import aiohttp

from gatewayproc import GatewayProcess, endpoint_manifests
from polling import eventually
from proxyharness import start_backend

ROUTE = """
apiVersion: crdgate.io/v1
kind: APIEndpoint
metadata: {name: users, namespace: shop}
spec: {path: /users, backendService: users}
"""


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
        await loop.run_in_executor(None, gw.wait_ready, 30.0)
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
        gw.close()
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
        await loop.run_in_executor(None, gw.wait_ready, 30.0)
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
        log = Path(gw.log.name).read_text(errors="replace")
        assert "address already in use" not in log.lower()
        sockets = set(re.findall(r"admin on unix:(\S+?\.sock)", log))
        assert len(sockets) == 2, log[-3000:]
        assert gw.terminate(timeout=30) == 0
        # The workers' private socket directory goes with the supervisor.
        assert not any(Path(p).parent.exists() for p in sockets)
    finally:
        for sock in squatters:
            sock.close()
        gw.close()
        await users.runner.cleanup()


async def test_one_status_writer_among_the_workers(tmp_path):
    """Each worker runs leader election: they must not share one identity, or every worker would lead."""
    from fakekube import FakeKube, apiendpoint

    fk = FakeKube()
    await fk.start()
    fk.create(apiendpoint("shop", "users", path="/users", backends=[{"url": "http://127.0.0.1:9"}]))
    gw = GatewayProcess(None, "--kubeconfig", fk.kubeconfig(tmp_path / "kubeconfig"), "--lease-namespace", "default",
                        "--identity", "replica-a", "--workers", "2")
    loop = asyncio.get_running_loop()
    try:
        await loop.run_in_executor(None, gw.wait_ready, 30.0)
        holder = None
        leaders: list[str] = []
        deadline = time.monotonic() + 20
        async with aiohttp.ClientSession() as s:
            while time.monotonic() < deadline:
                lease = fk.get("Lease", "default", "crdgate-leader")
                holder = lease and lease["spec"]["holderIdentity"]
                async with s.get(gw.admin + "/metrics") as r:
                    leaders = re.findall(r'crdgate_leader\{worker="(\d)"\} 1\.0', await r.text())
                if holder and leaders:
                    break
                await asyncio.sleep(0.2)
            assert holder and holder.startswith("replica-a"), holder
            # Watch for longer than a retry interval (5 s): a second leader would show by then.
            deadline = time.monotonic() + 8
            while time.monotonic() < deadline:
                async with s.get(gw.admin + "/metrics") as r:
                    leaders = re.findall(r'crdgate_leader\{worker="(\d)"\} 1\.0', await r.text())
                assert len(leaders) == 1, leaders
                await asyncio.sleep(0.2)
    finally:
        gw.close()
        await fk.stop()
