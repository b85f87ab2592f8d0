"""HTTP/2 end to end through the real process: curl over TLS (ALPN h2) and with prior knowledge
(h2c), and grpcio clients meeting the answers the gateway makes itself in gRPC form.

Backends are HTTP/1.1 (aiohttp): an HTTP/2 client reaches an HTTP/1.1 backend.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import threading

import aiohttp
import grpc
import pytest

import aptget
from gatewayproc import GatewayProcess, endpoint_manifests
from h2socket import h2_request
from polling import eventually
from proxyharness import free_port, start_backend
from test_tls_e2e import secret_yaml
from tlsharness import CA



@pytest.fixture(autouse=True, scope="module")
def _curl():
    aptget.ensure({"curl": "curl"})  # a real HTTP/2 client; installed if missing (fails under CI=true if it cannot be)


def api_endpoint(name: str, path: str, **spec) -> dict:
    body = {"path": path, "backendService": "app"}
    body.update(spec)
    return {"apiVersion": "crdgate.io/v1", "kind": "APIEndpoint", "metadata": {"name": name, "namespace": "shop"},
            "spec": body}


def curl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["curl", "-s", "--max-time", "10", *args], capture_output=True, text=True, timeout=20)


class Blackhole:
    """A TCP server that accepts and never answers (a backend that hangs)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.held: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)

    def close(self):
        self.sock.close()
        for c in self.held:
            c.close()


@pytest.fixture
async def world(tmp_path):
    ca = CA()
    app = await start_backend("app")
    hole = Blackhole()
    (tmp_path / "svc.yaml").write_text(endpoint_manifests("shop", "app", app.port))
    (tmp_path / "tls.yaml").write_text(secret_yaml("infra", "default", ca.issue("localhost", "127.0.0.1")))
    keys = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "keys", "namespace": "shop"},
            "stringData": {"alice": "key-alice-123"}}
    routes = [
        api_endpoint("open", "/open"),
        api_endpoint("locked", "/pkg.Locked", auth={"type": "APIKey", "secretRef": {"name": "keys"}}),
        api_endpoint("limited", "/pkg.Limited", rateLimit={"requestsPerMinute": 1, "burst": 1}),
        {**api_endpoint("gone", "/pkg.Gone"), "spec": {"path": "/pkg.Gone",
                                                        "backends": [{"url": f"http://127.0.0.1:{free_port()}"}]}},
        {**api_endpoint("slow", "/pkg.Slow"), "spec": {"path": "/pkg.Slow", "timeouts": {"request": "1s"},
                                                        "backends": [{"url": f"http://127.0.0.1:{hole.port}"}]}},
    ]
    (tmp_path / "routes.json").write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": [keys, *routes]}))
    (tmp_path / "ca.pem").write_bytes(ca.pem)
    tls_port = free_port()
    gw = GatewayProcess(tmp_path, "--listen-tls", f"127.0.0.1:{tls_port}", "--default-certificate", "infra/default",
                        access_log=True)
    try:
        await asyncio.get_running_loop().run_in_executor(None, gw.wait_ready)
        yield gw, tls_port, tmp_path
    finally:
        gw.close()
        hole.close()
        await app.runner.cleanup()


async def test_curl_speaks_http2_over_tls_by_alpn_and_with_prior_knowledge(world):
    gw, tls_port, folder = world
    out = "%{http_code} %{http_version}"
    r = await asyncio.to_thread(curl, "--http2", "--cacert", str(folder / "ca.pem"), "-w", "\n" + out,
                                f"https://localhost:{tls_port}/open/a?b=1")
    body, status = r.stdout.rsplit("\n", 1)
    assert status == "200 2", (r.stdout, r.stderr)
    seen = json.loads(body)
    assert seen["path"] == "/open/a?b=1" and seen["headers"]["x-forwarded-proto"] == "https"
    # A client that offers only HTTP/1.1 still gets it.
    r = await asyncio.to_thread(curl, "--http1.1", "--cacert", str(folder / "ca.pem"), "-o", "/dev/null", "-w", out,
                                f"https://localhost:{tls_port}/open")
    assert r.stdout == "200 1.1"
    # Cleartext, prior knowledge; a POST body reaches the HTTP/1.1 backend.
    r = await asyncio.to_thread(curl, "--http2-prior-knowledge", "-d", "x" * 100_000, "-w", "\n" + out,
                                f"http://127.0.0.1:{gw.port}/open/up")
    body, status = r.stdout.rsplit("\n", 1)
    assert status == "200 2" and json.loads(body)["body_bytes"] == 100_000
    # The access log says which protocol.
    logged = await eventually(lambda: [json.loads(x) for x in gw.stdout().splitlines() if '"path":"/open/up"' in x])
    line = logged[0]
    assert line["protocol"] == "HTTP/2.0" and line["status"] == 200


async def test_h2c_off_keeps_the_505(tmp_path):
    (tmp_path / "routes.json").write_text(json.dumps(api_endpoint("open", "/open")))
    gw = GatewayProcess(tmp_path, "--h2c", "off")
    try:
        await asyncio.get_running_loop().run_in_executor(None, gw.wait_ready)
        with socket.create_connection(("127.0.0.1", gw.port), timeout=5) as s:
            s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            assert s.recv(100).startswith(b"HTTP/1.1 505 ")
    finally:
        gw.close()


def grpc_codes(port: int, method: str, calls: int = 1) -> list:
    """The status of ``calls`` unary calls of ``method`` through the gateway (a real grpcio client)."""
    codes = []
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        rpc = channel.unary_unary(method)
        for _ in range(calls):
            try:
                rpc(b"hello", timeout=8)
                codes.append(grpc.StatusCode.OK)
            except grpc.RpcError as e:
                codes.append(e.code())
    return codes


async def test_grpc_clients_get_the_gateways_errors_as_grpc_statuses(world):
    gw, _, _ = world
    for method, code in [
        ("/pkg.Missing/Call", grpc.StatusCode.UNIMPLEMENTED),  # no route
        ("/pkg.Locked/Call", grpc.StatusCode.UNAUTHENTICATED),  # no API key
        ("/pkg.Gone/Call", grpc.StatusCode.UNAVAILABLE),  # nothing listens at the backend
        ("/pkg.Slow/Call", grpc.StatusCode.DEADLINE_EXCEEDED),  # the route's 1 s, long before the client's 8 s
    ]:
        assert await asyncio.to_thread(grpc_codes, gw.port, method) == [code], method
    # Rate limited: the calls the limit lets through reach the backend (an HTTP/1.1
    # echo, not a gRPC server: they fail there as UNKNOWN); the rest are stopped by the gateway.
    codes = await asyncio.to_thread(grpc_codes, gw.port, "/pkg.Limited/Call", 4)
    assert codes[-1] == grpc.StatusCode.RESOURCE_EXHAUSTED, codes


async def test_curl_expect_100_continue_over_http2(world):
    gw, _, folder = world
    body = folder / "body.bin"
    body.write_bytes(b"x" * 50_000)
    args = ["--http2-prior-knowledge", "-v", "-H", "Expect: 100-continue", "--expect100-timeout", "30",
            "--data-binary", f"@{body}", "-o", "/dev/null", "-w", "%{http_code}"]
    # Passed every policy: the gateway answers 100 itself and curl sends the body at once (without
    # the 100 it would wait 30 s for one, past its 10 s --max-time).
    r = await asyncio.to_thread(curl, *args, f"http://127.0.0.1:{gw.port}/open/up")
    assert r.returncode == 0 and r.stdout == "200", (r.stdout, r.stderr[-2000:])
    assert "HTTP/2 100" in r.stderr
    # Refused (no API key): the final answer at once, no 100, the body never asked for. (A client
    # of our own: curl 7.88 takes the reset that ends the unread upload for an empty reply.)
    out = await asyncio.to_thread(h2_request, gw.port, "/pkg.Locked/Call", headers=[(b"expect", b"100-continue")],
                                  body=b"x" * 1000, body_after_100=True)
    assert out.status == 401 and out.interim == []


async def test_grpc_requests_over_http11_get_the_gateways_errors_in_grpc_form(world):
    gw, _, _ = world
    grpc_head = {"content-type": "application/grpc", "te": "trailers"}

    async def call(path: str) -> tuple[int, dict, bytes]:
        async with aiohttp.ClientSession() as s:
            async with s.post(gw.base + path, data=b"\x00\x00\x00\x00\x00", headers=grpc_head) as r:
                return r.status, dict(r.headers), await r.read()

    for path, code, message in [
        ("/pkg.Missing/Call", "12", "no route"),
        ("/pkg.Locked/Call", "16", None),
        ("/pkg.Gone/Call", "14", "upstream unreachable"),
        ("/pkg.Slow/Call", "4", None),
    ]:
        status, headers, body = await call(path)
        assert status == 200 and headers["Content-Type"] == "application/grpc", (path, status, headers)
        assert headers["grpc-status"] == code, (path, headers)
        assert message is None or headers["grpc-message"] == message
        assert body == b"" and headers["Content-Length"] == "0"
    statuses = [(await call("/pkg.Limited/Call"))[1].get("grpc-status") for _ in range(3)]
    assert statuses[-1] == "8", statuses
    # Access log and metrics keep the HTTP status the gateway chose.
    logged = await eventually(lambda: [json.loads(x) for x in gw.stdout().splitlines() if '"/pkg.Missing/Call"' in x])
    assert logged[0]["status"] == 404 and logged[0]["protocol"] == "HTTP/1.1"
    # Any other request still gets JSON.
    async with aiohttp.ClientSession() as s:
        async with s.post(gw.base + "/pkg.Missing/Call", data=b"{}", headers={"content-type": "application/json"}) as r:
            assert r.status == 404 and r.headers["Content-Type"] == "application/json"
