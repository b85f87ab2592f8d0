"""A backend that breaks HTTP: endless heads, unasked 101, extra responses. The client gets 502 or the
right answer, never another request's bytes, and the broken connection is not reused.

Bytes in, bytes out (tests/protoharness.py): the backend's bytes are scripted per path.
"""

import asyncio

import pytest

from gateway.config import Limits
from protoharness import Client, Gateway
from proxyharness import route, table

EXTRA = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nextra"

# What the backend answers, by path; any other path: 200 with the path's first 6 characters.
RESPONSES = {
    "/big-head": b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 100_000 + b"\r\nContent-Length: 2\r\n\r\nok",
    "/switch": b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n",
    "/two": b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\none" + EXTRA,
    "/half-extra": b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\none" + EXTRA[:20],
    # A 204 has no body whatever it says; a client told Content-Length: 5 could wait for 5 bytes.
    "/no-content": b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\nX-Kept: yes\r\n\r\n",
    # Interim responses before the final one (Early Hints twice): not forwarded, nor their fields.
    "/hints": b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"
              b"HTTP/1.1 103 Early Hints\r\nLink: </b.js>; rel=preload\r\n\r\n"
              b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Final: yes\r\n\r\nfinal",
}


def raw(backend, req) -> bytes:
    return RESPONSES.get(req.target, b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\n" + req.target[:6].encode().ljust(6))


@pytest.fixture
async def bad():
    async with Gateway(None, limits=Limits(max_response_header_bytes=16384)) as gw:
        backend = gw.backend("raw", raw)
        gw.server.swap(table([route("ns/r", path="/")], {"ns/svc:80": (backend.endpoint,)}))
        yield backend, gw


async def get(c: Client, path: str):
    c.send(f"GET {path} HTTP/1.1\r\nHost: a\r\n\r\n".encode())
    return await c.response()


async def test_a_response_head_above_the_limit_is_502(bad):
    backend, gw = bad
    c = gw.client()
    r = await get(c, "/big-head")
    assert r.status == 502 and r.json()["message"] == "upstream failed"
    assert b"aaaa" not in r.body
    r = await get(c, "/next00")  # the client connection still serves
    assert r.status == 200 and r.body == b"/next0"


async def test_an_unasked_101_is_502_at_once(bad):
    backend, gw = bad
    c = gw.client()
    r = await get(c, "/switch")
    assert r.status == 502
    r = await get(c, "/after0")
    assert r.status == 200 and r.body == b"/after"


@pytest.mark.parametrize("path", ["/two", "/half-extra"])
async def test_bytes_beyond_the_response_never_answer_the_next_request(bad, path):
    backend, gw = bad
    c = gw.client()
    r = await get(c, path)
    assert r.status == 200 and r.body == b"one"
    for i in range(3):
        r = await get(c, f"/req{i}xx")
        assert r.status == 200 and r.body == f"/req{i}x".encode(), r.body
    # The connection that carried the extra bytes was not given to the next request.
    assert len(backend.connections) >= 2


async def test_a_204_reaches_the_client_without_content_length(bad):
    backend, gw = bad
    c = gw.client()
    c.send(b"GET /no-content HTTP/1.1\r\nHost: a\r\n\r\n")
    head = await asyncio.wait_for(c.reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 204") and b"x-kept: yes" in head.lower()
    assert b"content-length" not in head.lower()
    r = await get(c, "/after0")  # nothing of the 204 was left to confuse the next answer
    assert r.status == 200 and r.body == b"/after"


async def test_interim_responses_are_dropped_and_the_final_one_forwarded(bad):
    backend, gw = bad
    c = gw.client()
    r = await get(c, "/hints")
    assert r.status == 200 and r.body == b"final"
    assert r.headers.get("x-final") == "yes" and "link" not in r.headers
    r = await get(c, "/next00")  # the upstream connection was reused cleanly
    assert r.status == 200 and r.body == b"/next0"
    assert len(backend.connections) == 1
