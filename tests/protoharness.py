"""Socket-free protocol tests: bytes into the proxy's client protocol, bytes out.

A ``Gateway`` is a real ``Server`` (table, limits, upstream pools, metrics) with
no listener. Each ``Client`` is the proxy's client protocol on a ``FakeTransport``
that records what the protocol writes and models what a real transport does
with reading paused (data waits) and with a close (``connection_lost`` on the
next loop turn). Upstream connections go through the proxy's own pools and
``UpstreamConnection``: the harness answers the event loop's
``create_connection`` for the duration of the test, so an endpoint is a
``FakeBackend`` that parses what the proxy forwards and answers with scripted
bytes (by default an echo of the request as JSON, like proxyharness's backends),
or holds the request until the test answers it by hand.

Timeouts need no waiting: ``Gateway.advance(seconds)`` moves the proxy's clock
on and runs the server's timeout check, as its sweeper would.

Neighbours: tests/proxyharness.py builds tables and reads responses (shared
here) and drives the same Server over loopback where a real socket matters
(flow control, TLS, a real process: tests/gatewayproc.py).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from dataclasses import dataclass, field
from typing import Callable

import httptools

from gateway.config import GatewayConfig, Limits
from gateway.routing import Endpoint, RouteTable
from gateway.server import Server
from polling import eventually
from proxyharness import Response, read_response

# The one import of the protocol class: the module that defines it may move.
from gateway.http1 import ClientProtocol


class FakeTransport:
    """What an asyncio transport offers a protocol, without a socket.

    ``written`` holds every byte the protocol wrote; ``on_write`` sees them as
    they come (the peer's reading end). Reading paused means data the peer
    sends waits here until reading resumes, as it would in the kernel.
    """

    def __init__(self, protocol, peername=("127.0.0.1", 40000), on_write: Callable[[bytes], None] | None = None,
                 on_close: Callable[[], None] | None = None):
        self.protocol = protocol
        self.peername = peername
        self.written = bytearray()
        self.on_write = on_write
        self.on_close = on_close
        self.reading_paused = False
        self.closing = False
        self.aborted = False
        self.lost = False
        self._waiting: list[bytes] = []  # sent by the peer while reading was paused

    # -- what the protocol calls

    def get_extra_info(self, name, default=None):
        return {"peername": self.peername, "sockname": ("127.0.0.1", 8080)}.get(name, default)

    def write(self, data: bytes) -> None:
        if self.closing:
            return  # a closed socket sends nothing more
        self.written += data
        if self.on_write is not None:
            self.on_write(bytes(data))

    def is_closing(self) -> bool:
        return self.closing

    def set_protocol(self, protocol) -> None:
        self.protocol = protocol  # the HTTP/1 protocol hands an HTTP/2 connection over

    def get_protocol(self):
        return self.protocol

    def pause_reading(self) -> None:
        self.reading_paused = True

    def resume_reading(self) -> None:
        self.reading_paused = False
        if self._waiting and not self.closing:
            asyncio.get_running_loop().call_soon(self._deliver_waiting)

    def close(self) -> None:
        if self.closing:
            return
        self.closing = True
        if self.on_close is not None:
            self.on_close()
        asyncio.get_running_loop().call_soon(self._lost)

    def abort(self) -> None:
        self.aborted = True
        self.close()

    # -- what the peer does

    def receive(self, data: bytes) -> None:
        """The peer sends ``data``: delivered now, or when reading resumes."""
        if self.closing:
            return
        if self.reading_paused or self._waiting:
            self._waiting.append(data)
        else:
            self.protocol.data_received(data)

    def peer_closed(self) -> None:
        """The peer closed its end: eof, then the connection is lost."""
        if self.closing:
            return
        keep_open = self.protocol.eof_received()
        if not keep_open:
            self.close()

    def _deliver_waiting(self) -> None:
        while self._waiting and not self.reading_paused and not self.closing:
            self.protocol.data_received(self._waiting.pop(0))

    def _lost(self) -> None:
        if not self.lost:
            self.lost = True
            self.protocol.connection_lost(None)


class Client:
    """One client connection to the gateway: ``send`` bytes, read ``response()``s."""

    def __init__(self, gateway: "Gateway", peer=("127.0.0.1", 40000), scheme: str = "http"):
        self.reader = asyncio.StreamReader()
        self.protocol = ClientProtocol(gateway.server, scheme)
        self.transport = FakeTransport(self.protocol, peer, on_write=self.reader.feed_data, on_close=self.reader.feed_eof)
        self.protocol.connection_made(self.transport)

    def send(self, data: bytes) -> None:
        self.transport.receive(data)

    def half_close(self) -> None:
        self.transport.peer_closed()

    @property
    def written(self) -> bytes:
        return bytes(self.transport.written)

    @property
    def reading_paused(self) -> bool:
        return self.transport.reading_paused

    async def response(self, head: bool = False, timeout: float = 5.0) -> Response:
        return await asyncio.wait_for(read_response(self.reader, head), timeout)

    async def closed(self, timeout: float = 5.0) -> bool:
        """True when the gateway closed the connection with nothing more written."""
        try:
            rest = await asyncio.wait_for(self.reader.read(), timeout)
        except asyncio.TimeoutError:
            return False
        return rest == b"" and self.transport.closing


@dataclass
class Request:
    """A request as a FakeBackend received it from the proxy."""

    method: str
    target: str
    raw_headers: list[tuple[str, str]]
    body: bytes

    @property
    def headers(self) -> dict[str, str]:
        """Lower-case names; repeated ones joined with ", "."""
        out: dict[str, str] = {}
        for name, value in self.raw_headers:
            k = name.lower()
            out[k] = out[k] + ", " + value if k in out else value
        return out


def echo(backend: "FakeBackend", req: Request) -> bytes:
    """The default answer: what the backend received, as JSON."""
    body = json.dumps({"backend": backend.name, "method": req.method, "path": req.target,
                       "headers": req.headers, "body_bytes": len(req.body)}).encode()
    return response_bytes(200, body, {"Content-Type": "application/json", "X-Backend": backend.name})


def response_bytes(status: int, body: bytes = b"", headers: dict | None = None, reason: str = "OK") -> bytes:
    """An HTTP/1.1 response with a Content-Length."""
    lines = [f"HTTP/1.1 {status} {reason}"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class UpstreamPeer:
    """The backend's end of one upstream connection the proxy opened."""

    def __init__(self, backend: "FakeBackend", protocol):
        self.backend = backend
        self.protocol = protocol  # the proxy's UpstreamConnection
        self.transport = FakeTransport(protocol, (backend.host, backend.port), on_write=self._received)
        self.requests: list[Request] = []  # parsed, in order
        self._parser = httptools.HttpRequestParser(self)
        self._current: Request | None = None

    @property
    def received(self) -> bytes:
        """Every byte the proxy sent on this connection."""
        return bytes(self.transport.written)

    def reply(self, data: bytes) -> None:
        """Bytes from the backend to the proxy."""
        self.transport.receive(data)

    def close(self) -> None:
        """The backend closes the connection."""
        self.transport.peer_closed()

    def _received(self, data: bytes) -> None:
        if self.protocol.upgraded:
            return
        self._parser.feed_data(data)

    # httptools callbacks: the proxy's request as the backend parses it
    def on_message_begin(self) -> None:
        self._current = Request("", "", [], b"")

    def on_url(self, url: bytes) -> None:
        self._current.target += url.decode("latin-1")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._current.raw_headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        self._current.method = self._parser.get_method().decode()

    def on_body(self, body: bytes) -> None:
        self._current.body += body

    def on_message_complete(self) -> None:
        req, self._current = self._current, None
        self.requests.append(req)
        self.backend.seen.append(req)
        if self.backend.answer is not None:
            # On a later loop turn, as a real backend's answer arrives: never
            # inside the proxy's write.
            asyncio.get_running_loop().call_soon(self._answer, req)

    def _answer(self, req: Request) -> None:
        if not self.transport.closing:
            self.reply(self.backend.answer(self.backend, req))


@dataclass
class FakeBackend:
    """An endpoint the proxy can connect to; ``answer=None`` holds requests for the test to answer."""

    name: str
    port: int
    answer: Callable[["FakeBackend", Request], bytes] | None = echo
    host: str = "127.0.0.1"
    refuse: bool = False  # connecting fails as if nothing listened
    seen: list[Request] = field(default_factory=list)
    connections: list[UpstreamPeer] = field(default_factory=list)

    @property
    def endpoint(self) -> Endpoint:
        return Endpoint(self.host, self.port)

    async def connection(self, index: int = -1, timeout: float = 5.0) -> UpstreamPeer:
        """The ``index``-th connection the proxy opened, once it is open."""
        await eventually(lambda: len(self.connections) > (index if index >= 0 else 0), timeout,
                         f"the proxy never connected to backend {self.name}")
        return self.connections[index]

    async def request(self, count: int = 1, timeout: float = 5.0) -> Request:
        """The ``count``-th request received, once received."""
        await eventually(lambda: len(self.seen) >= count, timeout, f"backend {self.name} never got request {count}")
        return self.seen[count - 1]


class Clock:
    """time.monotonic, plus however far the test has moved it on."""

    def __init__(self):
        self.offset = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.offset


class Gateway:
    """A proxy Server with fake clients and fake upstreams (``async with``)."""

    def __init__(self, table: RouteTable | None, limits: Limits | None = None, **cfg):
        config = GatewayConfig(listen=("127.0.0.1", 0), access_log=False, limits=limits or Limits(), **cfg)
        self.server = Server(config)
        if table is not None:
            self.server.swap(table)
        self.backends: dict[tuple[str, int], FakeBackend] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._saved_connect = None
        self._ports = 10000
        self.clock = Clock()
        self._clocked: list = []  # modules whose clock this gateway replaced

    async def __aenter__(self) -> "Gateway":
        # Every upstream connection the proxy opens during the test lands on a FakeBackend.
        # (An attribute of the loop object: asyncio's own loop, which pytest-asyncio runs;
        # uvloop's loop is an extension type that takes no new attributes.)
        self._loop = asyncio.get_running_loop()
        self._saved_connect = self._loop.__dict__.get("create_connection")  # another Gateway's, if nested
        self._loop.create_connection = self._create_connection
        # The proxy reads the time through a module-level ``_monotonic`` (bound once: no
        # attribute lookup per request); found by value, whichever gateway modules
        # hold one, so that moving code between them needs no change here.
        for name, module in list(sys.modules.items()):
            if name.startswith("gateway.") and getattr(module, "_monotonic", None) is time.monotonic:
                module._monotonic = self.clock
                self._clocked.append(module)
        return self

    async def __aexit__(self, *exc) -> None:
        await self.server.close()
        await asyncio.sleep(0)  # connection_lost of what close() cut
        if self._saved_connect is None:
            del self._loop.create_connection  # the loop's own method again
        else:
            self._loop.create_connection = self._saved_connect
        for module in self._clocked:
            module._monotonic = time.monotonic

    def backend(self, name: str = "b1", answer=echo, port: int | None = None) -> FakeBackend:
        if port is None:
            self._ports += 1
            port = self._ports
        b = FakeBackend(name, port, answer)
        self.backends[(b.host, b.port)] = b
        return b

    def client(self, peer=("127.0.0.1", 40000), scheme: str = "http") -> Client:
        return Client(self, peer, scheme)

    def advance(self, seconds: float) -> None:
        """Let ``seconds`` pass for the proxy, then check every connection's deadlines."""
        self.clock.offset += seconds
        now = self.clock()
        for conn in list(self.server.connections):
            conn.check_timeouts(now)

    async def _create_connection(self, factory, host=None, port=None, **_kw):
        backend = self.backends.get((host, port))
        if backend is None or backend.refuse:
            raise ConnectionRefusedError(111, f"Connect call failed ({host!r}, {port})")
        protocol = factory()
        peer = UpstreamPeer(backend, protocol)
        backend.connections.append(peer)
        protocol.connection_made(peer.transport)
        return peer.transport, protocol


__all__ = ["Client", "FakeBackend", "FakeTransport", "Gateway", "Request", "UpstreamPeer", "echo", "response_bytes"]
