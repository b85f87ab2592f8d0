"""``grpc-timeout`` on gRPC over HTTP/1.1 (gRPC-Web, bridges), through the real process.

As over HTTP/2: the request's deadline is the earlier of the client's
``grpc-timeout`` and the route's request timeout, and a request past it is
answered DEADLINE_EXCEEDED in gRPC's trailers-only form (HTTP 200,
``grpc-status: 4`` in the head). A request that is not gRPC keeps the route's
deadline whatever grpc-timeout it carries.
"""

from __future__ import annotations

import asyncio
import socket

import pytest

from gatewayproc import GatewayProcess, endpoint_manifests

ROUTES = """
apiVersion: crdgate.io/v1
kind: APIEndpoint
metadata: {name: slow, namespace: shop}
spec: {path: /pkg.Slow/, backendService: slow, timeouts: {request: 30s}}
---
apiVersion: crdgate.io/v1
kind: APIEndpoint
metadata: {name: capped, namespace: shop}
spec: {path: /pkg.Capped/, backendService: slow, timeouts: {request: 1s}}
"""


class SlowBackend:
    """An HTTP/1.1 backend that answers each request ``delay`` seconds after its head arrived."""

    def __init__(self, delay: float):
        self.delay = delay
        self.server = None
        self.port = 0

    async def start(self) -> "SlowBackend":
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def _serve(self, reader, writer):
        try:
            await reader.readuntil(b"\r\n\r\n")
            await asyncio.sleep(self.delay)
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/grpc\r\ncontent-length: 5\r\n\r\n"
                         b"\x00\x00\x00\x00\x00")
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def close(self):
        self.server.close()
        await self.server.wait_closed()


def post(port: int, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str]]:
    """One HTTP/1.1 request with an empty gRPC message; the status and head of the answer."""
    head = f"POST {path} HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 5\r\nConnection: close\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        s.sendall(head.encode() + b"\x00\x00\x00\x00\x00")
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    lines = data.split(b"\r\n\r\n")[0].decode().split("\r\n")
    fields = dict(line.lower().split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), fields


@pytest.fixture
async def world(tmp_path):
    backend = await SlowBackend(delay=3.0).start()
    (tmp_path / "routes.yaml").write_text(ROUTES + "---\n" + endpoint_manifests("shop", "slow", backend.port))
    gw = GatewayProcess(tmp_path)
    try:
        await asyncio.get_running_loop().run_in_executor(None, gw.wait_ready)
        yield gw
    finally:
        gw.close()
        await backend.close()


GRPC = {"Content-Type": "application/grpc", "TE": "trailers"}


async def test_grpc_timeout_is_honoured_over_http11(world):
    # The backend takes 3 s, the route allows 30 s: only the client's 300 ms can end it early.
    status, head = await asyncio.to_thread(post, world.port, "/pkg.Slow/Get", {**GRPC, "Grpc-Timeout": "300m"})
    assert status == 200 and head["content-type"] == "application/grpc", head
    assert head["grpc-status"] == "4" and head["grpc-message"] == "upstream timed out", head


async def test_the_routes_timeout_caps_a_longer_grpc_timeout(world):
    status, head = await asyncio.to_thread(post, world.port, "/pkg.Capped/Get", {**GRPC, "Grpc-Timeout": "100S"})
    assert status == 200 and head["grpc-status"] == "4", head


async def test_a_request_that_is_not_grpc_ignores_grpc_timeout(world):
    status, head = await asyncio.to_thread(post, world.port, "/pkg.Slow/Get",
                                           {"Content-Type": "application/octet-stream", "Grpc-Timeout": "300m"})
    assert status == 200 and "grpc-status" not in head, head  # the backend's answer, after its 3 s


async def test_a_malformed_grpc_timeout_is_no_deadline(world):
    status, head = await asyncio.to_thread(post, world.port, "/pkg.Slow/Get", {**GRPC, "Grpc-Timeout": "soon"})
    assert status == 200 and "grpc-status" not in head, head
