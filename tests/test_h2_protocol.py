"""HTTP/2 toward clients, socket-free: h2 frames in, the same exchange as HTTP/1.1, frames out.

The client is the h2 package in client mode (tests/h2harness.py) on a
protoharness connection that opens with the HTTP/2 preface (prior knowledge);
backends are protoharness FakeBackends speaking HTTP/1.1.
"""

from __future__ import annotations

import asyncio
import gc
import weakref

import pytest
from h2.errors import ErrorCodes
from h2.settings import SettingCodes

from gateway.config import Limits
from gateway.h2server import MAX_CONCURRENT_STREAMS, Http2Protocol
from gateway.routing import RoutePolicy, Timeouts
from h2harness import H2Client
from polling import eventually
from protoharness import Gateway, response_bytes
from proxyharness import route, table


def only_http2(g) -> Http2Protocol:
    (conn,) = [c for c in g.server.connections if isinstance(c, Http2Protocol)]
    return conn


async def test_a_request_goes_through_the_exchange_and_connection_fields_stay_out():
    def answer(backend, req):
        return response_bytes(200, b"hello", {"Connection": "keep-alive, X-Hop", "Keep-Alive": "timeout=5",
                                              "X-Hop": "1", "Upgrade": "h2c", "X-Kept": "yes"})

    async with Gateway(None) as g:
        b = g.backend("b", answer)
        g.server.swap(table([route(path="/api", hosts=("shop.test",))], {"ns/svc:80": (b.endpoint,)}))
        c = H2Client(g)
        sid = c.request("/api/x?q=1", authority="shop.test", headers=[("cookie", "a=1"), ("cookie", "b=2")])
        a = await c.answer(sid)
        assert a.status == 200 and bytes(a.body) == b"hello"
        assert a.headers["x-kept"] == "yes"
        for name in ("connection", "keep-alive", "x-hop", "upgrade", "transfer-encoding"):
            assert name not in a.headers, name
        req = b.seen[0]
        assert req.target == "/api/x?q=1"
        assert req.headers["host"] == "shop.test"  # :authority acts as Host
        assert req.headers["cookie"] == "a=1; b=2"  # crumbs joined for the HTTP/1.1 hop
        assert req.headers["x-forwarded-proto"] == "http"
        # Routing by :authority: another host has no route.
        sid = c.request("/api/x", authority="other.test")
        assert (await c.answer(sid)).status == 404


async def test_a_response_delimited_by_the_upstream_closing_ends_the_stream():
    async with Gateway(None) as g:
        b = g.backend("b", answer=None)
        g.server.swap(table([route(path="/")], {"ns/svc:80": (b.endpoint,)}))
        c = H2Client(g)
        sid = c.request("/")
        await b.request()
        peer = await b.connection(0)
        peer.reply(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end")
        peer.close()
        a = await c.answer(sid)
        assert a.status == 200 and bytes(a.body) == b"until the end" and a.ended and a.reset is None


async def test_the_preface_may_arrive_in_pieces():
    async with Gateway(None) as g:
        b = g.backend("b")
        g.server.swap(table([route(path="/")], {"ns/svc:80": (b.endpoint,)}))
        client = g.client()
        client.send(b"PRI * HTTP/2.0\r\n")
        client.send(b"\r\nSM\r\n\r\n")
        await eventually(lambda: only_http2(g))


async def test_a_request_body_of_unknown_length_is_sent_chunked_upstream():
    async with Gateway(None) as g:
        b = g.backend("b")
        g.server.swap(table([route(path="/")], {"ns/svc:80": (b.endpoint,)}))
        c = H2Client(g)
        sid = c.request("/up", method="POST", body=b"x" * 100_000)
        a = await c.answer(sid)
        assert a.status == 200
        req = b.seen[0]
        assert len(req.body) == 100_000 and req.headers["transfer-encoding"] == "chunked"


async def test_the_gateway_answers_in_json_and_head_gets_no_body():
    async with Gateway(None) as g:
        g.server.swap(table([], {}))
        c = H2Client(g)
        a = await c.answer(c.request("/nothing"))
        assert a.status == 404 and a.headers["content-type"] == "application/json"
        assert int(a.headers["content-length"]) == len(a.body) > 0
        a = await c.answer(c.request("/nothing", method="HEAD"))
        assert a.status == 404 and a.body == b""


# -- gRPC answers the gateway makes itself ---------------------------------------------------

GRPC = [("content-type", "application/grpc"), ("te", "trailers")]


async def test_grpc_no_route_is_unimplemented_trailers_only():
    async with Gateway(None) as g:
        g.server.swap(table([], {}))
        c = H2Client(g)
        a = await c.answer(c.request("/pkg.Svc/Method", method="POST", headers=GRPC, body=b"\x00\x00\x00\x00\x00"))
        assert a.status == 200 and a.headers["content-type"] == "application/grpc"
        assert a.headers["grpc-status"] == "12" and a.headers["grpc-message"] == "no route"
        assert a.body == b"" and a.trailers == {}, "trailers-only: one HEADERS frame with END_STREAM"


async def test_grpc_backend_unreachable_is_unavailable():
    async with Gateway(None) as g:
        b = g.backend("b")
        b.refuse = True
        g.server.swap(table([route(path="/")], {"ns/svc:80": (b.endpoint,)}))
        c = H2Client(g)
        a = await c.answer(c.request("/pkg.Svc/M", method="POST", headers=GRPC, body=b"\x00" * 5))
        assert a.headers["grpc-status"] == "14"


async def test_grpc_timeout_is_honoured_and_capped_by_the_route():
    async with Gateway(None) as g:
        b = g.backend("b", answer=None)  # never answers
        pol = RoutePolicy(timeouts=Timeouts(request=30.0))
        g.server.swap(table([route(path="/", policy=pol)], {"ns/svc:80": (b.endpoint,)}))
        c = H2Client(g)
        sid = c.request("/pkg.Svc/M", method="POST", headers=GRPC + [("grpc-timeout", "2S")], body=b"\x00" * 5)
        await b.request()
        g.advance(1.0)
        await asyncio.sleep(0.05)
        assert not c.answers[sid].ended
        g.advance(1.5)  # past the client's 2 s, long before the route's 30 s
        a = await c.answer(sid)
        assert a.headers["grpc-status"] == "4"
        # The route's timeout caps a longer grpc-timeout.
        pol = RoutePolicy(timeouts=Timeouts(request=1.0))
        g.server.swap(table([route(path="/", policy=pol)], {"ns/svc:80": (b.endpoint,)}, generation=2))
        sid = c.request("/pkg.Svc/M", method="POST", headers=GRPC + [("grpc-timeout", "1H")], body=b"\x00" * 5)
        await b.request(2)
        g.advance(1.5)
        assert (await c.answer(sid)).headers["grpc-status"] == "4"


# -- flow control ------------------------------------------------------------------------------

async def test_a_slow_reader_stalls_its_stream_only_and_the_upstream_read_pauses():
    size = 2_000_000
    async with Gateway(None) as g:
        slow = g.backend("slow", answer=None)
        fast = g.backend("fast")
        g.server.swap(table([route("ns/big", path="/big", backends=("ns/big:80",)), route(path="/")],
                            {"ns/svc:80": (fast.endpoint,), "ns/big:80": (slow.endpoint,)}))
        c = H2Client(g, auto_ack=False)
        big_sid = c.request("/big")
        await slow.request()
        peer = await slow.connection(0)
        # The upstream sends faster than the client reads, 64 KiB at a time as a socket would.
        peer.reply(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
        for _ in range(size // 65536):
            peer.reply(b"y" * 65536)
        peer.reply(b"y" * (size % 65536))
        # The client's window (64 KiB) is all that is sent; past the stream's
        # high-water mark the upstream stops being read: the backlog is bounded.
        await eventually(lambda: len(c.answers[big_sid].body) == 65535)
        await eventually(lambda: peer.transport.reading_paused)
        stream = only_http2(g).streams[big_sid]
        assert stream.pending_size <= 256 * 1024 + 65536
        # Another stream on the same connection is not stalled by it (the client
        # reads the connection, just not that stream).
        c.auto_ack = True
        c.h2.increment_flow_control_window(1_000_000)
        small = c.request("/small")
        a = await c.answer(small)
        assert a.status == 200 and b'"path": "/small"' in bytes(a.body)
        assert len(c.answers[big_sid].body) == 65535
        # Reading resumes the big one to the end.
        c.h2.increment_flow_control_window(4_000_000)
        c.h2.increment_flow_control_window(4_000_000, big_sid)
        c.send()
        a = await c.answer(big_sid)
        assert len(a.body) == size
        assert not peer.transport.reading_paused


async def test_a_client_that_never_opens_its_window_is_timed_out():
    def answer(backend, req):
        return response_bytes(200, b"z" * 300_000)

    async with Gateway(None, limits=Limits(idle_timeout=5.0)) as g:
        b = g.backend("b", answer)
        g.server.swap(table([route(path="/")], {"ns/svc:80": (b.endpoint,)}))
        c = H2Client(g, auto_ack=False)
        sid = c.request("/")
        await eventually(lambda: len(c.answers[sid].body) == 65535)
        g.advance(6.0)
        await c.wait_closed()
        assert c.goaway is not None


async def test_a_client_that_reads_nothing_at_all_is_timed_out():
    async with Gateway(None, limits=Limits(idle_timeout=5.0)) as g:
        b = g.backend("b", answer=None)
        g.server.swap(table([route(path="/")], {"ns/svc:80": (b.endpoint,)}))
        c = H2Client(g)
        sid = c.request("/")
        await b.request()
        only_http2(g).pause_writing()  # the client's socket buffer is full: it reads nothing
        (await b.connection(0)).reply(response_bytes(200, b"w" * 1000))
        stream = only_http2(g).streams[sid]
        await eventually(lambda: stream.pending and not stream.queued)  # emitted as far as it could be
        g.advance(6.0)
        await c.wait_closed()


async def test_the_request_window_stays_shut_while_the_upstream_cannot_take_the_body():
    async with Gateway(None) as g:
        b = g.backend("b", answer=None)
        g.server.swap(table([route(path="/")], {"ns/svc:80": (b.endpoint,)}))
        c = H2Client(g)
        sid = c.request("/up", method="POST", end=False)
        peer = await b.connection(0)
        await eventually(lambda: peer.protocol.handler is not None)
        # The upstream's socket is full: the exchange pauses reading this stream.
        peer.protocol.pause_writing()
        c.uploads[sid] = (b"a" * c.h2.local_flow_control_window(sid), False)
        c.send()
        await asyncio.sleep(0.05)
        assert c.h2.local_flow_control_window(sid) == 0, "not acknowledged while the upstream is paused"
        # Another stream still moves.
        other = c.request("/other", method="POST", body=b"b" * 1000)
        await eventually(lambda: any(r.target == "/other" for r in b.seen) or len(b.connections) > 1)
        peer.protocol.resume_writing()
        await eventually(lambda: c.h2.local_flow_control_window(sid) > 0)
        assert other in c.answers


# -- hardening ---------------------------------------------------------------------------------

async def test_max_concurrent_streams_is_advertised_and_the_next_stream_refused():
    async with Gateway(None) as g:
        b = g.backend("b", answer=None)  # holds every request: streams stay open
        g.server.swap(table([route(path="/")], {"ns/svc:80": (b.endpoint,)}))
        c = H2Client(g)
        await eventually(lambda: c.remote_settings_seen)
        assert 100 <= c.h2.remote_settings.max_concurrent_streams == MAX_CONCURRENT_STREAMS <= 250
        # The client's own h2 would respect the limit: lift it to play one that does not.
        c.h2.remote_settings.update({SettingCodes.MAX_CONCURRENT_STREAMS: 1000})
        c.h2.remote_settings.acknowledge()
        sids = [c.request(f"/{i}") for i in range(MAX_CONCURRENT_STREAMS + 1)]
        last = await c.answer(sids[-1])
        assert last.reset == ErrorCodes.REFUSED_STREAM
        assert not c.closed and all(c.answers[s].reset is None for s in sids[:-1])


async def test_rapid_reset_closes_the_connection_within_bounded_work():
    async with Gateway(None) as g:
        b = g.backend("b", answer=None)
        g.server.swap(table([route(path="/")], {"ns/svc:80": (b.endpoint,)}))
        c = H2Client(g)
        for _ in range(1000):
            sid = c.h2.get_next_available_stream_id()
            c.h2.send_headers(sid, [(":method", "GET"), (":scheme", "http"), (":authority", "a"), (":path", "/")])
            c.h2.reset_stream(sid, ErrorCodes.CANCEL)
        c.send()
        await c.wait_closed()
        assert c.goaway is not None and c.goaway.error_code == ErrorCodes.ENHANCE_YOUR_CALM
        conn_work = len(b.seen) + len(b.connections)
        assert conn_work <= 2 * 100 + 10, "stopped after about RESET_LIMIT streams, not 1000"


async def test_a_continuation_flood_closes_the_connection():
    from hyperframe.frame import ContinuationFrame, HeadersFrame

    async with Gateway(None) as g:
        g.server.swap(table([], {}))
        c = H2Client(g)
        await eventually(lambda: c.remote_settings_seen)
        headers = HeadersFrame(1)
        headers.data = c.h2.encoder.encode([(":method", "GET"), (":scheme", "http"), (":path", "/")])
        c.send_raw(headers.serialize())  # no END_HEADERS: CONTINUATION frames must follow
        sent = 0
        while not c.closed and sent < 10_000:
            frame = ContinuationFrame(1)
            frame.data = b"\x40\x01a\x01b" * 100  # literal header fields, never ending the block
            c.send_raw(frame.serialize())
            sent += 1
        assert c.closed and sent <= 70, f"the connection took {sent} CONTINUATION frames"


@pytest.mark.parametrize("flood", ["ping", "settings", "empty-data"])
async def test_floods_of_frames_without_requests_close_the_connection(flood):
    from hyperframe.frame import DataFrame, PingFrame, SettingsFrame

    async with Gateway(None) as g:
        b = g.backend("b", answer=None)
        g.server.swap(table([route(path="/")], {"ns/svc:80": (b.endpoint,)}))
        c = H2Client(g)
        sid = c.request("/", method="POST", end=False) if flood == "empty-data" else 0
        sent = 0
        while not c.closed and sent < 20_000:
            if flood == "ping":
                frame = PingFrame(0)
                frame.opaque_data = b"12345678"
            elif flood == "settings":
                frame = SettingsFrame(0)
            else:
                frame = DataFrame(sid)
            c.send_raw(frame.serialize() * 100)
            sent += 100
        await c.wait_closed()
        assert c.goaway is not None and c.goaway.error_code == ErrorCodes.ENHANCE_YOUR_CALM
        assert sent <= 2000


async def test_a_header_list_over_the_limit_is_refused():
    async with Gateway(None, limits=Limits(max_header_bytes=4096)) as g:
        g.server.swap(table([], {}))
        c = H2Client(g)
        await eventually(lambda: c.remote_settings_seen)
        assert c.h2.remote_settings.max_header_list_size == 4096
        c.h2.send_headers(1, [(":method", "GET"), (":scheme", "http"), (":authority", "a"), (":path", "/"),
                              ("x-big", "v" * 8000)], end_stream=True)
        c.send()
        await c.wait_closed()
        assert c.goaway.error_code in (ErrorCodes.ENHANCE_YOUR_CALM, ErrorCodes.PROTOCOL_ERROR)


@pytest.mark.parametrize("field", [("connection", "keep-alive"), ("transfer-encoding", "chunked"),
                                   ("upgrade", "websocket"), ("te", "gzip")])
async def test_connection_specific_request_fields_are_malformed_and_never_forwarded(field):
    from h2.config import H2Configuration

    async with Gateway(None) as g:
        b = g.backend("b")
        g.server.swap(table([route(path="/")], {"ns/svc:80": (b.endpoint,)}))
        c = H2Client(g)
        c.h2.config = H2Configuration(client_side=True, header_encoding=None, validate_outbound_headers=False,
                                      normalize_outbound_headers=False)  # a client that sends them anyway
        c.request("/", headers=[field])
        await c.wait_closed()
        assert c.goaway is not None and c.goaway.error_code == ErrorCodes.PROTOCOL_ERROR
        assert b.seen == []
    # TE: trailers is the one TE allowed (gRPC sends it); it is not forwarded to an HTTP/1.1 backend.
    async with Gateway(None) as g:
        b = g.backend("b")
        g.server.swap(table([route(path="/")], {"ns/svc:80": (b.endpoint,)}))
        c = H2Client(g)
        assert (await c.answer(c.request("/", headers=[("te", "trailers")]))).status == 200
        assert "te" not in b.seen[0].headers


async def test_too_many_header_fields_get_431():
    async with Gateway(None, limits=Limits(max_headers=10)) as g:
        g.server.swap(table([], {}))
        c = H2Client(g)
        a = await c.answer(c.request("/", headers=[(f"x-h{i}", "v") for i in range(20)]))
        assert a.status == 431


async def test_our_hpack_table_stays_bounded_whatever_the_client_allows():
    async with Gateway(None) as g:
        b = g.backend("b")
        g.server.swap(table([route(path="/")], {"ns/svc:80": (b.endpoint,)}))
        c = H2Client(g, settings={SettingCodes.HEADER_TABLE_SIZE: 1 << 30})
        for i in range(3):
            assert (await c.answer(c.request(f"/{i}"))).status == 200
        assert only_http2(g).h2.encoder.header_table_size <= 4096


# -- timeouts and drain ------------------------------------------------------------------------

async def test_no_request_within_the_header_timeout_closes_and_idle_connections_close():
    async with Gateway(None, limits=Limits(header_timeout=2.0, idle_timeout=10.0)) as g:
        g.server.swap(table([], {}))
        c = H2Client(g)
        g.advance(3.0)
        await c.wait_closed()
        c = H2Client(g)
        assert (await c.answer(c.request("/"))).status == 404
        g.advance(5.0)
        await asyncio.sleep(0.05)
        assert not c.closed, "after a request the idle timeout applies"
        g.advance(6.0)
        await c.wait_closed()


async def test_drain_sends_goaway_and_finishes_streams_in_flight():
    async with Gateway(None) as g:
        b = g.backend("b", answer=None)
        g.server.swap(table([route(path="/")], {"ns/svc:80": (b.endpoint,)}))
        c = H2Client(g, streams_after_goaway=True)
        sid = c.request("/slow")
        peer = await b.connection(0)
        await b.request()
        g.server.draining = True
        g.advance(0.1)
        await eventually(lambda: c.goaway is not None)
        assert c.goaway.last_stream_id == sid and c.goaway.error_code == ErrorCodes.NO_ERROR
        assert not c.closed
        # The stream in flight finishes, then the connection closes.
        peer.reply(response_bytes(200, b"done"))
        a = await c.answer(sid)
        assert bytes(a.body) == b"done" and a.ended
        await c.wait_closed()


async def test_a_finished_stream_and_its_exchange_are_freed_without_the_garbage_collector():
    # Stream and exchange point at each other (and the stream is its own transport):
    # unless the connection lets go of them, every call is garbage for the collector.
    gc.collect()
    gc.disable()
    try:
        async with Gateway(None) as g:
            b = g.backend("b")
            g.server.swap(table([route(path="/")], {"ns/svc:80": (b.endpoint,)}))
            c = H2Client(g)
            refs = []
            for _ in range(3):
                sid = c.request("/pkg.Svc/Call", method="POST", headers=[("content-type", "application/grpc")],
                                body=b"\x00\x00\x00\x00\x00")
                stream = only_http2(g).streams[sid]
                refs.append(weakref.ref(stream))  # its exchange holds it: freed, the exchange was too
                del stream
                assert (await c.answer(sid)).status == 200
            assert not only_http2(g).streams
            await eventually(lambda: all(ref() is None for ref in refs), what=lambda: f"alive: {refs}")
    finally:
        gc.enable()
