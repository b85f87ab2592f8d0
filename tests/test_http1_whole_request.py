"""A request head that arrives whole in one read, and nothing after it, is taken apart without
llhttp's callbacks (gateway/wire.py ``whole_request``), and reads exactly as llhttp reads it;
anything less plain, every request that is refused among them, still goes through llhttp.

Three checks: which heads are read there and which are left to llhttp; a differential run of
thousands of mutated heads, each one whole_request accepts parsed by llhttp too and compared
field by field; and the proxy end to end (tests/protoharness.py), each request sent in one read
and again split so that llhttp reads it, with the same bytes reaching the backend and the client.
"""

import asyncio
import random
import re

import httptools
import pytest

from gateway.config import Limits
from gateway.wire import REQUEST_NOT_COPIED, copy_request_fields, whole_request
from polling import eventually
from protoharness import Gateway
from proxyharness import route, table

MAX_URI, MAX_HEAD, MAX_HEADERS = 256, 2048, 20
LIMITS = Limits(max_uri_bytes=MAX_URI, max_header_bytes=MAX_HEAD, max_headers=MAX_HEADERS, max_body_bytes=1000)

WRK = b"GET /plain HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n"

# Read here, without the parser.
WHOLE = {
    "wrk": WRK,
    "curl": b"GET /public/a?b=c&d=%20e HTTP/1.1\r\nHost: a.example\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n",
    "browser-like, Connection: keep-alive": (
        b"GET /public/x.html HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\nAccept-Language: en\r\n"
        b"Accept: text/html,application/xhtml+xml;q=0.9\r\nCookie: a=b; c=d\r\n\r\n"),
    "HEAD": b"HEAD /public HTTP/1.1\r\nHost: a\r\n\r\n",
    "DELETE, lower-case names": b"DELETE /public/1 HTTP/1.1\r\nhost: a\r\nx-a: b\r\n\r\n",
    "OPTIONS": b"OPTIONS /public HTTP/1.1\r\nHost: a\r\nOrigin: http://b\r\n\r\n",
    "POST without a body": b"POST /public HTTP/1.1\r\nHost: a\r\n\r\n",
    "no Host (refused by routing, not by the parser)": b"GET /public HTTP/1.1\r\nX-A: b\r\n\r\n",
    "an unrouted path": b"GET /nowhere HTTP/1.1\r\nHost: a\r\n\r\n",
    "dot segments": b"GET /public/../public/./a HTTP/1.1\r\nHost: a\r\n\r\n",
    "spaces and a tab in values, none after the colon": b"GET /public HTTP/1.1\r\nHost:a\r\nX-A:  a b\tc\r\n\r\n",
    "obs-text in a value": b"GET /public HTTP/1.1\r\nHost: a\r\nX-N: caf\xc3\xa9\r\n\r\n",
    "token characters in a name": b"GET /public HTTP/1.1\r\nHost: a\r\nX-!#$%&'*+.^_`|~9: v\r\n\r\n",
    "Upgrade without Connection: upgrade": b"GET /public HTTP/1.1\r\nHost: a\r\nUpgrade: h2c\r\n\r\n",
    "hop-by-hop fields": b"GET /public HTTP/1.1\r\nHost: a\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\n\r\n",
    "forwarding fields from an untrusted peer": (
        b"GET /public HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 1.2.3.4\r\nForwarded: for=1.2.3.4\r\n\r\n"),
    "a method the route does not allow": b"DELETE /admin HTTP/1.1\r\nHost: a\r\n\r\n",
    "the target at the limit": b"GET /public/" + b"a" * (MAX_URI - 8) + b" HTTP/1.1\r\nHost: a\r\n\r\n",
    "the client's request id": b"GET /public HTTP/1.1\r\nHost: a\r\nX-Request-Id: abc\r\nX-A: b\r\n\r\n",
    "fields around those not copied": (
        b"GET /public HTTP/1.1\r\nX-A: 1\r\nHost: a\r\nX-B: 2\r\nTE: trailers\r\nConnection: keep-alive\r\n"
        b"X-C: 3\r\nX-Real-IP: 1.2.3.4\r\n\r\n"),
}

# Left to llhttp, which decides (some it refuses, some it reads in several steps).
OTHER = {
    "a body": b"POST /public HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nok",
    "Content-Length: 0": b"POST /public HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
    "chunked": b"POST /public HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
    "Connection: close": b"GET /public HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    "Connection: upgrade": b"GET /public HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n",
    "two Connection fields": b"GET /public HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\nConnection: x\r\n\r\n",
    "Proxy-Connection": b"GET /public HTTP/1.1\r\nHost: a\r\nProxy-Connection: close\r\n\r\n",
    "Expect": b"GET /public HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n",
    "grpc-timeout": b"GET /public HTTP/1.1\r\nHost: a\r\ngrpc-timeout: 1S\r\n\r\n",
    "HTTP/1.0": b"GET /public HTTP/1.0\r\nHost: a\r\n\r\n",
    "HTTP/2.0": b"GET /public HTTP/2.0\r\nHost: a\r\n\r\n",
    "two requests in one read": b"GET /public HTTP/1.1\r\nHost: a\r\n\r\nGET /public HTTP/1.1\r\nHost: a\r\n\r\n",
    "absolute form": b"GET http://a/public HTTP/1.1\r\nHost: a\r\n\r\n",
    "asterisk form": b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
    "CONNECT": b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n",
    "an unknown method": b"PROPFIND /public HTTP/1.1\r\nHost: a\r\n\r\n",
    "a lower-case method": b"get /public HTTP/1.1\r\nHost: a\r\n\r\n",
    "two spaces after the method": b"GET  /public HTTP/1.1\r\nHost: a\r\n\r\n",
    "a quote in the target": b'GET /public/"a" HTTP/1.1\r\nHost: a\r\n\r\n',
    "a fragment": b"GET /public#a HTTP/1.1\r\nHost: a\r\n\r\n",
    "obs-text in the target": b"GET /public/\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n",
    "a target too long": b"GET /public/" + b"a" * MAX_URI + b" HTTP/1.1\r\nHost: a\r\n\r\n",
    "two Hosts": b"GET /public HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    "an invalid Host": b"GET /public HTTP/1.1\r\nHost: a b\r\n\r\n",
    "a Host with userinfo": b"GET /public HTTP/1.1\r\nHost: u@a\r\n\r\n",
    "folded field": b"GET /public HTTP/1.1\r\nHost: a\r\nX-A: a\r\n b\r\n\r\n",
    "whitespace after a value": b"GET /public HTTP/1.1\r\nHost: a\r\nX-A: a \r\n\r\n",
    "whitespace before the colon": b"GET /public HTTP/1.1\r\nHost : a\r\n\r\n",
    "a space in a name": b"GET /public HTTP/1.1\r\nHost: a\r\nX A: a\r\n\r\n",
    "an empty value": b"GET /public HTTP/1.1\r\nHost: a\r\nX-A:\r\n\r\n",
    "a control byte in a value": b"GET /public HTTP/1.1\r\nHost: a\r\nX-A: a\x01b\r\n\r\n",
    "a NUL in a value": b"GET /public HTTP/1.1\r\nHost: a\r\nX-A: a\x00b\r\n\r\n",
    "bare LFs": b"GET /public HTTP/1.1\nHost: a\n\n",
    "a bare CR": b"GET /public HTTP/1.1\r\nHost: a\r\nX-A: a\rb\r\n\r\n",
    "an empty line first": b"\r\nGET /public HTTP/1.1\r\nHost: a\r\n\r\n",
    "too many fields": b"GET /public HTTP/1.1\r\nHost: a\r\n" + b"X-A: b\r\n" * MAX_HEADERS + b"\r\n",
    "fields too large": b"GET /public HTTP/1.1\r\nHost: a\r\nX-Big: " + b"a" * MAX_HEAD + b"\r\n\r\n",
}

# Not complete: read by llhttp, waiting for the rest (no response to compare).
PARTS = {
    "part of the head": b"GET /public HTTP/1.1\r\nHost: a\r\n",
    "the request line only": b"GET /public HTTP/1.1\r\n",
}


RID = b"x-request-id"


def read(data: bytes):
    return whole_request(data, MAX_URI, MAX_HEAD, MAX_HEADERS, RID)


def copied_one_by_one(headers) -> bytes:
    """The client's fields as copy_request_fields copies them one by one toward the upstream."""
    parts = []
    copy_request_fields(parts, headers, None, REQUEST_NOT_COPIED, None, RID, False)
    return b"".join(parts)


@pytest.mark.parametrize("name", sorted(WHOLE))
def test_plain_heads_are_read_whole(name):
    assert read(WHOLE[name]) is not None


def test_the_lines_copied_as_they_came_are_those_copied_one_by_one():
    for name, data in WHOLE.items():
        headers, lines = read(data)[2], read(data)[7]
        if name in ("the client's request id", "spaces and a tab in values, none after the colon"):
            assert lines is None, name  # copied one by one: the id is read, the lines rewritten
        else:
            assert lines == copied_one_by_one(headers), name


@pytest.mark.parametrize("name", sorted(OTHER) + sorted(PARTS))
def test_anything_else_is_left_to_llhttp(name):
    data = OTHER.get(name) or PARTS[name]
    if name in ("an invalid Host", "a Host with userinfo"):
        # The grammar is plain; the protocol checks the Host (valid_host) and leaves it to llhttp's path.
        assert read(data) is not None
    else:
        assert read(data) is None


def test_what_it_reads():
    method, url, headers, host, user_agent, connection, size, lines = read(WHOLE["curl"])
    assert (method, url, host, user_agent, connection) == ("GET", b"/public/a?b=c&d=%20e", b"a.example",
                                                           b"curl/8.5.0", None)
    assert headers == [(b"Host", b"a.example"), (b"User-Agent", b"curl/8.5.0"), (b"Accept", b"*/*")]
    assert size == sum(len(n) + len(v) + 4 for n, v in headers)  # as ClientProtocol.on_header counts
    assert lines == b"User-Agent: curl/8.5.0\r\nAccept: */*\r\n"  # Host is the gateway's to write
    assert read(WHOLE["browser-like, Connection: keep-alive"])[5] == b"keep-alive"
    assert read(WHOLE["HEAD"])[0] is "HEAD"  # noqa: F632 (interned, as the parser path's methods are)


# -- differential: llhttp reads every accepted head the same way ------------------------------------


class LlhttpHead:
    """What llhttp makes of ``data`` fed in one piece: the callbacks and the parser's verdict."""

    def __init__(self, data: bytes):
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.completed = 0
        self.heads = 0
        self.error = None
        p = self.parser = httptools.HttpRequestParser(self)
        try:
            p.feed_data(data)
        except httptools.HttpParserError as e:
            self.error = e

    def on_url(self, url):
        self.url += url

    def on_header(self, name, value):
        self.headers.append((name, value))

    def on_headers_complete(self):
        self.heads += 1
        p = self.parser
        self.method = p.get_method().decode()
        self.version = p.get_http_version()
        self.keep_alive = p.should_keep_alive()
        self.upgrade = p.should_upgrade()

    def on_body(self, body):
        raise AssertionError(f"a body: {body!r}")

    def on_message_complete(self):
        self.completed += 1


# The bytes mutations insert or put in place: those that end, split or bend a head.
ODD = [b" ", b"\t", b"\r", b"\n", b"\r\n", b":", b"\x00", b"\x01", b"\x7f", b"\x80", b"\xff", b'"', b"#", b"%",
       b"\\", b"{", b"/", b"?", b"@", b"a", b"A", b"0", b",", b";", b"=", b"-", b"_"]
FIELDS = [b"X-Request-Id: r1", b"x-real-ip: 1.2.3.4", b"Forwarded: for=x", b"Accept: */*", b"Host: a", b"Host: b.example:8080", b"Content-Length: 0", b"Content-Length: 5", b"Transfer-Encoding: chunked",
          b"Connection: keep-alive", b"Connection: close", b"Connection: Upgrade", b"Upgrade: websocket",
          b"Expect: 100-continue", b"User-Agent: x", b"X-A: b", b"Proxy-Connection: keep-alive", b"TE: trailers",
          b"grpc-timeout: 1S", b"Content-Type: text/plain", b"KEEP-ALIVE: 1", b"host:a", b"X-A:\tb"]


def mutate(rng: random.Random) -> bytes:
    base = rng.choice(list(WHOLE.values()) + [WRK] * 4)
    lines = base.split(b"\r\n")[:-2]
    for _ in range(rng.randrange(3)):
        lines.insert(rng.randrange(1, len(lines) + 1), rng.choice(FIELDS))
    data = bytearray(b"\r\n".join(lines) + b"\r\n\r\n")
    for _ in range(rng.randrange(4)):
        at = rng.randrange(len(data) + 1)
        odd = rng.choice(ODD)
        kind = rng.randrange(3)
        if kind == 0:
            data[at:at] = odd
        elif kind == 1:
            data[at:at + len(odd)] = odd
        else:
            del data[at:at + rng.randrange(1, 4)]
    return bytes(data)


def test_every_head_read_whole_reads_the_same_through_llhttp():
    rng = random.Random(20261204)
    accepted = with_lines = 0
    for _ in range(30000):
        data = mutate(rng)
        got = read(data)
        if got is None:
            continue
        accepted += 1
        method, url, headers, host, user_agent, connection, size, lines = got
        ref = LlhttpHead(data)
        assert ref.error is None, (data, ref.error)
        assert (ref.heads, ref.completed) == (1, 1), data
        assert (ref.method, ref.url, ref.headers) == (method, url, headers), data
        assert (ref.version, ref.keep_alive, ref.upgrade) == ("1.1", True, False), data
        lower = {n.lower(): v for n, v in headers}
        assert host == lower.get(b"host") and user_agent == lower.get(b"user-agent"), data
        assert connection == lower.get(b"connection"), data
        assert not {b"content-length", b"transfer-encoding", b"expect", b"proxy-connection"} & lower.keys(), data
        assert len(url) <= MAX_URI and size <= MAX_HEAD and len(headers) <= MAX_HEADERS, data
        if lines is not None:
            with_lines += 1
            assert lines == copied_one_by_one(headers), data
            assert RID not in lower
    assert accepted > 3000 and with_lines > 1000  # the mutations leave many heads plain: the comparison had work to do


# -- the proxy end to end: one read, or llhttp --------------------------------------------------------


class NoParser:
    """Stands in for llhttp where a read must not reach it."""

    def feed_data(self, data):
        raise AssertionError("the parser was fed a request head read whole")


@pytest.fixture
async def gw():
    async with Gateway(None, limits=LIMITS) as g:
        b = g.backend("b1")
        routes = [
            route("ns/public", path="/public", backends=("ns/svc:80",)),
            route("ns/admin", path="/admin", backends=("ns/svc:80",), methods=frozenset({"GET"})),
        ]
        g.server.swap(table(routes, {"ns/svc:80": (b.endpoint,)}))
        yield b, g


# Request ids (24 hex digits, wire.next_request_id) differ per request: masked.
_IDS = re.compile(rb"\b[0-9a-f]{24}\b")


def _same_ids(data: bytes) -> bytes:
    return _IDS.sub(b"X" * 24, data)


async def exchange(g, b, data: bytes, whole: bool) -> tuple:
    """What the client and the backend got for ``data``: in one read (``whole``), or split after
    its first byte, so that llhttp reads it (the first byte alone is no head: llhttp starts)."""
    seen = len(b.seen)
    c = g.client()
    if whole:
        c.send(data)
    else:
        c.send(data[:1])
        c.send(data[1:])
    try:
        await c.response(head=data.startswith(b"HEAD"))
    except ConnectionError:
        pass  # closed without an answer
    # An interim 100 comes first: settled when nothing is in progress any more.
    await eventually(lambda: not c.protocol.pipeline or c.transport.closing, 5.0, "the exchange never settled")
    forwarded = [(r.method, r.target, r.raw_headers, r.body) for r in b.seen[seen:]]
    return _same_ids(c.written), c.transport.closing, _same_ids(repr(forwarded).encode())


@pytest.mark.parametrize("name", sorted(WHOLE) + sorted(OTHER))
async def test_the_proxy_answers_alike_either_way(gw, name):
    b, g = gw
    data = WHOLE.get(name) or OTHER[name]
    assert await exchange(g, b, data, whole=True) == await exchange(g, b, data, whole=False)


@pytest.mark.parametrize("name", sorted(WHOLE))
async def test_a_plain_head_never_reaches_the_parser(gw, name):
    b, g = gw
    c = g.client()
    c.protocol.parser = NoParser()
    for _ in range(3):  # and again on the kept-alive connection (unless the answer closed it: a 400)
        c.send(WHOLE[name])
        r = await c.response(head=name == "HEAD")
        if r.status == 400:
            assert await c.closed()
            break
    else:
        assert not c.transport.closing


async def test_a_kept_alive_connection_mixes_both_readers(gw):
    """Plain heads, then a body (llhttp), then plain again: llhttp picks up where it left off."""
    b, g = gw
    c = g.client()
    for data in (WRK.replace(b"/plain", b"/public"), OTHER["a body"], WHOLE["curl"], OTHER["a body"],
                 WHOLE["HEAD"]):
        c.send(data)
        r = await c.response(head=data.startswith(b"HEAD"))
        assert r.status == 200
    assert [r.method for r in b.seen] == ["GET", "POST", "GET", "POST", "HEAD"]
    assert [r.body for r in b.seen] == [b"", b"ok", b"", b"ok", b""]
    assert not c.transport.closing


async def test_an_idle_kept_alive_connection_is_not_held_to_the_head_timeout(gw):
    """The first request read whole ends the head deadline set at accept, as llhttp's path does."""
    b, g = gw
    c = g.client()
    c.send(WHOLE["HEAD"])
    await c.response(head=True)
    g.advance(LIMITS.header_timeout + 1)  # well within the idle timeout
    assert not c.transport.closing


class CountingParser:
    """llhttp, with what it was fed recorded."""

    def __init__(self, parser):
        self.parser = parser
        self.fed = []

    def feed_data(self, data):
        self.fed.append(data)
        return self.parser.feed_data(data)

    def __getattr__(self, name):
        return getattr(self.parser, name)


async def test_a_request_pipelined_behind_one_read_whole_goes_to_llhttp_and_is_answered_in_order():
    """The second request arrives while the first (read whole) waits on the backend: llhttp, which
    never saw the first, reads it from the start, and the answers keep their order."""
    async with Gateway(None, limits=LIMITS) as g:
        b = g.backend("held", answer=None)
        g.server.swap(table([route("ns/public", path="/public", backends=("ns/svc:80",))],
                            {"ns/svc:80": (b.endpoint,)}))
        c = g.client()
        c.protocol.parser = parser = CountingParser(c.protocol.parser)
        c.send(b"GET /public/1 HTTP/1.1\r\nHost: a\r\n\r\n")
        await b.request(1)
        assert parser.fed == []  # read whole
        c.send(b"GET /public/2 HTTP/1.1\r\nHost: a\r\nX-A: b\r\n\r\n")
        assert c.reading_paused  # pipelined: read, parsed, and held behind the first
        assert parser.fed == [b"GET /public/2 HTTP/1.1\r\nHost: a\r\nX-A: b\r\n\r\n"]
        peer = await b.connection(0)
        peer.reply(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\none")
        first = await c.response()
        await b.request(2)
        (await b.connection(-1)).reply(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\ntwo")
        second = await c.response()
        assert (first.body, second.body) == (b"one", b"two")
        assert [r.target for r in b.seen] == ["/public/1", "/public/2"]
        assert not c.transport.closing


async def test_draining_closes_each_kept_alive_connection_after_its_next_response(gw):
    """Server.drain marks the connections it has, and a connection made meanwhile reads the mark
    at connect: a response read either way then says Connection: close, and the connection ends."""
    b, g = gw
    before = g.client()
    before.send(WRK.replace(b"/plain", b"/public"))
    assert "connection" not in (await before.response()).headers
    drain = asyncio.ensure_future(g.server.drain(drain_seconds=1.0, timeout=1.0))
    await asyncio.sleep(0)  # drain marks the connections, then waits its drain_seconds
    after = g.client()
    for c, data in ((before, WHOLE["curl"]), (after, OTHER["a body"])):
        c.send(data)
        r = await c.response()
        assert r.status == 200 and r.headers.get("connection") == "close", data
        assert await c.closed()
    await drain
