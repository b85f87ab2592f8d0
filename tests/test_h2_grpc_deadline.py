"""A gRPC response that runs past its deadline after its head went out, socket-free.

gRPC carries the status in trailers: the stream ends with ``grpc-status: 4``
(DEADLINE_EXCEEDED) after what the backend sent so far, and the backend's try
is cancelled. Any other HTTP/2 stream can only be reset. The grpcio client's
view is end to end (tests/test_grpc_e2e.py).
"""

from __future__ import annotations

from gateway.routing import RoutePolicy, Timeouts
from h2harness import H2Client
from polling import eventually
from protoharness import Gateway
from proxyharness import route, table

GRPC = [("content-type", "application/grpc"), ("te", "trailers")]
MESSAGE = b"\x00\x00\x00\x00\x03abc"


async def start_streaming(g, headers):
    b = g.backend("b", answer=None)
    pol = RoutePolicy(timeouts=Timeouts(request=1.0))
    g.server.swap(table([route(path="/", policy=pol)], {"ns/svc:80": (b.endpoint,)}))
    c = H2Client(g)
    sid = c.request("/pkg.Svc/Watch", method="POST", headers=headers, body=b"\x00\x00\x00\x00\x00")
    await b.request()
    peer = await b.connection(0)
    content_type = b"application/grpc" if headers else b"text/plain"
    peer.reply(b"HTTP/1.1 200 OK\r\ncontent-type: %s\r\ntransfer-encoding: chunked\r\n\r\n%x\r\n%s\r\n"
               % (content_type, len(MESSAGE), MESSAGE))
    await eventually(lambda: bytes(c.answers[sid].body) == MESSAGE)
    return c, sid, peer


async def test_a_grpc_stream_past_its_deadline_ends_with_deadline_exceeded():
    async with Gateway(None) as g:
        c, sid, peer = await start_streaming(g, GRPC)
        g.advance(1.5)
        a = await c.answer(sid)
        assert a.reset is None and a.ended
        assert a.status == 200 and bytes(a.body) == MESSAGE
        assert a.trailers == {"grpc-status": "4", "grpc-message": "deadline exceeded"}
        assert peer.transport.closing  # the backend's try is cancelled


async def test_grpc_timeout_while_streaming_too():
    async with Gateway(None) as g:
        c, sid, peer = await start_streaming(g, GRPC + [("grpc-timeout", "500m")])
        g.advance(0.7)
        a = await c.answer(sid)
        assert a.trailers.get("grpc-status") == "4" and a.reset is None


async def test_any_other_stream_past_its_deadline_is_reset():
    async with Gateway(None) as g:
        c, sid, peer = await start_streaming(g, [])
        g.advance(1.5)
        a = await c.answer(sid)
        assert a.reset is not None and a.trailers == {}
        assert peer.transport.closing
