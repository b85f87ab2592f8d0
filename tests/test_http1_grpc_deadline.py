"""A gRPC response over HTTP/1.1 that runs past its deadline after its head went out, socket-free.

A client that asked for trailers (``TE: trailers``) gets ``grpc-status: 4``
(DEADLINE_EXCEEDED) in the last chunk after what the backend sent so far, as an
HTTP/2 client gets it in trailers (tests/test_h2_grpc_deadline.py); any other
response can only be cut.
"""

from __future__ import annotations

from gateway.routing import RoutePolicy, Timeouts
from polling import eventually
from protoharness import Gateway
from proxyharness import route, table

MESSAGE = b"\x00\x00\x00\x00\x03abc"
CHUNK = b"%x\r\n%s\r\n" % (len(MESSAGE), MESSAGE)


async def start_streaming(g, te: bool, content_type: bytes = b"application/grpc", body_done: bool = True):
    b = g.backend("b", answer=None)
    g.server.swap(table([route(path="/", policy=RoutePolicy(timeouts=Timeouts(request=1.0)))],
                        {"ns/svc:80": (b.endpoint,)}))
    c = g.client()
    framing = b"content-length: 5\r\n\r\n\x00\x00\x00\x00\x00" if body_done \
        else b"transfer-encoding: chunked\r\n\r\n5\r\n\x00\x00\x00\x00\x00\r\n"
    c.send(b"POST /pkg.Svc/Watch HTTP/1.1\r\nhost: gw.test\r\ncontent-type: %s\r\n%s%s"
           % (content_type, b"te: trailers\r\n" if te else b"", framing))
    if body_done:
        await b.request()
    peer = await b.connection(0)
    peer.reply(b"HTTP/1.1 200 OK\r\ncontent-type: %s\r\ntransfer-encoding: chunked\r\n\r\n%s" % (content_type, CHUNK))
    await eventually(lambda: c.written.endswith(CHUNK))
    return c, peer


async def test_a_grpc_response_past_its_deadline_ends_with_deadline_exceeded_in_the_last_chunk():
    async with Gateway(None) as g:
        c, peer = await start_streaming(g, te=True)
        g.advance(1.5)
        await eventually(lambda: c.written.endswith(b"\r\n\r\n"))
        assert c.written.endswith(CHUNK + b"0\r\ngrpc-status: 4\r\ngrpc-message: deadline exceeded\r\n\r\n")
        assert not c.transport.closing  # the response is complete: the connection stays usable
        assert peer.transport.closing  # the backend's try is cancelled


async def test_a_request_body_still_streaming_closes_the_connection_after_the_last_chunk():
    async with Gateway(None) as g:
        c, peer = await start_streaming(g, te=True, body_done=False)
        g.advance(1.5)
        await eventually(lambda: c.transport.closing)
        assert c.written.endswith(b"0\r\ngrpc-status: 4\r\ngrpc-message: deadline exceeded\r\n\r\n")


async def test_without_te_trailers_the_connection_is_cut():
    async with Gateway(None) as g:
        c, peer = await start_streaming(g, te=False)
        g.advance(1.5)
        await eventually(lambda: c.transport.closing)
        assert c.written.endswith(CHUNK)  # no last chunk


async def test_any_other_response_past_its_deadline_is_cut():
    async with Gateway(None) as g:
        c, peer = await start_streaming(g, te=True, content_type=b"text/plain")
        g.advance(1.5)
        await eventually(lambda: c.transport.closing)
        assert c.written.endswith(CHUNK)
