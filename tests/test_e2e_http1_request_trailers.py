"""An HTTP/1.1 client's request trailers end to end: raw socket -> the real process -> backends.

The fields of a chunked request's last chunk are forwarded as an HTTP/2
client's are (tests/test_e2e_h2_request_trailers.py): to an h2c backend as a
trailing HEADERS frame, to an HTTP/1.1 backend in the last chunk. Fields no
sender may put in trailers (framing, routing, Authorization...) and the
credentials the route's authentication strips are left out; more fields than
--max-headers get 431, and nothing of them reaches the backend.
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket

import pytest

from gatewayproc import GatewayProcess, endpoint_manifests
from h2backend import H2Backend
from polling import eventually
from test_e2e_h2_request_trailers import H2C_ROUTES, RecordingBackend

KEY = "key-alice-0123456789"
KEYED_ROUTE = {"apiVersion": "crdgate.io/v1", "kind": "APIEndpoint", "metadata": {"name": "keyed", "namespace": "shop"},
               "spec": {"path": "/keyed", "backendService": "plain",
                        "auth": {"type": "APIKey", "secretRef": {"name": "api-keys"}}}}
KEYS = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "api-keys", "namespace": "shop"},
        "data": {"alice": base64.b64encode(KEY.encode()).decode()}}


def chunked_post(port: int, path: str, trailers: list[tuple[str, str]], headers: str = "") -> tuple[int, bytes]:
    """POST a chunked body ``payload`` with ``trailers`` in its last chunk; the status and body of the answer."""
    head = f"POST {path} HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: chunked\r\n{headers}Connection: close\r\n\r\n"
    last = "0\r\n" + "".join(f"{n}: {v}\r\n" for n, v in trailers) + "\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(head.encode() + b"7\r\npayload\r\n" + last.encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head_bytes, _, body = data.partition(b"\r\n\r\n")
    return int(head_bytes.split(b" ", 2)[1]), body


@pytest.fixture
async def world(tmp_path):
    h2b = await H2Backend().start()
    plain = await RecordingBackend().start()
    (tmp_path / "routes.yaml").write_text(H2C_ROUTES.format(port=h2b.port) + "---\n"
                                          + endpoint_manifests("shop", "plain", plain.port))
    (tmp_path / "keyed.json").write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": [KEYED_ROUTE, KEYS]}))
    gw = GatewayProcess(tmp_path)
    try:
        await asyncio.get_running_loop().run_in_executor(None, gw.wait_ready)
        yield gw, h2b, plain
    finally:
        gw.close()
        await h2b.close()
        await plain.close()


async def test_trailers_reach_an_h2c_backend_as_trailing_headers(world):
    gw, h2b, _ = world
    trailers = [("X-Checksum", "c1"), ("Grpc-Foo", "bar")]
    status, _ = await asyncio.to_thread(chunked_post, gw.port, "/orders/up", trailers)
    assert status == 200
    await eventually(lambda: h2b.requests and "request_trailers" in h2b.requests[-1],
                     what=lambda: f"no trailers reached the backend: {h2b.requests}")
    req = h2b.requests[-1]
    assert bytes(req["body"]) == b"payload"
    assert req["request_trailers"] == [(b"x-checksum", b"c1"), (b"grpc-foo", b"bar")]


async def test_trailers_reach_an_http11_backend_in_the_last_chunk(world):
    gw, _, plain = world
    status, _ = await asyncio.to_thread(chunked_post, gw.port, "/plain/up", [("X-Checksum", "c1")])
    assert status == 200
    await eventually(lambda: plain.received)
    assert plain.received[0].endswith(b"7\r\npayload\r\n0\r\nX-Checksum: c1\r\n\r\n"), plain.received[0]


async def test_fields_no_sender_may_put_in_trailers_are_left_out(world):
    """Routing and authentication fields in a trailer section are dropped; they never
    reopen the head's decisions either (a second Host is no "more than one Host")."""
    gw, h2b, plain = world
    forbidden = [("Host", "evil.test"), ("Authorization", "Bearer sneaky"), ("Content-Type", "text/evil"),
                 ("Cookie", "a=b"), ("X-Kept", "1")]
    status, _ = await asyncio.to_thread(chunked_post, gw.port, "/plain/up", forbidden)
    assert status == 200
    await eventually(lambda: plain.received)
    assert plain.received[0].endswith(b"7\r\npayload\r\n0\r\nCookie: a=b\r\nX-Kept: 1\r\n\r\n"), plain.received[0]
    status, _ = await asyncio.to_thread(chunked_post, gw.port, "/orders/up", forbidden)
    assert status == 200
    await eventually(lambda: h2b.requests and "request_trailers" in h2b.requests[-1])
    assert sorted(h2b.requests[-1]["request_trailers"]) == [(b"cookie", b"a=b"), (b"x-kept", b"1")]


async def test_framing_fields_in_trailers_are_malformed(world):
    """Content-Length or Transfer-Encoding in trailers: llhttp refuses the message (400), the
    request never completes toward the backend."""
    gw, _, plain = world
    for field in [("Content-Length", "99"), ("Transfer-Encoding", "chunked")]:
        status, _ = await asyncio.to_thread(chunked_post, gw.port, "/plain/up", [field, ("X-After", "1")])
        assert status == 400, field
    assert not any(b"X-After" in r for r in plain.received)


async def test_credentials_the_route_strips_are_stripped_from_trailers_too(world):
    gw, _, plain = world
    status, body = await asyncio.to_thread(chunked_post, gw.port, "/keyed/up", [("X-API-Key", KEY), ("X-Kept", "1")],
                                           headers=f"X-API-Key: {KEY}\r\n")
    assert status == 200, body
    await eventually(lambda: plain.received)
    assert KEY.encode() not in plain.received[0]
    assert plain.received[0].endswith(b"\r\n0\r\nX-Kept: 1\r\n\r\n"), plain.received[0]


async def test_too_many_trailer_fields_get_431_and_reach_no_backend(world):
    gw, h2b, plain = world
    many = [(f"X-T{i}", "v") for i in range(150)]  # --max-headers is 100
    status, body = await asyncio.to_thread(chunked_post, gw.port, "/plain/up", many)
    assert status == 431 and b"trailer" in body, body
    status, body = await asyncio.to_thread(chunked_post, gw.port, "/orders/up", many)
    assert status == 431, body
    assert not any(b"X-T1" in r for r in plain.received)
    assert not any("request_trailers" in r for r in h2b.requests)
