"""Upstream HTTP/2: an HTTP/1.1 client through the proxy to an h2c backend (gateway/h2upstream.py).

Streams share one connection, trailers reach a client that asked for them,
bodies stream both ways under flow control, and the server's limits
(MAX_CONCURRENT_STREAMS, GOAWAY, REFUSED_STREAM) are respected.
"""

from __future__ import annotations

import asyncio
import gc
import ssl
import time
import weakref

from aiohttp import web
from h2backend import H2Backend
from polling import eventually
from proxyharness import RawClient, free_port, proxy_port, request, route, start_backend, start_proxy, table
from tlsharness import CA

from gateway import h2upstream
from gateway.routing import Endpoint, EndpointSet, RetryPolicy, RoutePolicy, Timeouts


async def world(backend: H2Backend, policy: RoutePolicy | None = None):
    await backend.start()
    ep = Endpoint("127.0.0.1", backend.port, http2=True)
    kw = {} if policy is None else {"policy": policy}
    return await start_proxy(table([route(path="/", **kw)], {"ns/svc:80": (ep,)}))


async def read_until(reader: asyncio.StreamReader, marker: bytes, timeout: float = 5.0) -> bytes:
    data = b""
    while marker not in data:
        chunk = await asyncio.wait_for(reader.read(65536), timeout)
        if not chunk:
            break
        data += chunk
    return data


async def test_requests_reach_the_backend_as_http2_without_connection_specific_fields():
    b = H2Backend()
    srv = await world(b)
    try:
        r = await request(proxy_port(srv), "POST", "/orders?id=7", body=b"x" * 1000, host="shop.test",
                          headers={"TE": "trailers, deflate", "Keep-Alive": "timeout=5", "X-Custom": "yes",
                                   "Connection": "keep-alive, x-hop", "X-Hop": "gone"})
        assert r.status == 200, r.body
        seen = r.json()
        h = seen["headers"]
        assert (h[":method"], h[":scheme"], h[":authority"], h[":path"]) == ("POST", "http", "shop.test", "/orders?id=7")
        assert h["x-custom"] == "yes" and h["te"] == "trailers" and h["x-forwarded-for"] == "127.0.0.1"
        for name in ("connection", "keep-alive", "transfer-encoding", "upgrade", "host", "x-hop"):
            assert name not in h
        assert seen["body_bytes"] == 1000
        # The answer came back in HTTP/1.1 with its length.
        assert r.headers["content-length"] == str(len(r.body))
    finally:
        await srv.close()
        await b.close()


async def test_a_body_written_at_once_leaves_as_one_data_frame_with_end_stream():
    b = H2Backend()
    srv = await world(b)
    try:
        r = await request(proxy_port(srv), "POST", "/bench.Echo/Unary", body=b"\x00\x00\x00\x00\x00",
                          headers={"Content-Type": "application/grpc"})
        assert r.status == 200, r.body
        assert b.requests[0]["data_frames"] == [(5, True)]  # not (5, False) then an empty END_STREAM
    finally:
        await srv.close()
        await b.close()


async def test_many_concurrent_requests_share_one_connection():
    b = H2Backend(delay=0.05)
    srv = await world(b)
    try:
        # One request first, so the connection exists when the burst arrives.
        assert (await request(proxy_port(srv), path="/warm")).status == 200
        rs = await asyncio.gather(*[request(proxy_port(srv), path=f"/r/{i}") for i in range(40)])
        assert [r.status for r in rs] == [200] * 40
        assert b.connections == 1
        assert b.max_open > 1  # multiplexed, not one after another
        assert {r.json()["headers"][":path"] for r in rs} == {f"/r/{i}" for i in range(40)}
    finally:
        await srv.close()
        await b.close()


async def test_trailers_reach_a_client_that_asks_and_are_dropped_otherwise():
    b = H2Backend()
    srv = await world(b)
    try:
        async with RawClient(proxy_port(srv)) as c:
            await c.send(b"POST /echo HTTP/1.1\r\nHost: a\r\nTE: trailers\r\nContent-Length: 5\r\n\r\nhello")
            data = await read_until(c.reader, b"\r\n0\r\n")
            data += await read_until(c.reader, b"\r\n\r\n") if not data.endswith(b"\r\n\r\n") else b""
            head, _, body = data.partition(b"\r\n\r\n")
            assert b"transfer-encoding: chunked" in head.lower()
            assert body == b"5\r\nhello\r\n0\r\ngrpc-status: 0\r\nx-trailer: done\r\n\r\n"
            # The connection is still in step: a second request on it.
            await c.send(b"GET /next HTTP/1.1\r\nHost: a\r\n\r\n")
            assert (await c.response()).status == 200
        async with RawClient(proxy_port(srv)) as c:
            await c.send(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello")
            data = await read_until(c.reader, b"\r\n0\r\n\r\n")
            assert data.endswith(b"5\r\nhello\r\n0\r\n\r\n") and b"grpc-status" not in data
    finally:
        await srv.close()
        await b.close()


async def test_request_and_response_bodies_stream_both_ways():
    b = H2Backend()
    srv = await world(b)
    try:
        async with RawClient(proxy_port(srv)) as c:
            await c.send(b"POST /echo HTTP/1.1\r\nHost: a\r\nTE: trailers\r\nTransfer-Encoding: chunked\r\n\r\n")
            await c.send(b"5\r\nfirst\r\n")
            # The backend echoes each piece as it arrives: the first comes back
            # while the request is still open.
            got = await read_until(c.reader, b"first")
            assert b"HTTP/1.1 200" in got and b"first" in got
            await c.send(b"6\r\nsecond\r\n")
            assert b"second" in await read_until(c.reader, b"second")
            await c.send(b"0\r\n\r\n")
            assert b"grpc-status: 0" in await read_until(c.reader, b"grpc-status: 0\r\n")
        assert bytes(b.requests[0]["body"]) == b"firstsecond"
    finally:
        await srv.close()
        await b.close()


async def test_a_slow_backend_reader_stops_the_client_being_read():
    b = H2Backend(hold_window=True)  # acknowledges nothing: its 64 KiB window fills and stays full
    srv = await world(b)
    size = 4 * 1024 * 1024
    try:
        async with RawClient(proxy_port(srv)) as c:
            c.writer.write(b"POST /r HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % size)
            c.writer.write(b"y" * size)
            await eventually(lambda: b.received_body >= 60000)
            # The stream's window is closed: the proxy holds what it cannot send and
            # stops reading the client instead of buffering 4 MiB.
            proto = next(iter(srv.connections))
            await eventually(lambda: "upstream" in proto._paused)
            assert b.received_body <= 65535
            b.release()
            r = await c.response(timeout=20)
            assert r.status == 200 and r.json()["body_bytes"] == size
    finally:
        await srv.close()
        await b.close()


async def test_a_slow_client_closes_its_stream_window_not_the_connection():
    b = H2Backend()
    srv = await world(b)
    try:
        async with RawClient(proxy_port(srv)) as slow:
            # Far more than the proxy's stream window: the client reads none of it.
            await slow.send(b"GET /big/33554432 HTTP/1.1\r\nHost: a\r\n\r\n")
            conn = await eventually(lambda: b._all[0] if b._all else None)
            # The backend cannot send it all: the proxy stopped acknowledging that stream...
            await eventually(lambda: any(len(p) > 0 for p in conn.pending.values()))
            # ...and another stream on the same connection is served meanwhile.
            r = await request(proxy_port(srv), path="/other")
            assert r.status == 200 and b.connections == 1
            assert r.json()["connection"] == 1
            # Reading resumes the stream: the whole body arrives.
            r = await slow.response(timeout=30)
            assert r.status == 200 and len(r.body) == 33554432
    finally:
        await srv.close()
        await b.close()


async def test_max_concurrent_streams_is_respected():
    b = H2Backend(max_streams=2, delay=0.1)
    srv = await world(b)
    try:
        rs = await asyncio.gather(*[request(proxy_port(srv), path=f"/r/{i}") for i in range(8)])
        assert [r.status for r in rs] == [200] * 8
        assert b.max_open <= 2  # never more than the server allows on one connection
        assert b.connections >= 2  # the rest went to more connections
    finally:
        await srv.close()
        await b.close()


async def test_refused_stream_is_sent_again():
    b = H2Backend(refuse=1)
    srv = await world(b)  # no retry policy: a refused stream was never processed, so it is resent anyway
    try:
        r = await request(proxy_port(srv), path="/refused-once")
        assert r.status == 200, r.body
        assert [q["headers"][":path"] for q in b.requests] == ["/refused-once"]
    finally:
        await srv.close()
        await b.close()


async def test_a_server_that_refuses_every_stream_ends_in_502():
    b = H2Backend(refuse=1000)
    srv = await world(b, RoutePolicy(retries=RetryPolicy(attempts=2, backoff=0.001)))
    try:
        r = await request(proxy_port(srv), path="/never")
        assert r.status == 502
        assert b.refuse > 1000 - 20  # resent a bounded number of times, not in a loop
    finally:
        await srv.close()
        await b.close()


async def test_goaway_finishes_in_flight_streams_and_moves_the_rest_to_a_new_connection():
    b = H2Backend(goaway_after=2, delay=0.2)
    srv = await world(b)
    try:
        assert (await request(proxy_port(srv), path="/warm")).status == 200  # stream 1
        rs = await asyncio.gather(*[request(proxy_port(srv), path=f"/r/{i}") for i in range(4)])
        assert [r.status for r in rs] == [200] * 4
        # Stream 3 was processed on the first connection (the GOAWAY names it); the
        # streams after it were not, and went to a second one.
        conns = [r.json()["connection"] for r in rs]
        assert conns.count(1) == 1 and b.connections == 2
        assert (await request(proxy_port(srv), path="/after")).json()["connection"] == 2
    finally:
        await srv.close()
        await b.close()


async def test_backend_timeout_cancels_the_stream_and_answers_504():
    b = H2Backend(delay=5.0)
    srv = await world(b, RoutePolicy(timeouts=Timeouts(backend_request=0.3)))
    try:
        r = await request(proxy_port(srv), path="/slow")
        assert r.status == 504
        # The stream was cancelled; the connection carries the next request.
        b.delay = 0.0
        assert (await request(proxy_port(srv), path="/next")).status == 200
        assert b.connections == 1
    finally:
        await srv.close()
        await b.close()


async def test_a_malformed_response_from_the_backend_is_a_502_and_never_reaches_the_client():
    b = H2Backend()
    srv = await world(b)
    try:
        r = await request(proxy_port(srv), path="/malformed-head")
        assert r.status == 502
        assert "injected" not in r.headers.get("set-cookie", "") and "x-bad" not in r.headers
        # Trailers come after the head went out: the response is cut, the field never sent.
        port = proxy_port(srv)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /malformed-trailers HTTP/1.1\r\nHost: a\r\nTE: trailers\r\n\r\n")
        data = b""
        while True:
            chunk = await asyncio.wait_for(reader.read(65536), 5)
            if not chunk:
                break
            data += chunk
        writer.close()
        assert b"injected" not in data and b"\r\n0\r\n\r\n" not in data
        # Each time the connection that broke the protocol was closed; the next request gets a new one.
        assert (await request(proxy_port(srv), path="/next")).status == 200
        assert b.connections == 3
    finally:
        await srv.close()
        await b.close()


async def test_unreachable_h2c_backend_is_a_502():
    ep = Endpoint("127.0.0.1", free_port(), http2=True)
    srv = await start_proxy(table([route(path="/")], {"ns/svc:80": (ep,)}))
    try:
        r = await request(proxy_port(srv), path="/x")
        assert r.status == 502 and r.json()["message"] == "upstream unreachable"
    finally:
        await srv.close()


def _server_context(ca: CA, tmp_path, alpn: list[str]) -> ssl.SSLContext:
    issued = ca.issue("localhost", "127.0.0.1")
    (tmp_path / "b.crt").write_bytes(issued.cert_pem)
    (tmp_path / "b.key").write_bytes(issued.key_pem)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(tmp_path / "b.crt", tmp_path / "b.key")
    ctx.set_alpn_protocols(alpn)
    return ctx


async def test_tls_backend_negotiates_h2_by_alpn(tmp_path):
    ca = CA()
    (tmp_path / "ca.pem").write_bytes(ca.pem)
    b = await H2Backend(ssl=_server_context(ca, tmp_path, ["h2"])).start()
    key = f"https://localhost:{b.port}#h2"
    eps = {key: EndpointSet(key, (Endpoint("localhost", b.port, tls=True, http2=True),), host_header=f"localhost:{b.port}")}
    srv = await start_proxy(table([route(path="/", backends=(key,))], eps), upstream_ca_file=str(tmp_path / "ca.pem"))
    try:
        rs = await asyncio.gather(*[request(proxy_port(srv), path=f"/t/{i}") for i in range(5)])
        assert [r.status for r in rs] == [200] * 5
        assert rs[0].json()["headers"][":scheme"] == "https"
        assert rs[0].json()["headers"][":authority"] == f"localhost:{b.port}"
        assert b.connections == 1
    finally:
        await srv.close()
        await b.close()


async def test_tls_backend_that_picks_http11_is_spoken_to_in_http11(tmp_path):
    ca = CA()
    (tmp_path / "ca.pem").write_bytes(ca.pem)
    ctx = _server_context(ca, tmp_path, ["http/1.1"])
    backend = await start_backend("plain11")
    await backend.runner.cleanup()  # the same handler, served over TLS on a new site
    site_runner = backend.runner
    await site_runner.setup()
    port = free_port()
    await web.TCPSite(site_runner, "127.0.0.1", port, ssl_context=ctx).start()
    key = f"https://localhost:{port}#h2"
    eps = {key: EndpointSet(key, (Endpoint("localhost", port, tls=True, http2=True),), host_header=f"localhost:{port}")}
    srv = await start_proxy(table([route(path="/", backends=(key,))], eps), upstream_ca_file=str(tmp_path / "ca.pem"))
    try:
        for i in range(3):
            r = await request(proxy_port(srv), path=f"/t/{i}")
            assert r.status == 200, r.body
            assert r.json()["backend"] == "plain11"
    finally:
        await srv.close()
        await site_runner.cleanup()


async def test_an_idle_connection_is_closed_by_the_sweep_and_a_new_one_opens_after():
    b = H2Backend()
    srv = await world(b)
    try:
        assert (await request(proxy_port(srv), path="/a")).status == 200
        conn = b._all[0]
        ups = srv.upstreams
        ups.sweep(time.monotonic() + ups.idle_timeout - 1)  # not idle long enough: kept
        assert conn.transport is not None
        ups.sweep(time.monotonic() + ups.idle_timeout + 1)
        await eventually(lambda: conn.transport is None, what="the idle HTTP/2 connection to close")
        r = await request(proxy_port(srv), path="/b")
        assert r.status == 200 and r.json()["connection"] == 2
    finally:
        await srv.close()
        await b.close()


async def test_a_finished_try_is_freed_without_the_garbage_collector(monkeypatch):
    # The request parser's callbacks and ``transport`` point back at the stream: cut
    # when the try is over, so the stream is freed as the call ends.
    opened = []
    new_stream = h2upstream.H2Connection.new_stream

    def recording(conn):
        stream = new_stream(conn)
        opened.append(weakref.ref(stream))
        return stream

    monkeypatch.setattr(h2upstream.H2Connection, "new_stream", recording)
    b = H2Backend()
    srv = await world(b)
    gc.collect()
    gc.disable()
    try:
        for _ in range(3):
            r = await request(proxy_port(srv), "POST", "/pkg.Svc/Call", body=b"x" * 10, host="shop.test")
            assert r.status == 200, r.body
        assert len(opened) == 3
        await eventually(lambda: all(ref() is None for ref in opened), what=lambda: f"alive: {opened}")
    finally:
        gc.enable()
        await srv.close()
        await b.close()
