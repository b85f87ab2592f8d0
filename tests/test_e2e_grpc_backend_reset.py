"""A backend that resets or closes a response it has begun, through the real process.

The response head (and one message) is with the client already when an h2c
backend resets the stream (RST_STREAM) or closes its connection. A gRPC client
(grpcio, h2c) gets what came before and then trailers ``grpc-status: 14``
UNAVAILABLE, a status it may retry on, instead of a reset it reads as INTERNAL.
Any other HTTP/2 stream is still reset. An HTTP/1.1 gRPC client that asked for
trailers (``TE: trailers``) gets the same status in the last chunk; without that
request its connection is still cut before the last chunk (it has no way to be told).
"""

from __future__ import annotations

import asyncio
import json
import socket

import grpc
import pytest

from gatewayproc import GatewayProcess
from h2backend import MIDWAY_MESSAGE, H2Backend
from h2socket import h2_request
from polling import eventually
from test_grpc_e2e import IDENTITY, h2c_service

ROUTE = {"apiVersion": "crdgate.io/v1", "kind": "APIEndpoint", "metadata": {"name": "midway", "namespace": "shop"},
         "spec": {"path": "/test.Midway/", "backendService": "midway"}}


@pytest.fixture
async def world(tmp_path):
    backend = await H2Backend().start()  # in the test's own event loop
    folder = tmp_path
    objects = [*h2c_service("shop", "midway", backend.port), ROUTE]
    (folder / "objects.json").write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}))
    gw = GatewayProcess(folder, access_log=True)
    try:
        await asyncio.get_running_loop().run_in_executor(None, gw.wait_ready)
        yield gw
    finally:
        gw.close()
        await backend.close()


def grpc_call(port: int, method: str) -> tuple[list[bytes], grpc.RpcError]:
    got = []
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.unary_stream(f"/test.Midway/{method}", **IDENTITY)
        with pytest.raises(grpc.RpcError) as err:
            for message in call(b"", timeout=15):
                got.append(message)
    return got, err.value


# -midway: the reset (or close) in the same read as the message; -later: 0.2 s after it.
@pytest.mark.parametrize("method", ["reset-midway", "close-midway", "reset-later", "close-later"])
async def test_a_grpc_client_gets_unavailable_after_what_came_before(world, method):
    got, error = await asyncio.to_thread(grpc_call, world.port, method)
    assert got == [MIDWAY_MESSAGE[5:]]
    assert error.code() == grpc.StatusCode.UNAVAILABLE, (error.code(), error.details())
    assert error.details() == "the backend reset or closed the stream"
    # Logged as the failure it is, not as the 200 the backend began with.
    lines = await eventually(lambda: [line for line in world.stdout().splitlines() if method in line],
                             what=lambda: f"no access log line:\n{world.stdout()[-2000:]}")
    assert '"status":502' in lines[0], lines[0]


@pytest.mark.parametrize("method", ["reset-later", "close-later"])
async def test_any_other_http2_stream_is_still_reset(world, method):
    out = await asyncio.to_thread(h2_request, world.port, f"/test.Midway/{method}", body=b"x",
                                  headers=[(b"content-type", b"application/octet-stream")])
    assert out.status == 200 and out.body == MIDWAY_MESSAGE
    assert out.reset is not None


def http11_grpc_post(port: int, path: str, te: bool = True) -> bytes:
    head = (f"POST {path} HTTP/1.1\r\nHost: gw.test\r\nContent-Type: application/grpc\r\n"
            + ("TE: trailers\r\n" if te else "") + "Content-Length: 5\r\n\r\n").encode()
    data = b""
    with socket.create_connection(("127.0.0.1", port), timeout=15) as s:
        s.sendall(head + b"\x00\x00\x00\x00\x00")
        while not data.endswith(b"\r\n0\r\n\r\n") and b"\r\n0\r\ngrpc-status" not in data \
                or not data.endswith(b"\r\n\r\n"):
            chunk = s.recv(65536)
            if not chunk:
                return data  # closed by the gateway
            data += chunk
    return data


@pytest.mark.parametrize("method", ["reset-midway", "close-later"])
async def test_an_http11_grpc_client_asking_for_trailers_gets_unavailable_in_the_last_chunk(world, method):
    data = await asyncio.to_thread(http11_grpc_post, world.port, f"/test.Midway/{method}")
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"transfer-encoding: chunked" in head.lower(), head
    assert body == (b"%x\r\n%s\r\n" % (len(MIDWAY_MESSAGE), MIDWAY_MESSAGE)
                    + b"0\r\ngrpc-status: 14\r\ngrpc-message: the backend reset or closed the stream\r\n\r\n"), body
    lines = await eventually(lambda: [line for line in world.stdout().splitlines() if method in line],
                             what=lambda: f"no access log line:\n{world.stdout()[-2000:]}")
    assert '"status":502' in lines[0], lines[0]


async def test_an_http11_client_that_did_not_ask_for_trailers_is_still_cut(world):
    data = await asyncio.to_thread(http11_grpc_post, world.port, "/test.Midway/reset-later", False)
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"transfer-encoding: chunked" in head.lower(), head
    assert body == b"%x\r\n%s\r\n" % (len(MIDWAY_MESSAGE), MIDWAY_MESSAGE)  # no last chunk: the response was cut
