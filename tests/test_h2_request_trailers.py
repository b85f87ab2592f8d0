"""Request trailers from HTTP/2 clients, socket-free: h2 frames in, HTTP/1.1 bytes to the backend.

A body of unknown length goes chunked to an HTTP/1.1 backend and its last chunk
carries the trailers; a body with a Content-Length goes as it is and the
trailers are dropped (nowhere to put them). Trailers obey the rules of a head:
connection-specific fields and pseudo-header fields are malformed (the h2 state
machine ends the connection), the count is bounded by --max-headers, and fields
no sender may put in trailers, or the credentials the route's authentication
strips, never reach the backend. The HTTP/2 backend side is end to end
(tests/test_e2e_http2_upstream.py).
"""

from __future__ import annotations

from h2.config import H2Configuration
from h2.errors import ErrorCodes

from gateway.auth import APIKeyAuthenticator
from gateway.config import Limits
from gateway.routing import RoutePolicy
from h2harness import H2Client
from polling import eventually
from protoharness import Gateway
from proxyharness import route, table

GRPC = [("content-type", "application/grpc"), ("te", "trailers")]


async def test_trailers_ride_in_the_last_chunk_to_an_http11_backend():
    async with Gateway(None) as g:
        b = g.backend("b")
        g.server.swap(table([route(path="/")], {"ns/svc:80": (b.endpoint,)}))
        c = H2Client(g)
        sid = c.request("/pkg.Svc/Up", method="POST", headers=GRPC, body=b"\x00\x00\x00\x00\x02hi",
                        trailers=[("x-checksum", "c1"), ("grpc-foo", "bar"), ("content-type", "text/plain"),
                                  ("authorization", "Bearer sneaky")])
        a = await c.answer(sid)
        assert a.status == 200
        peer = await b.connection(0)
        # Fields no sender may put in trailers (content-type, authorization) are left out.
        assert peer.received.endswith(b"\r\n0\r\nx-checksum: c1\r\ngrpc-foo: bar\r\n\r\n"), peer.received[-200:]
        assert b.seen[0].body == b"\x00\x00\x00\x00\x02hi"


async def test_a_body_with_a_content_length_drops_the_trailers():
    async with Gateway(None) as g:
        b = g.backend("b")
        g.server.swap(table([route(path="/")], {"ns/svc:80": (b.endpoint,)}))
        c = H2Client(g)
        sid = c.request("/up", method="POST", headers=[("content-length", "5")], body=b"hello",
                        trailers=[("x-checksum", "c1")])
        assert (await c.answer(sid)).status == 200
        peer = await b.connection(0)
        assert peer.received.endswith(b"\r\n\r\nhello") and b"x-checksum" not in peer.received


async def test_credentials_the_route_strips_are_stripped_from_trailers_too():
    key = "alice-key-0123456789"
    async with Gateway(None) as g:
        b = g.backend("b")
        pol = RoutePolicy(auth=APIKeyAuthenticator({"alice": key}))
        g.server.swap(table([route(path="/", policy=pol)], {"ns/svc:80": (b.endpoint,)}))
        c = H2Client(g)
        sid = c.request("/up", method="POST", headers=[("x-api-key", key)], body=b"x",
                        trailers=[("x-api-key", key), ("x-kept", "1")])
        assert (await c.answer(sid)).status == 200
        peer = await b.connection(0)
        assert key.encode() not in peer.received
        assert peer.received.endswith(b"\r\n0\r\nx-kept: 1\r\n\r\n")


async def test_connection_specific_or_pseudo_header_trailers_end_the_connection_unforwarded():
    for field in [("connection", "close"), ("te", "gzip"), (":path", "/admin")]:
        async with Gateway(None) as g:
            b = g.backend("b", answer=None)
            g.server.swap(table([route(path="/")], {"ns/svc:80": (b.endpoint,)}))
            c = H2Client(g)
            c.h2.config = H2Configuration(client_side=True, header_encoding=None, validate_outbound_headers=False,
                                          normalize_outbound_headers=False)  # a client that sends them anyway
            c.request("/up", method="POST", body=b"x", trailers=[field, ("x-after", "1")])
            await c.wait_closed()
            assert c.goaway is not None and c.goaway.error_code == ErrorCodes.PROTOCOL_ERROR, field
            for peer in b.connections:
                assert b"x-after" not in peer.received


async def test_too_many_trailer_fields_get_431():
    async with Gateway(None, limits=Limits(max_headers=10)) as g:
        b = g.backend("b", answer=None)
        g.server.swap(table([route(path="/")], {"ns/svc:80": (b.endpoint,)}))
        c = H2Client(g)
        sid = c.request("/up", method="POST", body=b"x", trailers=[(f"x-t{i}", "v") for i in range(20)])
        a = await c.answer(sid)
        assert a.status == 431
        await eventually(lambda: all(p.transport.closing for p in b.connections))
        for peer in b.connections:
            assert b"x-t1" not in peer.received
