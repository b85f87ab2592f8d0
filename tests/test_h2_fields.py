"""gateway/h2fields.py: the request field rules of RFC 9113, checked in one pass.

Each rule is checked against h2's own inbound check (``validate_headers``,
which the client side turns off in favour of ours): both must accept or both
refuse every header block below. The connection-level answer (GOAWAY
PROTOCOL_ERROR, nothing forwarded) is in tests/test_h2_protocol.py.
"""

from __future__ import annotations

import pytest
from h2.config import H2Configuration
from h2.errors import ErrorCodes
from h2.exceptions import ProtocolError
from h2.utilities import HeaderValidationFlags, validate_headers

from gateway.errors import MalformedFields
from gateway.h2fields import check_repeated, check_request, check_response, check_trailers
from h2harness import H2Client
from protoharness import Gateway
from proxyharness import route, table

BASE = [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", b"gw.test"), (b":path", b"/x")]
REQUEST_FLAGS = HeaderValidationFlags(is_client=False, is_trailer=False, is_response_header=False, is_push_promise=False)
RESPONSE_FLAGS = HeaderValidationFlags(is_client=True, is_trailer=False, is_response_header=True, is_push_promise=False)
TRAILER_FLAGS = HeaderValidationFlags(is_client=False, is_trailer=True, is_response_header=False, is_push_promise=False)

REQUESTS = {
    "plain": BASE,
    "regular fields": BASE + [(b"user-agent", b"h2load"), (b"accept", b"*/*"), (b"x-empty", b"")],
    "te trailers": BASE + [(b"te", b"trailers")],
    "te Trailers": BASE + [(b"te", b"Trailers")],
    "te gzip": BASE + [(b"te", b"gzip")],
    "host equal": BASE + [(b"host", b"gw.test")],
    "host only": [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"), (b"host", b"gw.test")],
    "host differs": BASE + [(b"host", b"other")],
    "two hosts": [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"), (b"host", b"a"), (b"host", b"a")],
    "no authority, no host": [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/")],
    "no method": BASE[1:],
    "no scheme": [BASE[0]] + BASE[2:],
    "no path": BASE[:3],
    "empty path": BASE[:3] + [(b":path", b"")],
    "repeated pseudo": BASE + [(b":path", b"/y")],
    "pseudo after regular": BASE[:3] + [(b"accept", b"*/*"), (b":path", b"/")],
    "status in a request": BASE + [(b":status", b"200")],
    "unknown pseudo": BASE + [(b":foo", b"bar")],
    "uppercase pseudo": BASE + [(b":Path", b"/")],
    "connect": [(b":method", b"CONNECT"), (b":authority", b"gw.test:443")],
    "connect with path": [(b":method", b"CONNECT"), (b":authority", b"gw.test:443"), (b":path", b"/")],
    "extended connect": [(b":method", b"CONNECT"), (b":protocol", b"websocket"), (b":scheme", b"https"),
                         (b":path", b"/chat"), (b":authority", b"gw.test")],
    "extended connect without path": [(b":method", b"CONNECT"), (b":protocol", b"websocket"), (b":scheme", b"https"),
                                      (b":authority", b"gw.test")],
    "protocol without connect": BASE + [(b":protocol", b"websocket")],
    "uppercase name": BASE + [(b"Accept", b"*/*")],
    "space in name": BASE + [(b"x y", b"1")],
    "colon in name": BASE + [(b"x:y", b"1")],
    "del in name": BASE + [(b"x\x7f", b"1")],
    "high byte in name": BASE + [(b"x\xc3\xa9", b"1")],
    "empty name": BASE + [(b"", b"1")],
    "cr in value": BASE + [(b"x", b"a\rb")],
    "lf in value": BASE + [(b"x", b"a\nb")],
    "nul in value": BASE + [(b"x", b"a\x00b")],
    "leading space": BASE + [(b"x", b" a")],
    "trailing tab": BASE + [(b"x", b"a\t")],
    "inner space, high bytes in value": BASE + [(b"x", b"a b\xc3\xa9\x01")],
    "cr in path": BASE[:3] + [(b":path", b"/a\r\nb")],
    "connection": BASE + [(b"connection", b"close")],
    "proxy-connection": BASE + [(b"proxy-connection", b"close")],
    "keep-alive": BASE + [(b"keep-alive", b"5")],
    "transfer-encoding": BASE + [(b"transfer-encoding", b"chunked")],
    "upgrade": BASE + [(b"upgrade", b"websocket")],
}

RESPONSES = {
    "grpc": [(b":status", b"200"), (b"content-type", b"application/grpc"), (b"server", b"nginx")],
    "informational": [(b":status", b"103"), (b"link", b"</a.css>; rel=preload")],
    "status only": [(b":status", b"204")],
    "no status": [(b"content-type", b"text/plain")],
    "two statuses": [(b":status", b"200"), (b":status", b"200")],
    "status after regular": [(b"server", b"x"), (b":status", b"200")],
    "request pseudo": [(b":status", b"200"), (b":path", b"/")],
    "unknown pseudo": [(b":status", b"200"), (b":foo", b"x")],
    "uppercase": [(b":status", b"200"), (b"Server", b"x")],
    "cr in value": [(b":status", b"200"), (b"location", b"/a\r\nset-cookie: x")],
    "trailing space": [(b":status", b"200"), (b"x", b"a ")],
    "connection": [(b":status", b"200"), (b"connection", b"close")],
    "transfer-encoding": [(b":status", b"200"), (b"transfer-encoding", b"chunked")],
    "te gzip": [(b":status", b"200"), (b"te", b"gzip")],
    "empty name": [(b":status", b"200"), (b"", b"x")],
    "colon in name": [(b":status", b"200"), (b"a:b", b"x")],
}

TRAILERS = {
    "grpc": [(b"grpc-status", b"0"), (b"grpc-message", b"OK")],
    "pseudo": [(b":status", b"200")],
    "uppercase": [(b"Grpc-Status", b"0")],
    "lf in value": [(b"x", b"a\nb")],
    "connection": [(b"connection", b"close")],
    "te gzip": [(b"te", b"gzip")],
    "empty": [],
}


def _h2_accepts(fields, flags) -> bool:
    try:
        list(validate_headers(fields, flags))
    except ProtocolError:
        return False
    return True


def _ours_accepts(check, fields) -> bool:
    try:
        check(fields)
    except MalformedFields:
        return False
    return True


@pytest.mark.parametrize("name", sorted(REQUESTS))
def test_a_request_head_is_refused_exactly_when_h2_refuses_it(name):
    fields = REQUESTS[name]
    # Twice: the second time the names are known good (remembered), the values still checked.
    assert _ours_accepts(check_request, fields) == _h2_accepts(fields, REQUEST_FLAGS)
    assert _ours_accepts(check_request, fields) == _h2_accepts(fields, REQUEST_FLAGS)


@pytest.mark.parametrize("name", sorted(RESPONSES))
def test_a_response_head_is_refused_exactly_when_h2_refuses_it(name):
    fields = RESPONSES[name]
    assert _ours_accepts(check_response, fields) == _h2_accepts(fields, RESPONSE_FLAGS)
    assert _ours_accepts(check_response, fields) == _h2_accepts(fields, RESPONSE_FLAGS)


@pytest.mark.parametrize("name", sorted(TRAILERS))
def test_trailers_are_refused_exactly_when_h2_refuses_them(name):
    fields = TRAILERS[name]
    assert _ours_accepts(check_trailers, fields) == _h2_accepts(fields, TRAILER_FLAGS)


def test_the_corpus_has_both_answers():
    accepted = [n for n, f in REQUESTS.items() if _h2_accepts(f, REQUEST_FLAGS)]
    assert 5 <= len(accepted) < len(REQUESTS) - 20


MALFORMED_ON_THE_WIRE = {
    "uppercase name": [("X-Upper", "1")],
    "lf in value": [("x", "a\nb")],
    "host differs": [("host", "other.test")],
    "pseudo after regular": [("accept", "*/*"), (":protocol", "x")],
}


@pytest.mark.parametrize("name", sorted(MALFORMED_ON_THE_WIRE))
async def test_a_malformed_request_closes_the_connection_and_nothing_is_forwarded(name):
    async with Gateway(None) as g:
        b = g.backend("b")
        g.server.swap(table([route(path="/")], {"ns/svc:80": (b.endpoint,)}))
        c = H2Client(g)
        c.h2.config = H2Configuration(client_side=True, header_encoding=None, validate_outbound_headers=False,
                                      normalize_outbound_headers=False)  # a client that sends them anyway
        c.request("/", headers=MALFORMED_ON_THE_WIRE[name])
        await c.wait_closed()
        assert c.goaway is not None and c.goaway.error_code == ErrorCodes.PROTOCOL_ERROR
        assert b.seen == []


async def test_malformed_request_trailers_close_the_connection():
    async with Gateway(None) as g:
        b = g.backend("b")
        g.server.swap(table([route(path="/")], {"ns/svc:80": (b.endpoint,)}))
        c = H2Client(g)
        c.h2.config = H2Configuration(client_side=True, header_encoding=None, validate_outbound_headers=False,
                                      normalize_outbound_headers=False)
        sid = c.request("/", method="POST", body=b"x", end=False)
        c.h2.send_headers(sid, [(":path", "/")], end_stream=True)
        c.send()
        await c.wait_closed()
        assert c.goaway is not None and c.goaway.error_code == ErrorCodes.PROTOCOL_ERROR


def test_a_block_equal_to_the_last_one_passed_is_not_checked_again():
    calls = []

    def check(fields):
        calls.append(fields)
        check_request(fields)

    passed: dict = {}
    good = [(b":method", b"POST"), (b":scheme", b"http"), (b":path", b"/pkg.Svc/Call"), (b":authority", b"a.test"),
            (b"content-type", b"application/grpc"), (b"te", b"trailers")]
    check_repeated(check, good, passed)
    check_repeated(check, [tuple(f) for f in good], passed)  # equal fields, other objects
    assert len(calls) == 1
    bad = good[:-1] + [(b"te", b"gzip")]
    for _ in range(2):  # a block that failed is never taken for one that passed
        with pytest.raises(MalformedFields):
            check_repeated(check, bad, passed)
    assert len(calls) == 3
    check_repeated(check, good, passed)
    assert len(calls) == 3
    # Each check remembers its own block: trailers equal to nothing passed yet are checked.
    with pytest.raises(MalformedFields):
        check_repeated(check_trailers, [(b":path", b"/")], passed)
