"""Hostile and malformed requests: smuggling, limits, slow clients, path tricks.

Bytes in, bytes out (tests/protoharness.py): the proxy's protocol with fake
transports, its upstream a FakeBackend that echoes what it received.
"""

import pytest

from gateway.config import Limits
from protoharness import Gateway
from proxyharness import route, table

LIMITS = Limits(max_uri_bytes=256, max_header_bytes=2048, max_headers=20, max_body_bytes=1000, header_timeout=0.5)


@pytest.fixture
async def gw():
    async with Gateway(None, limits=LIMITS) as g:
        b = g.backend("b1")
        routes = [
            route("ns/public", path="/public", backends=("ns/svc:80",)),
            route("ns/admin", path="/admin", backends=("ns/admin:80",), methods=frozenset({"GET"})),
        ]
        g.server.swap(table(routes, {"ns/svc:80": (b.endpoint,), "ns/admin:80": ()}))
        yield b, g


async def refused(gw, raw: bytes, status: int):
    c = gw.client()
    c.send(raw)
    r = await c.response()
    assert r.status == status, (raw, r.status, r.body)
    assert r.headers.get("content-type") == "application/json"
    assert b"Traceback" not in r.body
    assert await c.closed(), "the connection must be closed after a refused request"
    return r


async def served(gw, raw: bytes, head: bool = False):
    c = gw.client()
    c.send(raw)
    return await c.response(head=head)


async def test_content_length_with_transfer_encoding_is_refused(gw):
    b, g = gw
    await refused(g, b"POST /public HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400)
    assert b.seen == []


async def test_duplicate_content_length_is_refused(gw):
    _, g = gw
    await refused(g, b"POST /public HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello1", 400)


async def test_obs_fold_and_bad_header_names_are_refused(gw):
    _, g = gw
    await refused(g, b"GET /public HTTP/1.1\r\nHost: a\r\nX-A: a\r\n b\r\n\r\n", 400)
    await refused(g, b"GET /public HTTP/1.1\r\nHost: a\r\nX A: a\r\n\r\n", 400)
    await refused(g, b"GET /public HTTP/1.1\r\nHost : a\r\n\r\n", 400)


async def test_unknown_transfer_coding_is_501(gw):
    b, g = gw
    await refused(g, b"POST /public HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501)
    assert b.seen == []


async def test_two_host_headers_are_refused(gw):
    _, g = gw
    await refused(g, b"GET /public HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400)


async def test_missing_host_on_http11_is_400(gw):
    _, g = gw
    await refused(g, b"GET /public HTTP/1.1\r\nX: y\r\n\r\n", 400)


async def test_uri_too_long_is_414(gw):
    _, g = gw
    await refused(g, b"GET /public/" + b"a" * 400 + b" HTTP/1.1\r\nHost: a\r\n\r\n", 414)


async def test_too_many_or_too_large_headers_are_431(gw):
    _, g = gw
    many = b"".join(b"X-%d: v\r\n" % i for i in range(30))
    await refused(g, b"GET /public HTTP/1.1\r\nHost: a\r\n" + many + b"\r\n", 431)
    await refused(g, b"GET /public HTTP/1.1\r\nHost: a\r\nX-Big: " + b"v" * 3000 + b"\r\n\r\n", 431)


async def test_body_over_limit_is_413_by_length_and_by_chunks(gw):
    b, g = gw
    await refused(g, b"POST /public HTTP/1.1\r\nHost: a\r\nContent-Length: 5000\r\n\r\n", 413)
    chunk = b"%x\r\n%s\r\n" % (600, b"x" * 600)
    r = await served(g, b"POST /public HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk + chunk + chunk)
    assert r.status == 413
    assert all(len(req.body) <= 1000 for req in b.seen)


async def test_slow_request_head_gets_408_and_close(gw):
    _, g = gw
    c = g.client()
    c.send(b"GET /public HTTP/1.1\r\nHost: a\r\n")  # never finished
    g.advance(0.4)
    assert c.written == b"", "answered before the header timeout"
    g.advance(0.2)
    r = await c.response()
    assert r.status == 408
    assert await c.closed()


@pytest.mark.parametrize("target", [
    b"/admin/../public/x",          # resolves to /public/x: routed as public, never as admin
    b"//public/x",
    b"/./public/x",
    b"/%70ublic/x",                 # %70 = 'p'
    b"/pub%6Cic/x",                 # upper-case hex too
])
async def test_normalised_paths_route_by_what_they_mean(gw, target):
    b, g = gw
    r = await served(g, b"GET " + target + b" HTTP/1.1\r\nHost: a\r\n\r\n")
    assert r.status == 200
    assert r.json()["path"] == "/public/x", "the upstream sees the normalised path it was matched on"


@pytest.mark.parametrize("target", [b"/public/../../admin", b"/%2e%2e/admin", b"/public%2F..%2Fadmin", b"/public/%00", b"/a%zz", b"/a%"])
async def test_unsafe_targets_are_400(gw, target):
    b, g = gw
    await refused(g, b"GET " + target + b" HTTP/1.1\r\nHost: a\r\n\r\n", 400)
    assert b.seen == []


@pytest.mark.parametrize("target", [b"/%61dmin", b"//admin", b"/public/../admin", b"/ADMIN/../admin"])
async def test_tricks_toward_admin_land_on_admin(gw, target):
    """Whatever the spelling, a path that means /admin is matched as /admin (here: 503, no endpoints)."""
    b, g = gw
    r = await served(g, b"GET " + target + b" HTTP/1.1\r\nHost: a\r\n\r\n")
    assert r.status == 503
    assert b.seen == []


async def test_garbage_gets_400_not_a_hang(gw):
    _, g = gw
    await refused(g, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n", 400)


async def test_many_connections_with_partial_heads_do_not_block_others(gw):
    _, g = gw
    clients = [g.client(peer=("127.0.0.1", 41000 + i)) for i in range(50)]
    for c in clients:
        c.send(b"GET /public HTTP/1.1\r\nHost: a\r\nX-Slow: ")
    r = await served(g, b"GET /public/ok HTTP/1.1\r\nHost: a\r\n\r\n")
    assert r.status == 200
    assert all(c.written == b"" and not c.transport.closing for c in clients)


async def test_a_catastrophic_route_regex_cannot_stall_the_proxy():
    # `(a+)+` against a run of 'a' that ends in '!' backtracks exponentially
    # in Python's re; on RE2 the lookup is linear and the proxy answers both
    # the hostile request and the next one at once.
    from gateway import regex

    rx = regex.compile(r"/r/(a+)+")
    routes = [
        route("ns/rx", path=rx.pattern, path_type="RegularExpression", regex=rx, backends=("ns/svc:80",)),
        route("ns/public", path="/public", backends=("ns/svc:80",)),
    ]
    async with Gateway(None) as g:
        b = g.backend("b1")
        g.server.swap(table(routes, {"ns/svc:80": (b.endpoint,)}))
        # Matching runs inside send(): a backtracking regex would hang the test here (pytest-timeout).
        r = await served(g, b"GET /r/" + b"a" * 4000 + b"! HTTP/1.1\r\nHost: a\r\n\r\n")
        assert r.status == 404
        r = await served(g, b"GET /r/aaa HTTP/1.1\r\nHost: a\r\n\r\n")
        assert r.status == 200 and b.seen[-1].target == "/r/aaa"
        r = await served(g, b"GET /public HTTP/1.1\r\nHost: a\r\n\r\n")
        assert r.status == 200


@pytest.mark.parametrize("host", [b"a b", b"[::1", b"a/b", b"user@a", b"a:b:c", b"a:80x", b":80", b"[]", b"[::1]x",
                                  b"a\tb", b"a\"b", b"a:65536", b"a:000080", b"[::1]:99999"])
async def test_an_invalid_host_header_is_400(gw, host):
    b, g = gw
    r = await refused(g, b"GET /public HTTP/1.1\r\nHost: " + host + b"\r\n\r\n", 400)
    assert b"invalid Host header" in r.body
    assert b.seen == []


@pytest.mark.parametrize("host", [b"a", b"a:8080", b"a:", b"a:65535", b"127.0.0.1:80", b"[::1]", b"[::1]:8443",
                                  b"xn--bcher-kva.example", b"A.Example.COM"])
async def test_valid_host_headers_are_served(gw, host):
    b, g = gw
    r = await served(g, b"GET /public HTTP/1.1\r\nHost: " + host + b"\r\n\r\n")
    assert r.status == 200, (host, r.body)


async def test_an_h2c_upgrade_is_served_as_a_plain_request_and_never_reaches_the_backend(gw):
    # Passing "Upgrade: h2c" on would let an h2c-capable backend answer 101 and
    # take HTTP/2 requests on that connection past routing and auth.
    b, g = gw
    c = g.client()
    c.send(b"GET /public HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
           b"HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n"
           b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
    r = await c.response()
    assert r.status == 200 and r.headers.get("connection") == "close"
    assert await c.closed(), "nothing after an upgrade request is parsed: the connection closes"
    req = b.seen[-1]
    assert req.target == "/public"
    assert not {"upgrade", "http2-settings"} & set(req.headers)
    assert len(b.seen) == 1


async def test_an_upgrade_on_a_request_with_a_body_is_refused_before_forwarding(gw):
    # llhttp hands back the bytes after an upgrade request's head unparsed, body
    # included: there is no safe way to forward such a request without the upgrade.
    b, g = gw
    r = await refused(g, b"POST /public HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                            b"Content-Length: 5\r\n\r\nhello", 400)
    assert b"Upgrade on a request with a body" in r.body
    await refused(g, b"GET /public HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n"
                        b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 400)
    assert b.seen == []


@pytest.mark.parametrize("target", [b"http://user@evil.example/public", b"http://evil.example:99999/public",
                                    b"http://ev il/public", b"http://[::1/public"])
async def test_an_absolute_form_target_with_an_invalid_authority_is_400(gw, target):
    b, g = gw
    r = await refused(g, b"GET " + target + b" HTTP/1.1\r\nHost: a\r\n\r\n", 400)
    assert b.seen == []


async def test_an_absolute_form_authority_replaces_host(gw):
    b, g = gw
    r = await served(g, b"GET http://api.example:8080/public?x=1 HTTP/1.1\r\nHost: other\r\n\r\n")
    assert r.status == 200
    req = b.seen[-1]
    assert req.target == "/public?x=1" and req.headers["host"] == "api.example:8080"


async def test_each_new_host_on_a_keep_alive_connection_is_checked(gw):
    b, g = gw
    c = g.client()
    c.send(b"GET /public HTTP/1.1\r\nHost: a\r\n\r\n")
    assert (await c.response()).status == 200
    c.send(b"GET /public HTTP/1.1\r\nHost: a\r\n\r\n")
    assert (await c.response()).status == 200
    c.send(b"GET /public HTTP/1.1\r\nHost: a b\r\n\r\n")
    r = await c.response()
    assert r.status == 400 and b"invalid Host header" in r.body
    assert await c.closed()
    assert len(b.seen) == 2


@pytest.mark.parametrize("version", [b"2.0", b"3.0", b"0.9", b"9.9", b"2.1"])
@pytest.mark.parametrize("connection", [b"", b"Connection: keep-alive\r\n", b"Proxy-Connection: keep-alive\r\n"],
                         ids=["none", "connection", "proxy-connection"])
async def test_a_major_version_other_than_1_is_505(gw, version, connection):
    b, g = gw
    r = await refused(g, b"GET /public HTTP/" + version + b"\r\nHost: a\r\n" + connection + b"\r\n", 505)
    assert r.json()["error"] == "HTTP Version Not Supported"
    assert b.seen == []


async def test_a_major_version_other_than_1_later_on_a_keep_alive_connection_is_505(gw):
    b, g = gw
    c = g.client()
    c.send(b"GET /public HTTP/1.1\r\nHost: a\r\n\r\n")
    assert (await c.response()).status == 200
    c.send(b"GET /public/2 HTTP/2.0\r\nHost: a\r\n\r\n")
    r = await c.response()
    assert r.status == 505 and await c.closed()
    assert [req.target for req in b.seen] == ["/public"]


async def test_the_http2_connection_preface_is_refused_and_closed_with_h2c_off():
    # A client with prior knowledge of HTTP/2 on a listener told not to serve it
    # (--h2c off): refused, never a hang. (With h2c on: tests/test_h2_protocol.py.)
    async with Gateway(None, limits=LIMITS, h2c=False) as g:
        b = g.backend("b1")
        g.server.swap(table([route("ns/public", path="/public", backends=("ns/svc:80",))], {"ns/svc:80": (b.endpoint,)}))
        await refused(g, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00", 505)
        assert b.seen == []


async def test_an_http10_client_with_proxy_connection_keep_alive_is_answered_in_http10_framing():
    # llhttp reads Proxy-Connection like Connection: the request must still be known as 1.0.
    def streamed(backend, req):  # a body of unknown length: chunked toward an HTTP/1.1 client
        return b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"

    async with Gateway(None) as g:
        b = g.backend("b", streamed)
        g.server.swap(table([route(path="/")], {"ns/svc:80": (b.endpoint,)}))
        r = await served(g, b"GET / HTTP/1.0\r\nHost: a\r\nProxy-Connection: keep-alive\r\n\r\n")
        assert r.status == 200 and r.body == b"hello"
        assert "transfer-encoding" not in r.headers, "chunked framing does not exist in HTTP/1.0"
