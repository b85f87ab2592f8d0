"""HTTP/1.1 on the wire: header classes, status lines, error bodies, head building.

Pure functions and constants, no state but the request-id counter: the
exchange (gateway/exchange.py) builds request and response heads with them and
the HTTP/1 protocol (gateway/http1.py) reads requests with them. Compiled by
Cython (wire.pxd): the exchange's calls into this module are C calls.
"""

from __future__ import annotations

import logging
import os
import random

from gateway.syntax import unsafe_field_value

# RFC 9110 7.6.1: connection-specific fields, never forwarded.
HOP_BY_HOP = frozenset(
    (b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer", b"transfer-encoding", b"upgrade",
     b"proxy-authorization", b"proxy-authenticate")
)
# Set by us; when the peer is not a trusted proxy, its own values are dropped.
FORWARDING = frozenset((b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"x-forwarded-port",
                        b"forwarded", b"x-real-ip"))
# RFC 9110 9.2.2: methods a retry may send again.
IDEMPOTENT = frozenset(("GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"))
# Request headers never copied as they are: hop-by-hop ones, those the gateway
# sets itself, and the framing it re-creates ...
REQUEST_NOT_COPIED = HOP_BY_HOP | FORWARDING | {b"host", b"content-length", b"expect"}
# ... and, on a traced request, the client's traceparent: ours names the client span.
REQUEST_NOT_COPIED_TRACED = REQUEST_NOT_COPIED | {b"traceparent"}
# Response headers never copied as they are.
RESPONSE_NOT_COPIED = HOP_BY_HOP | {b"connection"}
# By name length: whether a response header can be one of those or Content-Length.
# Most are not (Date, Server, Content-Type...): copied without lower-casing the name.
RESPONSE_LOOKED = tuple(n in {len(h) for h in RESPONSE_NOT_COPIED | {b"content-length"}} for n in range(32))
# Connection options that name no header field (RFC 9110 7.6.1).
CONNECTION_OPTIONS = frozenset((b"keep-alive", b"close", b"upgrade"))

REASONS = {
    200: "OK", 204: "No Content", 301: "Moved Permanently", 302: "Found", 303: "See Other",
    307: "Temporary Redirect", 308: "Permanent Redirect", 400: "Bad Request", 401: "Unauthorized",
    403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed", 408: "Request Timeout", 417: "Expectation Failed",
    413: "Content Too Large", 414: "URI Too Long", 421: "Misdirected Request", 429: "Too Many Requests",
    431: "Request Header Fields Too Large", 500: "Internal Server Error", 501: "Not Implemented",
    502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout", 505: "HTTP Version Not Supported",
}


def json_body(status: int, message: str) -> bytes:
    # Messages are ours, never echoes of request input, so no escaping is needed
    # beyond quotes; keep it that way.
    reason = REASONS.get(status, "Error")
    return ('{"status":%d,"error":"%s","message":"%s"}\n' % (status, reason, message.replace('"', "'"))).encode()


def status_line(status: int, reason: bytes | None = None) -> bytes:
    if reason is None:
        reason = REASONS.get(status, "Status").encode()
    return b"HTTP/1.1 %d %s\r\n" % (status, reason)


# Status lines of upstream responses by status, with the reason they were made for.
_UPSTREAM_LINES: dict[int, tuple[bytes, bytes]] = {}


def upstream_status_line(status: int, reason: bytes) -> bytes:
    """The status line of a forwarded response, cached: no tuple to build and hash per response."""
    known = _UPSTREAM_LINES.get(status)
    if known is not None and known[0] == reason:
        return known[1]
    line = status_line(status, reason or None)
    if len(_UPSTREAM_LINES) < 512:
        _UPSTREAM_LINES[status] = (reason, line)
    return line


def answer_bytes(status: int, body: bytes, extra, extra_resp, close: bool, head: bool) -> bytes:
    """An answer the gateway makes itself (Exchange.respond), JSON when it has a body."""
    parts = [status_line(status)]
    if body:
        parts.append(b"content-type: application/json\r\n")
    if extra:
        for name, value in extra:
            add_field(parts, name, value)
    if extra_resp:
        for name, value in extra_resp:
            add_field(parts, name, value)
    parts.append(b"content-length: %d\r\n" % len(body))
    if close:
        parts.append(b"connection: close\r\n")
    parts.append(b"\r\n")
    if not head:
        parts.append(body)
    return b"".join(parts)


def add_field(parts: list, name: bytes, value: bytes) -> None:
    """One header line into a head being built. Compiled, four appends are a few
    stores each; ``parts += (name, b": ", value, b"\r\n")`` built a tuple and
    went through the generic in-place add for every header."""
    parts.append(name)
    parts.append(b": ")
    parts.append(value)
    parts.append(b"\r\n")


def copy_request_fields(parts: list, headers, strip, special, drop, rid_name: bytes, trusted: bool):
    """The client's fields into an upstream head being built, minus what this hop
    replaces: ``strip`` (the route's credential fields), ``special`` (hop-by-hop and
    the fields the gateway writes itself) and ``drop`` (named by the client's
    Connection). Returns (forwarded, rid): the forwarding fields a ``trusted`` peer
    sent, joined by name for ``forwarding_fields`` to extend (None when none or
    untrusted: an untrusted peer's are never believed), and the client's own
    request id (field ``rid_name``), None when it sent none."""
    forwarded = None
    rid = None
    for name, value in headers:
        lname = name.lower()
        if strip is not None and lname in strip:
            continue
        if lname in special:
            if trusted and lname in FORWARDING:
                if forwarded is None:
                    forwarded = {}
                forwarded[lname] = forwarded[lname] + b", " + value if lname in forwarded else value
            continue
        if drop and lname in drop:
            continue
        if lname == rid_name:
            rid = value
        add_field(parts, name, value)
    return forwarded, rid


def has_header(headers, lname: bytes) -> bool:
    for name, _ in headers:
        if name.lower() == lname:
            return True
    return False


def header_value(headers, lname: bytes):
    """The first value of a header by its lower-case name, or None."""
    for name, value in headers:
        if len(name) == len(lname) and name.lower() == lname:
            return value
    return None


def refused_head(route, what: str, value: bytes) -> None:
    """Log a head the gateway refused to write (%r: the bytes are never logged raw either)."""
    logging.getLogger("crdgate.proxy").error(
        "route %s: refused to write a %s holding a space, CR, LF or control byte: %r",
        route.name if route is not None else "-", what, value[:200],
    )


def unsafe_fields(fields) -> bool:
    """Whether a value of these (name, value) pairs holds CR, LF or NUL (it would split the head)."""
    for _, value in fields:
        if unsafe_field_value(value):
            return True
    return False


def connection_tokens(value: bytes, into: set | None) -> set:
    """The options of a Connection header, lower-cased, added to ``into`` (or a new set)."""
    out = into if into is not None else set()
    for tok in value.split(b","):
        tok = tok.strip().lower()
        if tok:
            out.add(tok)
    return out


def forwarding_fields(peer: bytes, forwarded_for: bytes, scheme: bytes, host: bytes, incoming: dict | None) -> bytes:
    """X-Forwarded-For/-Proto/-Host and Forwarded (RFC 7239) for this hop.

    ``peer`` is the client's address, ``forwarded_for`` the same as a Forwarded
    node (IPv6 quoted and bracketed). ``incoming``: the values a trusted proxy
    sent (lower-case name -> value), extended rather than replaced; None from
    an untrusted peer, whose values were dropped.
    """
    this_hop = b'for=%s;host="%s";proto=%s' % (forwarded_for, host.replace(b'"', b""), scheme)
    if incoming is None:
        return b"x-forwarded-for: %s\r\nx-forwarded-proto: %s\r\nx-forwarded-host: %s\r\nforwarded: %s\r\n" % (
            peer, scheme, host, this_hop)
    xff = incoming.get(b"x-forwarded-for")
    fwd = incoming.get(b"forwarded")
    out = b"x-forwarded-for: %s\r\nx-forwarded-proto: %s\r\nx-forwarded-host: %s\r\nforwarded: %s\r\n" % (
        peer if xff is None else xff + b", " + peer,
        incoming.get(b"x-forwarded-proto") or scheme,
        incoming.get(b"x-forwarded-host") or host,
        this_hop if fwd is None else fwd + b", " + this_hop,
    )
    port = incoming.get(b"x-forwarded-port")
    if port is not None:
        out += b"x-forwarded-port: %s\r\n" % port
    return out


# Fields a sender must not put in trailers (RFC 9110 6.5.1: framing, routing,
# authentication, and what the response head already settled).
NOT_IN_TRAILERS = HOP_BY_HOP | frozenset((b"connection", b"content-length", b"content-type", b"content-encoding",
                                          b"content-range", b"host", b"trailer", b"authorization", b"set-cookie",
                                          b"cache-control", b"expires", b"date", b"location", b"retry-after", b"vary",
                                          b"www-authenticate"))


def last_chunk(fields, te: str | None) -> bytes | None:
    """The last chunk of a chunked response carrying ``fields`` as trailers, or None
    (the trailers are dropped) unless the client said ``TE: trailers`` (RFC 9110 10.1.4).

    HTTP/2 backends (gRPC's grpc-status, grpc-message) send trailers; an HTTP/1.1
    client gets the ones it may as chunked trailer fields (RFC 9112 7.1.2).
    """
    if te is None or b"trailers" not in te.lower().encode("latin-1"):
        return None
    return trailer_chunk(fields)


def trailer_chunk(fields, strip=()) -> bytes:
    """The last chunk of a chunked message with ``fields`` as its trailer fields (RFC 9112
    7.1.2), less those no sender may put there (NOT_IN_TRAILERS), those named in ``strip``
    (lower-case) and any that would split the message."""
    parts = [b"0\r\n"]
    for name, value in fields:
        lname = name.lower()
        if lname not in NOT_IN_TRAILERS and lname not in strip and not unsafe_field_value(value) \
                and not unsafe_field_value(name):
            add_field(parts, name, value)
    parts.append(b"\r\n")
    return b"".join(parts)


def switching_head(reason: bytes, headers) -> bytes:
    """The head of a 101 Switching Protocols response, its fields as the upstream sent them."""
    parts = [status_line(101, reason or None)]
    for name, value in headers:
        add_field(parts, name, value)
    parts.append(b"\r\n")
    return b"".join(parts)


def websocket_upgrade(headers) -> bool:
    """Whether the Upgrade header offers WebSocket, the one protocol this proxy tunnels."""
    for name, value in headers:
        if len(name) == 7 and name.lower() == b"upgrade":
            for token in value.split(b","):
                if token.strip().lower() == b"websocket":
                    return True
    return False


# -- request ids -------------------------------------------------------------------
#
# A random per-process prefix and 12 hex digits of a counter. Unique (each worker
# process imports this afresh), and no system call per request (os.urandom is
# one). The last 3 digits come from a table and the rest are formatted once per
# 4,096 ids (b"%012x" on every request cost as much as building the rest of the
# upstream head). Compiled, the counter and the high part are C variables
# (wire.pxd): rebinding a Python module global per request would void the
# compiled module's cached lookups of every global.

RID_PREFIX = os.urandom(6).hex().encode()
_RID_LOW = tuple(b"%03x" % i for i in range(4096))
_rid_count = 0
_rid_high = RID_PREFIX + b"%09x" % 0


def next_request_id() -> bytes:
    global _rid_count, _rid_high
    _rid_count += 1
    n = _rid_count
    low = n & 0xFFF
    if low == 0:
        _rid_high = RID_PREFIX + b"%09x" % (n >> 12)
    return _rid_high + _RID_LOW[low]


def new_traceparent() -> bytes:
    """A W3C Trace Context ``traceparent`` field starting a trace (sampled), for a request
    that arrives without one: the backend's spans then share a trace."""
    return b"traceparent: 00-%032x-%016x-01\r\n" % (random.getrandbits(128) or 1, random.getrandbits(64) or 1)
