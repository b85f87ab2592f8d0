"""Loopback machinery for data-plane tests: real backends, a real Server, raw clients.

The proxy runs in the test's event loop on 127.0.0.1 with a RouteTable built by
hand, so these tests exercise gateway/ alone (the controller has its own tests).
"""

from __future__ import annotations

import asyncio
import json
import socket
from dataclasses import dataclass, field

from aiohttp import web

from gateway.config import GatewayConfig, Limits
from gateway.routing import BackendRef, Endpoint, EndpointSet, Route, RouteTable
from gateway.server import Server
from ports import free_port


@dataclass
class Backend:
    name: str
    port: int
    runner: web.AppRunner
    seen: list = field(default_factory=list)  # (method, path_qs, headers, body_len)
    peers: set = field(default_factory=set)  # client ports: one per upstream connection

    @property
    def endpoint(self) -> Endpoint:
        return Endpoint("127.0.0.1", self.port)


async def start_backend(name: str = "b1", handler=None, port: int | None = None) -> Backend:
    """An aiohttp backend that echoes what it received as JSON (or runs ``handler``)."""
    backend: Backend

    async def echo(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        peer = request.transport.get_extra_info("peername") if request.transport else None
        if peer:
            backend.peers.add(peer[1])
        backend.seen.append((request.method, request.path_qs, dict(request.headers), len(body)))
        if handler is not None:
            return await handler(request, body)
        return web.json_response(
            {"backend": name, "method": request.method, "path": request.path_qs,
             "headers": {k.lower(): v for k, v in request.headers.items()}, "body_bytes": len(body)},
            headers={"X-Backend": name},
        )

    app = web.Application(client_max_size=256 * 1024 * 1024)
    app.router.add_route("*", "/{tail:.*}", echo)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    port = port or free_port()
    await web.TCPSite(runner, "127.0.0.1", port, reuse_address=True).start()
    backend = Backend(name, port, runner)
    return backend


def route(name: str = "ns/r", path: str = "/", backends=("ns/svc:80",), **kw) -> Route:
    refs = tuple(BackendRef(b) if isinstance(b, str) else b for b in backends)
    return Route(name=name, kind="APIEndpoint", path=path, backends=refs, **kw)


def table(routes, endpoints: dict[str, tuple], generation: int = 1, **kw) -> RouteTable:
    sets = {}
    for key, value in endpoints.items():
        if isinstance(value, EndpointSet):
            sets[key] = value
        else:
            sets[key] = EndpointSet(key, tuple(value))
    return RouteTable(routes, sets, generation=generation, **kw)


async def start_proxy(tbl: RouteTable | None, limits: Limits | None = None, **cfg) -> Server:
    config = GatewayConfig(listen=("127.0.0.1", 0), access_log=False, limits=limits or Limits(), **cfg)
    server = Server(config)
    if tbl is not None:
        server.swap(tbl)
    await server.start()
    return server


def proxy_port(server: Server) -> int:
    return server.addresses[0][1]


@dataclass
class Response:
    status: int
    headers: dict[str, str]  # lower-case names; repeated ones joined with ", "
    raw_headers: list[tuple[str, str]]
    body: bytes

    def json(self):
        return json.loads(self.body)


async def read_response(reader: asyncio.StreamReader, head_request: bool = False) -> Response:
    line = await reader.readline()
    if not line:
        raise ConnectionError("closed before a response")
    parts = line.decode("latin-1").split(" ", 2)
    status = int(parts[1])
    raw = []
    while True:
        h = await reader.readline()
        if h in (b"\r\n", b"\n", b""):
            break
        name, _, value = h.decode("latin-1").partition(":")
        raw.append((name.strip(), value.strip()))
    headers: dict[str, str] = {}
    for n, v in raw:
        k = n.lower()
        headers[k] = headers[k] + ", " + v if k in headers else v
    if 100 <= status < 200:
        return Response(status, headers, raw, b"")
    if head_request or status in (204, 304):
        return Response(status, headers, raw, b"")
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = bytearray()
        while True:
            size_line = await reader.readline()
            size = int(size_line.split(b";")[0].strip(), 16)
            if size == 0:
                while (await reader.readline()) not in (b"\r\n", b""):
                    pass
                break
            body += await reader.readexactly(size)
            await reader.readexactly(2)
        return Response(status, headers, raw, bytes(body))
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
        return Response(status, headers, raw, body)
    return Response(status, headers, raw, await reader.read())


class RawClient:
    """A client that writes exactly the bytes a test gives it."""

    def __init__(self, port: int):
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def __aenter__(self) -> "RawClient":
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        return self

    async def __aexit__(self, *exc) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except (ConnectionError, OSError):
            pass

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def response(self, head: bool = False, timeout: float = 5.0) -> Response:
        return await asyncio.wait_for(read_response(self.reader, head), timeout)

    async def closed(self, timeout: float = 5.0) -> bool:
        """True when the server closes the connection (EOF) within ``timeout``."""
        try:
            data = await asyncio.wait_for(self.reader.read(65536), timeout)
        except asyncio.TimeoutError:  # first: since Python 3.11 it is the built-in TimeoutError, an OSError
            return False
        except (ConnectionError, OSError):
            return True
        return data == b""


async def request(port: int, method: str = "GET", path: str = "/", headers: dict | None = None,
                  body: bytes = b"", host: str = "example.test") -> Response:
    """One request on a new connection, closed afterwards."""
    h = {"Host": host, "Connection": "close"}
    h.update(headers or {})
    if body and "Content-Length" not in h and "Transfer-Encoding" not in h:
        h["Content-Length"] = str(len(body))
    head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in h.items()) + "\r\n"
    async with RawClient(port) as c:
        await c.send(head.encode("latin-1") + body)
        return await c.response(head=method == "HEAD")


__all__ = [
    "Backend", "RawClient", "Response", "free_port", "proxy_port", "read_response",
    "request", "route", "start_backend", "start_proxy", "table",
]
