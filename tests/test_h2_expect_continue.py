"""``Expect: 100-continue`` from HTTP/2 clients, socket-free, as over HTTP/1.1.

The gateway answers 100 itself (an informational HEADERS frame) once the request
has passed routing and its policies, and only then does the client send the
body; a request it refuses gets the final answer at once, its body never
asked for. ``expect`` is never forwarded (a backend waiting to send its own 100
could stall the request). Any other expectation: 417.
"""

from __future__ import annotations

from gateway.routing import RoutePolicy
from h2harness import H2Client
from polling import eventually
from protoharness import Gateway
from proxyharness import route, table

EXPECT = [("expect", "100-continue")]


async def test_the_gateway_answers_100_then_the_body_goes_through():
    async with Gateway(None) as g:
        b = g.backend("b")
        g.server.swap(table([route(path="/")], {"ns/svc:80": (b.endpoint,)}))
        c = H2Client(g)
        sid = c.request("/up", method="POST", headers=EXPECT, end=False)
        await eventually(lambda: c.answers[sid].interim == ["100"], what=lambda: c.answers[sid])
        c.h2.send_data(sid, b"x" * 1000, end_stream=True)
        c.send()
        a = await c.answer(sid)
        assert a.status == 200 and a.interim == ["100"]
        req = b.seen[0]
        assert len(req.body) == 1000 and "expect" not in req.headers


async def test_a_refused_request_gets_its_answer_without_a_100():
    async with Gateway(None) as g:
        b = g.backend("b")
        small = RoutePolicy(max_body_bytes=10)
        g.server.swap(table([route("ns/small", path="/small", policy=small)], {"ns/svc:80": (b.endpoint,)}))
        c = H2Client(g)
        for path, headers, status in [("/nothing", EXPECT, 404),
                                      ("/small", EXPECT + [("content-length", "1000")], 413)]:
            sid = c.request(path, method="POST", headers=headers, end=False)
            a = await c.answer(sid)
            assert a.status == status and a.interim == [], path
        assert b.seen == []


async def test_another_expectation_gets_417():
    async with Gateway(None) as g:
        b = g.backend("b")
        g.server.swap(table([route(path="/")], {"ns/svc:80": (b.endpoint,)}))
        c = H2Client(g)
        a = await c.answer(c.request("/up", method="POST", headers=[("expect", "something-else")], body=b"x"))
        assert a.status == 417 and a.interim == []
        assert b.seen == []
