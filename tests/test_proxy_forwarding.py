"""Proxying: methods, bodies both ways, keep-alive, pipelining, HEAD, framing.

Bytes in, bytes out (tests/protoharness.py), except large bodies, which stream
over loopback so that real socket buffers and flow control are in play.
"""

import asyncio

import aiohttp
from aiohttp import web

from protoharness import Gateway, response_bytes
from proxyharness import proxy_port, route, start_backend, start_proxy, table

GET = b"GET %s HTTP/1.1\r\nHost: a\r\n\r\n"


def _gateway(hold: bool = False):
    """A gateway with one route, /api, to one FakeBackend: an echo, or with ``hold`` answered by the test."""
    gw = Gateway(None)
    b = gw.backend("b1", answer=None) if hold else gw.backend("b1")
    gw.server.swap(table([route(path="/api")], {"ns/svc:80": (b.endpoint,)}))
    return gw, b


async def test_get_is_forwarded_with_path_and_query():
    gw, b = _gateway()
    async with gw:
        c = gw.client()
        c.send(b"GET /api/users?id=7&x=%2F HTTP/1.1\r\nHost: example.test\r\n\r\n")
        r = await c.response()
        assert r.status == 200
        doc = r.json()
        assert doc["backend"] == "b1"
        assert doc["path"] == "/api/users?id=7&x=%2F"
        assert doc["headers"]["host"] == "example.test"
        assert r.headers["x-backend"] == "b1"
        assert b.connections[0].received.startswith(b"GET /api/users?id=7&x=%2F HTTP/1.1\r\nhost: example.test\r\n")


async def test_unmatched_prefix_is_404_not_forwarded():
    gw, b = _gateway()
    async with gw:
        c = gw.client()
        c.send(GET % b"/apix")
        r = await c.response()
        assert r.status == 404
        assert r.json()["status"] == 404
        assert b.seen == [] and b.connections == []


async def test_large_bodies_stream_both_ways():
    size = 8 * 1024 * 1024
    payload = bytes(range(256)) * (size // 256)

    async def big(request, body):
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for i in range(0, len(body), 65536):
            await resp.write(body[i : i + 65536])
        await resp.write_eof()
        return resp

    b = await start_backend("b1", big)
    srv = await start_proxy(table([route(path="/api")], {"ns/svc:80": (b.endpoint,)}))
    port = proxy_port(srv)
    try:
        async with aiohttp.ClientSession() as s:
            # Content-Length request body, chunked response.
            async with s.post(f"http://127.0.0.1:{port}/api/echo", data=payload) as resp:
                assert resp.status == 200
                got = await resp.read()
            assert got == payload

            # Chunked request body (a generator has no length).
            async def gen():
                for i in range(0, len(payload), 100_000):
                    yield payload[i : i + 100_000]

            async with s.post(f"http://127.0.0.1:{port}/api/echo", data=gen()) as resp:
                assert resp.status == 200
                assert await resp.read() == payload
    finally:
        await srv.close()
        await b.runner.cleanup()


async def test_keep_alive_reuses_upstream_connections():
    gw, b = _gateway()
    async with gw:
        for i in range(30):
            c = gw.client(peer=("127.0.0.1", 41000 + i % 3))
            c.send(b"GET /api/x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
            assert (await c.response()).status == 200
        assert len(b.seen) == 30
        assert len(b.connections) == 1, f"expected one pooled upstream connection, saw {len(b.connections)}"


async def test_pipelined_requests_are_answered_in_order():
    gw, b = _gateway(hold=True)  # the test answers each request itself
    async with gw:
        c = gw.client()
        c.send(
            b"GET /api/1 HTTP/1.1\r\nHost: a\r\n\r\n"
            b"GET /api/2 HTTP/1.1\r\nHost: a\r\n\r\n"
            b"POST /api/3 HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"
        )
        up = await b.connection()
        await b.request(1)
        for _ in range(20):  # loop turns enough for a connect task, should one have been started
            await asyncio.sleep(0)
        assert [r.target for r in b.seen] == ["/api/1"], "the next request waits for the one ahead"
        assert c.reading_paused, "reading pauses while requests queue"
        for n in (1, 2, 3):
            req = await b.request(n)
            assert req.target == f"/api/{n}"
            up.reply(response_bytes(200, req.target.encode()))
        bodies = [(await c.response()).body for _ in range(3)]
        assert bodies == [b"/api/1", b"/api/2", b"/api/3"]
        assert b.seen[2].body == b"hello"
        assert len(b.connections) == 1, "one at a time, on one upstream connection"
        assert not c.reading_paused


async def test_a_pipelined_request_is_answered_after_a_slow_one_ahead_of_it():
    # The second answer is ready first: it still goes out second.
    gw, b = _gateway(hold=True)
    async with gw:
        b2 = gw.backend("b2")
        gw.server.swap(table([route("ns/slow", path="/slow"), route("ns/fast", path="/fast", backends=("ns/fast:80",))],
                             {"ns/svc:80": (b.endpoint,), "ns/fast:80": (b2.endpoint,)}))
        c = gw.client()
        c.send(GET % b"/slow" + GET % b"/fast")
        up = await b.connection()
        await b.request(1)
        assert c.written == b""
        up.reply(response_bytes(200, b"slow"))
        assert (await c.response()).body == b"slow"
        r = await c.response()
        assert r.json()["path"] == "/fast"


async def test_connection_close_is_honoured():
    gw, b = _gateway()
    async with gw:
        c = gw.client()
        c.send(b"GET /api/x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        r = await c.response()
        assert r.status == 200
        assert r.headers.get("connection") == "close"
        assert await c.closed()


async def test_a_half_closed_client_gets_its_answer_then_the_connection_closes():
    gw, b = _gateway(hold=True)
    async with gw:
        c = gw.client()
        c.send(GET % b"/api/x")
        c.half_close()
        up = await b.connection()
        await b.request(1)
        assert not c.transport.closing, "a request in flight is finished first"
        up.reply(response_bytes(200, b"ok"))
        assert (await c.response()).body == b"ok"
        assert await c.closed()


async def test_http10_client_gets_a_close_delimited_or_sized_response():
    gw, b = _gateway()
    async with gw:
        c = gw.client()
        c.send(b"GET /api/x HTTP/1.0\r\nHost: a\r\n\r\n")
        r = await c.response()
        assert r.status == 200
        assert r.json()["path"] == "/api/x"
        assert "chunked" not in r.headers.get("transfer-encoding", "")
        assert await c.closed()


async def test_http10_keep_alive_client_is_answered_as_http10_and_kept():
    gw, b = _gateway()
    async with gw:
        c = gw.client()
        for path in ("/api/a", "/api/b"):
            c.send(f"GET {path} HTTP/1.0\r\nConnection: keep-alive\r\n\r\n".encode())  # no Host: fine in 1.0
            r = await c.response()
            assert r.status == 200 and r.json()["path"] == path
            assert r.headers.get("connection") == "keep-alive"
            assert "chunked" not in r.headers.get("transfer-encoding", "")
        c.send(b"GET /api/c HTTP/1.1\r\n\r\n")  # 1.1 without Host: refused
        assert (await c.response()).status == 400


async def test_a_body_of_unknown_length_is_chunked_to_an_http11_client():
    gw, b = _gateway(hold=True)
    async with gw:
        c = gw.client()
        c.send(GET % b"/api/x")
        up = await b.connection()
        await b.request(1)
        up.reply(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nhello")
        up.close()  # the end of a close-delimited body
        r = await c.response()
        assert r.status == 200 and r.body == b"hello"
        assert r.headers.get("transfer-encoding") == "chunked"
        assert c.written.endswith(b"5\r\nhello\r\n0\r\n\r\n")
        assert not c.transport.closing, "the client connection is kept"


async def test_head_response_has_no_body_and_connection_stays_usable():
    gw, b = _gateway()
    async with gw:
        c = gw.client()
        c.send(b"HEAD /api/x HTTP/1.1\r\nHost: a\r\n\r\n")
        r = await c.response(head=True)
        assert r.status == 200
        assert int(r.headers["content-length"]) > 0
        c.send(GET % b"/api/y")
        r2 = await c.response()
        assert r2.json()["path"] == "/api/y"


async def test_expect_100_continue_is_answered_before_the_body():
    gw, b = _gateway()
    async with gw:
        c = gw.client()
        c.send(b"POST /api/x HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
        interim = await c.response()
        assert interim.status == 100
        c.send(b"data")
        r = await c.response()
        assert r.status == 200
        assert r.json()["body_bytes"] == 4
        assert "expect" not in r.json()["headers"]


async def test_table_swap_does_not_reroute_a_request_in_flight():
    gw = Gateway(None)
    old = gw.backend("old", answer=None)
    new = gw.backend("new")
    gw.server.swap(table([route(path="/api")], {"ns/svc:80": (old.endpoint,)}, generation=1))
    async with gw:
        inflight = gw.client()
        inflight.send(GET % b"/api/x")
        up = await old.connection()
        await old.request(1)
        gw.server.swap(table([route(path="/api")], {"ns/svc:80": (new.endpoint,)}, generation=2))
        c = gw.client(peer=("127.0.0.1", 40001))
        c.send(GET % b"/api/y")
        r_new = await c.response()
        up.reply(response_bytes(200, b"old"))
        r_old = await inflight.response()
        assert r_old.status == 200 and r_old.body == b"old"
        assert r_new.json()["backend"] == "new"
        assert [r.target for r in old.seen] == ["/api/x"]


async def test_each_request_on_a_connection_is_routed_by_its_own_host():
    # The gateway remembers the last Host a connection validated; a request with
    # another Host (or an absolute-form target naming one) must still route by its own.
    gw = Gateway(None)
    a = gw.backend("a")
    b = gw.backend("b")
    routes = [route("ns/a", "/", ("ns/a:80",), hosts=("a.test",)), route("ns/b", "/", ("ns/b:80",), hosts=("b.test",))]
    gw.server.swap(table(routes, {"ns/a:80": (a.endpoint,), "ns/b:80": (b.endpoint,)}))
    async with gw:
        c = gw.client()
        for host, want in (("a.test", "a"), ("b.test", "b"), ("a.test", "a"), ("A.TEST:80", "a"), ("c.test", None)):
            c.send(f"GET /x HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
            r = await c.response()
            if want is None:
                assert r.status == 404
            else:
                assert r.status == 200 and r.json()["backend"] == want, (host, r.status)
        c.send(b"GET http://b.test/x HTTP/1.1\r\nHost: a.test\r\n\r\n")  # the authority wins (RFC 9112 3.2.2)
        r = await c.response()
        assert r.status == 200 and r.json()["backend"] == "b"
        c.send(b"GET /x HTTP/1.1\r\nHost: a.test\r\n\r\n")
        r = await c.response()
        assert r.status == 200 and r.json()["backend"] == "a"
