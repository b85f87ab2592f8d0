"""A real gRPC server (grpcio) behind the proxy, spoken to in h2c; the client is HTTP/1.1.

gRPC over HTTP/1.1 is not a client path anyone uses, but it shows what the
upstream side does with a strict HTTP/2 server: the request grpcio accepts
(pseudo-headers, ``te: trailers``, content-type), unary and server-streaming
bodies passed through message by message, and the status in trailers,
including a trailers-only answer. No protoc: the handlers take and give raw
bytes (grpcio's identity serialisation).
"""

from __future__ import annotations

import asyncio
import struct
from concurrent import futures

import grpc
import pytest

from gateway.routing import Endpoint
from proxyharness import RawClient, proxy_port, route, start_proxy, table


def frame(message: bytes) -> bytes:
    """One gRPC length-prefixed message, uncompressed."""
    return b"\x00" + struct.pack(">I", len(message)) + message


@pytest.fixture
def grpc_server():
    handler = grpc.method_handlers_generic_handler("test.Echo", {
        "Unary": grpc.unary_unary_rpc_method_handler(lambda req, ctx: b"echo:" + req),
        "Stream": grpc.unary_stream_rpc_method_handler(lambda req, ctx: (b"part%d:" % i + req for i in range(3))),
    })
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield port
    server.stop(0)


async def call(port: int, path: bytes, message: bytes) -> bytes:
    """The whole HTTP/1.1 response to one gRPC call, trailers included."""
    body = frame(message)
    async with RawClient(port) as c:
        await c.send(b"POST " + path + b" HTTP/1.1\r\nHost: grpc.test\r\nContent-Type: application/grpc\r\n"
                     b"TE: trailers\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        data = b""
        while not (data.endswith(b"\r\n\r\n") and b"\r\n0\r\n" in data):
            chunk = await asyncio.wait_for(c.reader.read(65536), 5)
            assert chunk, data
            data += chunk
        return data


async def test_unary_server_streaming_and_trailers_only_calls(grpc_server):
    srv = await start_proxy(table([route(path="/")], {"ns/svc:80": (Endpoint("127.0.0.1", grpc_server, http2=True),)}))
    try:
        port = proxy_port(srv)
        out = await call(port, b"/test.Echo/Unary", b"hi")
        assert out.startswith(b"HTTP/1.1 200 OK\r\n") and b"content-type: application/grpc\r\n" in out
        assert out.endswith(b"c\r\n" + frame(b"echo:hi") + b"\r\n0\r\ngrpc-status: 0\r\ngrpc-message: \r\n\r\n")
        out = await call(port, b"/test.Echo/Stream", b"hi")
        parts = b"".join(b"d\r\n" + frame(b"part%d:hi" % i) + b"\r\n" for i in range(3))
        assert out.endswith(parts + b"0\r\ngrpc-status: 0\r\ngrpc-message: \r\n\r\n")
        # Trailers-only (no such method): the status is in the response head.
        out = await call(port, b"/test.Echo/Nope", b"hi")
        head = out.partition(b"\r\n\r\n")[0]
        assert b"HTTP/1.1 200 OK" in head and b"grpc-status: 12" in head
    finally:
        await srv.close()
