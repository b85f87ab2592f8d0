"""An upstream response that arrives whole in one read is taken apart without llhttp's callbacks
(gateway/wire.py ``whole_response``), and reads exactly as llhttp reads it; anything less plain
still goes through llhttp. Its field lines reach an HTTP/1.1 client as they came, less the
hop-by-hop ones, when nothing on the route changes them.

Each response is fed to two ``UpstreamConnection``s: one as the proxy runs it, one made to use
llhttp for every read. Both report the same events to the exchange (head, body, end, failure).
"""

from types import SimpleNamespace

import pytest

from protoharness import Gateway
from proxyharness import route, table

from gateway.routing import HeaderModifier, RoutePolicy
from gateway.upstream import Handler, UpstreamConnection
from gateway.wire import whole_response

MAX_HEAD = 8192

NGINX = (b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Fri, 04 Dec 2026 03:25:34 GMT\r\n"
         b"Content-Type: text/plain\r\nContent-Length: 17\r\nConnection: keep-alive\r\n\r\nbackend-0 /plain\n")

# Read here, without the parser.
WHOLE = {
    "nginx": NGINX,
    "lower-case names, no Connection": b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nx-a: b\r\n\r\nok",
    "no body": b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
    "an error status": b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\nRetry-After: 1\r\n\r\nbusy",
    "Connection in capitals": b"HTTP/1.1 200 OK\r\nCONNECTION: Keep-Alive\r\nContent-Length: 1\r\n\r\nx",
    "spaces after the colon, inside the value, a tab": b"HTTP/1.1 201 Created\r\nX-A:   a b\tc\r\nX-B:d\r\n"
                                                      b"Content-Length: 3\r\n\r\nabc",
    "obs-text in a value and the reason": b"HTTP/1.1 200 \xc3\xa9t\xc3\xa9\r\nX-N: caf\xc3\xa9\r\nContent-Length: 1\r\n\r\n!",
    "token characters in a name": b"HTTP/1.1 200 OK\r\nX-!#$%&'*+.^_`|~9: v\r\nContent-Length: 1\r\n\r\n!",
    "a body holding CRLFs": b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\n\r\n\r\nab\r\n",
    "a long content length written with zeros": b"HTTP/1.1 200 OK\r\nContent-Length: 000000000000002\r\n\r\nok",
}

# Left to llhttp, which decides (some it refuses, some it reads in several steps).
OTHER = {
    "Connection: close": b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
    "chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
    "until close": b"HTTP/1.1 200 OK\r\nX-A: b\r\n\r\nsome",
    "part of the body": b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc",
    "part of the head": b"HTTP/1.1 200 OK\r\nContent-Le",
    "two responses": b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\naHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nb",
    "folded field": b"HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\nContent-Length: 1\r\n\r\nx",
    "whitespace after a value": b"HTTP/1.1 200 OK\r\nX-A: a \r\nContent-Length: 1\r\n\r\nx",
    "whitespace before the colon": b"HTTP/1.1 200 OK\r\nX-A : a\r\nContent-Length: 1\r\n\r\nx",
    "an empty value": b"HTTP/1.1 200 OK\r\nX-A:\r\nContent-Length: 1\r\n\r\nx",
    "a control byte in a value": b"HTTP/1.1 200 OK\r\nX-A: a\x01b\r\nContent-Length: 1\r\n\r\nx",
    "a bare LF": b"HTTP/1.1 200 OK\nContent-Length: 1\n\nx",
    "204": b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n",
    "304": b"HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n",
    "interim then final": b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx",
    "HTTP/1.0": b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx",
    "two Content-Lengths": b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx",
    "a sign in Content-Length": b"HTTP/1.1 200 OK\r\nContent-Length: +1\r\n\r\nx",
    "no reason phrase": b"HTTP/1.1 200 \r\nContent-Length: 1\r\n\r\nx",
    "a status of 600": b"HTTP/1.1 600 Odd\r\nContent-Length: 1\r\n\r\nx",
    "Proxy-Connection": b"HTTP/1.1 200 OK\r\nProxy-Connection: close\r\nContent-Length: 1\r\n\r\nx",
    "a head above the limit": b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * MAX_HEAD + b"\r\nContent-Length: 1\r\n\r\nx",
}


class Recorder(Handler):
    """The exchange's side of an upstream connection: what it is told, in order."""

    def __init__(self):
        self.events = []

    def upstream_head(self, conn, status, reason, headers, keep_alive):
        self.events.append(("head", status, reason, None if headers is None else list(headers), keep_alive))

    def upstream_body(self, data):
        self.events.append(("body", data))

    def flush(self):
        self.events.append(("flush",))

    def upstream_done(self, conn):
        self.events.append(("done",))

    def upstream_failed(self, conn, reason):
        self.events.append(("failed", reason))

    def upstream_closed(self, conn):
        self.events.append(("closed",))


class Transport:
    def __init__(self):
        self.closed = False

    def write(self, data):
        pass

    def is_closing(self):
        return self.closed

    def close(self):
        self.closed = True


class NoParser:
    """Stands in for llhttp where a read must not reach it."""

    def feed_data(self, data):
        raise AssertionError("the parser was fed a response read whole")


def connection() -> UpstreamConnection:
    pool = SimpleNamespace(upstreams=SimpleNamespace(max_header_bytes=MAX_HEAD), forget=lambda conn: None)
    conn = UpstreamConnection(pool)
    conn.connection_made(Transport())  # counted in the open-connections gauge: each test ends in connection_lost
    return conn


def events(data: bytes, llhttp_only: bool) -> list:
    """What the handler hears when ``data`` arrives in one read (then, if still waiting, a close)."""
    conn = connection()
    h = Recorder()
    conn.send(h, b"GET / HTTP/1.1\r\nhost: a\r\n\r\n", False)
    if llhttp_only:
        conn.at_boundary = False  # as in the middle of a message: whole_response is not tried
    conn.data_received(data)
    conn.connection_lost(None)  # a response still waiting ends here (until-close framing)
    return h.events


@pytest.mark.parametrize("name", sorted(WHOLE))
def test_a_plain_response_read_whole_never_reaches_the_parser(name):
    conn = connection()
    h = Recorder()
    conn.parser = NoParser()
    conn.send(h, b"GET / HTTP/1.1\r\nhost: a\r\n\r\n", False)
    conn.data_received(WHOLE[name])
    assert h.events[-2:] == [("done",), ("flush",)]
    assert conn.handler is None and not conn.transport.closed  # answered, and the connection is kept
    conn.connection_lost(None)


@pytest.mark.parametrize("name", sorted(WHOLE) + sorted(OTHER))
def test_every_response_reads_as_llhttp_reads_it(name):
    data = WHOLE.get(name) or OTHER[name]
    assert events(data, llhttp_only=False) == events(data, llhttp_only=True)


@pytest.mark.parametrize("name", sorted(OTHER))
def test_what_is_not_plain_is_left_to_llhttp(name):
    assert whole_response(OTHER[name], MAX_HEAD) is None


def test_the_fields_and_body_as_llhttp_gives_them():
    assert whole_response(NGINX, MAX_HEAD)[:4] == (
        200, b"OK",
        [(b"Server", b"nginx/1.22.1"), (b"Date", b"Fri, 04 Dec 2026 03:25:34 GMT"), (b"Content-Type", b"text/plain"),
         (b"Content-Length", b"17"), (b"Connection", b"keep-alive")],
        b"backend-0 /plain\n")
    assert events(NGINX, llhttp_only=False)[0] == ("head", 200, b"OK", whole_response(NGINX, MAX_HEAD)[2], True)


def test_after_a_response_llhttp_read_in_pieces_the_next_one_is_read_whole():
    conn = connection()
    h = Recorder()
    conn.send(h, b"GET / HTTP/1.1\r\nhost: a\r\n\r\n", False)
    conn.data_received(NGINX[:30])
    assert conn.at_boundary is False  # mid-message: the rest must go to llhttp
    conn.data_received(NGINX[30:])
    assert h.events[-2:] == [("done",), ("flush",)]
    h2 = Recorder()
    conn.send(h2, b"GET / HTTP/1.1\r\nhost: a\r\n\r\n", False)
    conn.parser = NoParser()
    conn.data_received(NGINX)
    assert [e[0] for e in h2.events] == ["head", "body", "done", "flush"]
    conn.connection_lost(None)


def test_a_head_request_and_an_offered_upgrade_stay_with_llhttp():
    for head_only, may_upgrade in ((True, False), (False, True)):
        conn = connection()
        h = Recorder()
        conn.send(h, b"GET / HTTP/1.1\r\nhost: a\r\n\r\n", head_only, may_upgrade)
        conn.parser = NoParser()
        with pytest.raises(AssertionError, match="parser was fed"):
            conn.data_received(NGINX)
        conn.connection_lost(None)


HOP_BY_HOP_BETWEEN = (b"HTTP/1.1 200 OK\r\nX-A: 1\r\nKeep-Alive: timeout=5\r\nX-B: 2\r\nConnection: keep-alive\r\n"
                      b"te: trailers\r\nX-C: 3\r\nUpgrade: h2c\r\nContent-Length: 2\r\n\r\nok")


def test_the_field_lines_to_copy_are_those_that_came_less_the_hop_by_hop_ones():
    assert whole_response(NGINX, MAX_HEAD)[4] == (b"Server: nginx/1.22.1\r\nDate: Fri, 04 Dec 2026 03:25:34 GMT\r\n"
                                                  b"Content-Type: text/plain\r\nContent-Length: 17\r\n")
    assert whole_response(HOP_BY_HOP_BETWEEN, MAX_HEAD)[4] == b"X-A: 1\r\nX-B: 2\r\nX-C: 3\r\nContent-Length: 2\r\n"
    assert whole_response(b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n", MAX_HEAD)[4] == (
        b"Content-Length: 0\r\n")


# What the client receives for each backend answer: the same bytes as when llhttp parsed it (the
# heads as the proxy wrote them before whole_response existed).
FORWARDED = {
    "/nginx": (NGINX, b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Fri, 04 Dec 2026 03:25:34 GMT\r\n"
                      b"Content-Type: text/plain\r\nContent-Length: 17\r\n\r\nbackend-0 /plain\n"),
    "/hop": (HOP_BY_HOP_BETWEEN, b"HTTP/1.1 200 OK\r\nX-A: 1\r\nX-B: 2\r\nX-C: 3\r\nContent-Length: 2\r\n\r\nok"),
    "/modified/hop": (HOP_BY_HOP_BETWEEN, b"HTTP/1.1 200 OK\r\nX-A: 1\r\nX-C: 3\r\nContent-Length: 2\r\n"
                                          b"X-Gw: crdgate\r\n\r\nok"),
    "/error": (b"HTTP/1.1 500 Oops\r\ncontent-length: 3\r\n\r\nbad", b"HTTP/1.1 500 Oops\r\ncontent-length: 3\r\n\r\nbad"),
}


@pytest.fixture
async def gateway():
    async with Gateway(None) as gw:
        backend = gw.backend("raw", lambda backend, req: FORWARDED[req.target][0])
        modified = RoutePolicy(response_headers=HeaderModifier(add=(("X-Gw", "crdgate"),), remove=("x-b",)))
        gw.server.swap(table([route("ns/r", path="/"), route("ns/m", path="/modified/", policy=modified)],
                             {"ns/svc:80": (backend.endpoint,)}))
        yield gw


@pytest.mark.parametrize("path", sorted(FORWARDED))
async def test_the_client_gets_the_bytes_llhttp_parsing_gave_it(gateway, path):
    c = gateway.client()
    c.send(f"GET {path} HTTP/1.1\r\nHost: a\r\n\r\n".encode())
    r = await c.response()
    assert r.status in (200, 500)
    assert c.written == FORWARDED[path][1]


async def test_an_http10_client_still_gets_its_connection_field(gateway):
    c = gateway.client()
    c.send(b"GET /nginx HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\n")
    await c.response()
    assert c.written.endswith(b"Content-Length: 17\r\nconnection: keep-alive\r\n\r\nbackend-0 /plain\n")


def test_a_response_without_a_reason_phrase_never_takes_the_last_ones():
    conn = connection()
    heads = []
    for data in (b"HTTP/1.1 200 Fine\r\nContent-Length: 0\r\n\r\n", b"HTTP/1.1 404\r\nContent-Length: 0\r\n\r\n"):
        h = Recorder()
        conn.send(h, b"GET / HTTP/1.1\r\nhost: a\r\n\r\n", False)
        conn.data_received(data)
        heads.append(h.events[0][:3])
    conn.connection_lost(None)
    assert heads == [("head", 200, b"Fine"), ("head", 404, b"")]  # the client then gets "404 Not Found"


@pytest.mark.parametrize("name", sorted(WHOLE) + sorted(OTHER))
def test_without_the_field_list_everything_else_reads_the_same(name):
    data = WHOLE.get(name) or OTHER[name]
    kept, bare = whole_response(data, MAX_HEAD), whole_response(data, MAX_HEAD, False)
    if kept is None:
        assert bare is None
    else:
        assert bare == (kept[0], kept[1], None, kept[3], kept[4])


async def test_the_field_list_is_built_only_where_the_route_reads_it(gateway):
    """A plain route's HTTP/1.1 client takes the field lines as they came: no list; a route that
    modifies response fields reads them."""
    (backend,) = gateway.backends.values()
    for path, kept in (("/nginx", False), ("/modified/hop", True), ("/nginx", False)):
        c = gateway.client()
        c.send(f"GET {path} HTTP/1.1\r\nHost: a\r\n\r\n".encode())
        await c.response()
        assert c.written == FORWARDED[path][1]
        assert backend.connections[-1].protocol.keep_fields is kept


def test_a_head_read_again_reads_as_the_first_time():
    """Without the field list, the last head read whole is kept: a response with the very same head
    and a body of its length takes its reading without a pass over the head; anything else is read
    anew. Each response reads as it does on a connection of its own."""
    other_date = NGINX.replace(b"03:25:34", b"03:25:35")
    longer = NGINX.replace(b"Content-Length: 17", b"Content-Length: 18") + b"!"
    sequence = [NGINX, NGINX, other_date, other_date, NGINX, longer, WHOLE["no body"], WHOLE["no body"], NGINX]
    # After the same head: more bytes than its body (a second response), fewer (the body's rest to
    # come), or a close-delimited answer; each ends the sequence on its connection.
    last = [NGINX + b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", NGINX[:-1], OTHER["Connection: close"]]

    def read(conn, data):
        h = Recorder()
        conn.send(h, b"GET / HTTP/1.1\r\nhost: a\r\n\r\n", False)
        conn.keep_fields = False
        conn.data_received(data)
        assert ("failed", "protocol") not in h.events
        return h.events

    for end in last:
        kept = connection()
        for data in sequence + [end]:
            fresh = connection()
            assert read(kept, data) == read(fresh, data), data
            fresh.connection_lost(None)
        kept.connection_lost(None)
    primed = connection()
    read(primed, NGINX)
    assert primed.last_head[:2] == (NGINX[:-17], 17)
    h = Recorder()
    primed.send(h, b"GET / HTTP/1.1\r\nhost: a\r\n\r\n", False)  # a handler that reads the fields
    primed.data_received(NGINX)
    assert h.events[0] == ("head", 200, b"OK", whole_response(NGINX, MAX_HEAD)[2], True)
    primed.connection_lost(None)
