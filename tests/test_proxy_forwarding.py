"""Proxying over loopback: methods, bodies both ways, keep-alive, pipelining, HEAD."""

import asyncio

import aiohttp
from aiohttp import web

from proxyharness import RawClient, proxy_port, request, route, start_backend, start_proxy, table


async def _setup(handler=None):
    b = await start_backend("b1", handler)
    srv = await start_proxy(table([route(path="/api")], {"ns/svc:80": (b.endpoint,)}))
    return b, srv, proxy_port(srv)


async def test_get_is_forwarded_with_path_and_query():
    b, srv, port = await _setup()
    try:
        r = await request(port, "GET", "/api/users?id=7&x=%2F")
        assert r.status == 200
        doc = r.json()
        assert doc["backend"] == "b1"
        assert doc["path"] == "/api/users?id=7&x=%2F"
        assert doc["headers"]["host"] == "example.test"
        assert r.headers["x-backend"] == "b1"
    finally:
        await srv.close()
        await b.runner.cleanup()


async def test_unmatched_prefix_is_404_not_forwarded():
    b, srv, port = await _setup()
    try:
        r = await request(port, "GET", "/apix")
        assert r.status == 404
        assert r.json()["status"] == 404
        assert b.seen == []
    finally:
        await srv.close()
        await b.runner.cleanup()


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

    b, srv, port = await _setup(big)
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
    b, srv, port = await _setup()
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as s:
            for _ in range(30):
                async with s.get(f"http://127.0.0.1:{port}/api/x") as resp:
                    assert resp.status == 200
                    await resp.read()
        assert len(b.seen) == 30
        assert len(b.peers) == 1, f"expected one pooled upstream connection, saw {len(b.peers)}"
    finally:
        await srv.close()
        await b.runner.cleanup()


async def test_pipelined_requests_are_answered_in_order():
    async def slow_first(request, body):
        if request.path.endswith("/1"):
            await asyncio.sleep(0.2)
        return web.Response(text=request.path)

    b, srv, port = await _setup(slow_first)
    try:
        async with RawClient(port) as c:
            await c.send(
                b"GET /api/1 HTTP/1.1\r\nHost: a\r\n\r\n"
                b"GET /api/2 HTTP/1.1\r\nHost: a\r\n\r\n"
                b"POST /api/3 HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"
            )
            bodies = [(await c.response()).body for _ in range(3)]
        assert bodies == [b"/api/1", b"/api/2", b"/api/3"]
    finally:
        await srv.close()
        await b.runner.cleanup()


async def test_connection_close_is_honoured():
    b, srv, port = await _setup()
    try:
        async with RawClient(port) as c:
            await c.send(b"GET /api/x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
            r = await c.response()
            assert r.status == 200
            assert r.headers.get("connection") == "close"
            assert await c.closed()
    finally:
        await srv.close()
        await b.runner.cleanup()


async def test_http10_client_gets_a_close_delimited_or_sized_response():
    b, srv, port = await _setup()
    try:
        async with RawClient(port) as c:
            await c.send(b"GET /api/x HTTP/1.0\r\nHost: a\r\n\r\n")
            r = await c.response()
            assert r.status == 200
            assert r.json()["path"] == "/api/x"
            assert "chunked" not in r.headers.get("transfer-encoding", "")
            assert await c.closed()
    finally:
        await srv.close()
        await b.runner.cleanup()


async def test_http10_keep_alive_client_is_answered_as_http10_and_kept():
    b, srv, port = await _setup()
    try:
        async with RawClient(port) as c:
            for path in ("/api/a", "/api/b"):
                await c.send(f"GET {path} HTTP/1.0\r\nConnection: keep-alive\r\n\r\n".encode())  # no Host: fine in 1.0
                r = await c.response()
                assert r.status == 200 and r.json()["path"] == path
                assert r.headers.get("connection") == "keep-alive"
                assert "chunked" not in r.headers.get("transfer-encoding", "")
            await c.send(b"GET /api/c HTTP/1.1\r\n\r\n")  # 1.1 without Host: refused
            assert (await c.response()).status == 400
    finally:
        await srv.close()
        await b.runner.cleanup()


async def test_head_response_has_no_body_and_connection_stays_usable():
    b, srv, port = await _setup()
    try:
        async with RawClient(port) as c:
            await c.send(b"HEAD /api/x HTTP/1.1\r\nHost: a\r\n\r\n")
            r = await c.response(head=True)
            assert r.status == 200
            assert int(r.headers["content-length"]) > 0
            await c.send(b"GET /api/y HTTP/1.1\r\nHost: a\r\n\r\n")
            r2 = await c.response()
            assert r2.json()["path"] == "/api/y"
    finally:
        await srv.close()
        await b.runner.cleanup()


async def test_expect_100_continue_is_answered_before_the_body():
    b, srv, port = await _setup()
    try:
        async with RawClient(port) as c:
            await c.send(b"POST /api/x HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
            interim = await c.response()
            assert interim.status == 100
            await c.send(b"data")
            r = await c.response()
            assert r.status == 200
            assert r.json()["body_bytes"] == 4
            assert "expect" not in r.json()["headers"]
    finally:
        await srv.close()
        await b.runner.cleanup()


async def test_table_swap_does_not_reroute_a_request_in_flight():
    async def slow(request, body):
        await asyncio.sleep(0.3)
        return web.Response(text="old")

    old = await start_backend("old", slow)
    new = await start_backend("new")
    srv = await start_proxy(table([route(path="/api")], {"ns/svc:80": (old.endpoint,)}, generation=1))
    port = proxy_port(srv)
    try:
        inflight = asyncio.ensure_future(request(port, "GET", "/api/x"))
        await asyncio.sleep(0.1)
        srv.swap(table([route(path="/api")], {"ns/svc:80": (new.endpoint,)}, generation=2))
        r_new = await request(port, "GET", "/api/y")
        r_old = await inflight
        assert r_old.status == 200 and r_old.body == b"old"
        assert r_new.json()["backend"] == "new"
    finally:
        await srv.close()
        await old.runner.cleanup()
        await new.runner.cleanup()


async def test_each_request_on_a_connection_is_routed_by_its_own_host():
    # The gateway remembers the last Host a connection validated; a request with
    # another Host (or an absolute-form target naming one) must still route by its own.
    a = await start_backend("a")
    b = await start_backend("b")
    routes = [route("ns/a", "/", ("ns/a:80",), hosts=("a.test",)), route("ns/b", "/", ("ns/b:80",), hosts=("b.test",))]
    srv = await start_proxy(table(routes, {"ns/a:80": (a.endpoint,), "ns/b:80": (b.endpoint,)}))
    try:
        async with RawClient(proxy_port(srv)) as c:
            for host, want in (("a.test", "a"), ("b.test", "b"), ("a.test", "a"), ("A.TEST:80", "a"), ("c.test", None)):
                await c.send(f"GET /x HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
                r = await c.response()
                if want is None:
                    assert r.status == 404
                else:
                    assert r.status == 200 and r.json()["backend"] == want, (host, r.status)
            await c.send(b"GET http://b.test/x HTTP/1.1\r\nHost: a.test\r\n\r\n")  # the authority wins (RFC 9112 3.2.2)
            r = await c.response()
            assert r.status == 200 and r.json()["backend"] == "b"
            await c.send(b"GET /x HTTP/1.1\r\nHost: a.test\r\n\r\n")
            r = await c.response()
            assert r.status == 200 and r.json()["backend"] == "a"
    finally:
        await srv.close()
        await a.runner.cleanup()
        await b.runner.cleanup()
