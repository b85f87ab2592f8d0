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


def copy_request_fields(parts: list, headers, strip, special, drop, rid_name: bytes, trusted: bool,
                        lines: bytes | None = None):
    """The client's fields into an upstream head being built, minus what this hop
    replaces: ``strip`` (the route's credential fields), ``special`` (hop-by-hop and
    the fields the gateway writes itself) and ``drop`` (named by the client's
    Connection). Returns (forwarded, rid): the forwarding fields a ``trusted`` peer
    sent, joined by name for ``forwarding_fields`` to extend (None when none or
    untrusted: an untrusted peer's are never believed), and the client's own
    request id (field ``rid_name``), None when it sent none. ``lines``: the same fields'
    lines as they came less REQUEST_NOT_COPIED's (wire.whole_request), written as one
    piece when nothing else would be left out."""
    if lines is not None and strip is None and not drop and not trusted and special is REQUEST_NOT_COPIED:
        if lines:
            parts.append(lines)
        return None, None
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


# -- a whole, plain upstream response in one read ---------------------------------
#
# The classes of a response head's bytes for whole_response: 1 a token character
# (a field name, RFC 9110 5.6.2), 2 any other character of a field value or reason
# phrase (SP, HTAB, the other VCHARs, obs-text), 0 the rest (CTLs, DEL): those end
# a value and are left to llhttp.
_TCHARS = b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_FIELD_BYTE = bytes(1 if c in _TCHARS else 2 if c in (9, 32) or 0x21 <= c <= 0x7E or c >= 0x80 else 0
                    for c in range(256))


def whole_response(data: bytes, max_head: int, keep_fields: bool = True):
    """``data`` as one complete HTTP/1.1 response of the plainest kind, or None.

    The plainest kind is what a backend answers nearly always: a final status
    (200-599 but 204 and 304), a reason phrase, field lines ``name: value`` without
    folding or whitespace around the value, one Content-Length, no
    Transfer-Encoding, Connection absent or ``keep-alive`` (so kept alive), and
    exactly that many body bytes to the end of ``data``. Then it returns
    (status, reason, headers, body, fields): the first four as llhttp's callbacks
    would have reported them, without the ten or so calls from the parser into
    Python (a fifth of a small request's instructions), and ``fields`` the field
    lines as they came less the hop-by-hop ones (RESPONSE_NOT_COPIED), which
    http1_response_head forwards as one piece when nothing changed them. Anything else, or a head whose fields (counted as
    UpstreamConnection.on_header counts them) exceed ``max_head`` bytes, is None and
    goes to llhttp, which decides; so nothing is accepted here that llhttp would
    refuse or read differently. Without ``keep_fields`` (the exchange forwards
    ``fields`` and reads no field of the response) ``headers`` is None, and only the
    fields looked at here become bytes objects.

    Compiled, ``raw`` and ``table`` are C pointers into the bytes (wire.pxd): an
    index is a byte and a slice one bytes object, as in Python.
    """
    n = len(data)
    if n < 19 or not data.startswith(b"HTTP/1.1 "):
        return None
    raw = data
    table = _FIELD_BYTE
    d0 = raw[9] - 48
    d1 = raw[10] - 48
    d2 = raw[11] - 48
    if not (1 < d0 <= 5 and 0 <= d1 <= 9 and 0 <= d2 <= 9) or raw[12] != 32:
        return None
    status = d0 * 100 + d1 * 10 + d2
    if status == 204 or status == 304:
        return None
    pos = 13
    while pos < n and table[raw[pos]] != 0:
        pos += 1
    if pos == 13 or pos + 1 >= n or raw[pos] != 13 or raw[pos + 1] != 10:
        return None
    reason = raw[13:pos]
    pos += 2
    headers = [] if keep_fields else None
    size = 0
    length = -1
    runs = None  # field lines before a hop-by-hop one, when there was one
    copy_from = pos  # the start of the field lines copied as they came
    while True:
        if pos + 1 >= n:
            return None
        if raw[pos] == 13:
            if raw[pos + 1] != 10:
                return None
            copy_to = pos
            pos += 2
            break
        start = pos
        while pos < n and table[raw[pos]] == 1:
            pos += 1
        if pos == start or pos >= n or raw[pos] != 58:  # ":" (a line starting with SP or HTAB: obs-fold)
            return None
        name_end = pos
        pos += 1
        while pos < n and (raw[pos] == 32 or raw[pos] == 9):
            pos += 1
        value_start = pos
        while pos < n and table[raw[pos]] != 0:
            pos += 1
        if pos == value_start or pos + 1 >= n or raw[pos] != 13 or raw[pos + 1] != 10:
            return None
        last = raw[pos - 1]
        if last == 32 or last == 9:
            return None  # trailing whitespace: how it is trimmed is llhttp's to say
        value_end = pos
        pos += 2
        size += name_end - start + pos - value_start + 2  # len(name) + len(value) + 4
        if size > max_head:
            return None
        name_len = name_end - start
        hop = False
        # Only names of the lengths looked at here are made bytes objects, unless the list is kept.
        looked = (name_len == 14 or name_len == 10 or name_len == 17 or name_len == 16 or name_len == 2
                  or name_len == 7 or name_len == 18 or name_len == 19)
        if looked or keep_fields:
            name = raw[start:name_end]
        if looked:
            if name_len == 14 and (name == b"Content-Length" or name.lower() == b"content-length"):
                if length >= 0 or value_end - value_start > 15:
                    return None
                length = 0
                i = value_start
                while i < value_end:
                    digit = raw[i] - 48
                    if digit < 0 or digit > 9:
                        return None
                    length = length * 10 + digit
                    i += 1
            elif name_len == 10 and (name == b"Connection" or name.lower() == b"connection"):
                value = raw[value_start:value_end]
                if value != b"keep-alive" and value.lower() != b"keep-alive":
                    return None
                hop = True
            elif (name_len == 17 and name.lower() == b"transfer-encoding") or (
                    name_len == 16 and name.lower() == b"proxy-connection"):
                return None
            elif (name_len == 10 or name_len == 2 or name_len == 7 or name_len == 18 or name_len == 19) and (
                    name.lower() in RESPONSE_NOT_COPIED):
                hop = True  # Keep-Alive, TE, Trailer, Upgrade, Proxy-Authenticate, Proxy-Authorization
            if hop:
                if start > copy_from:
                    if runs is None:
                        runs = []
                    runs.append(raw[copy_from:start])
                copy_from = pos
        if keep_fields:
            headers.append((name, raw[value_start:value_end]))
    if length < 0 or n - pos != length:
        return None
    if runs is None:
        fields = raw[copy_from:copy_to]
    else:
        if copy_to > copy_from:
            runs.append(raw[copy_from:copy_to])
        fields = runs[0] if len(runs) == 1 else b"".join(runs)  # nginx's Connection comes last: one run
    return status, reason, headers, raw[pos:n] if length else b"", fields


# -- a whole, plain request head in one read --------------------------------------
#
# The bytes a request target may hold for whole_request: RFC 3986's unreserved and
# reserved characters and "%", the fragment's "#" excepted. Anything else (spaces,
# quotes, obs-text, backslashes) is left to llhttp, which decides.
_TARGET_BYTE = bytes(1 if (0x30 <= c <= 0x39 or 0x41 <= c <= 0x5A or 0x61 <= c <= 0x7A
                           or c in b"-._~:/?[]@!$&'()*+,;=%") else 0 for c in range(256))
# The methods read there, interned as the parser's path interns them; CONNECT (its
# authority-form target, the tunnel) and anything unknown go to llhttp.
_PLAIN_METHODS = {m.encode(): m for m in ("HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE")}
_VERSION_CRLF = b" HTTP/1.1\r\n"


def whole_request(data: bytes, max_uri: int, max_head: int, max_headers: int, rid_name: bytes):
    """``data`` as exactly one complete request head of the plainest kind, or None.

    The plainest kind is what clients send nearly always on a kept-alive
    connection: ``METHOD /target HTTP/1.1`` (origin form, a known method other than
    CONNECT), field lines ``name: value`` without folding or whitespace after the
    value, no Content-Length or Transfer-Encoding (so no body), at most one Host,
    Connection absent or ``keep-alive``, no Expect, and nothing after the blank
    line. Then it returns (method, target, headers, host, user_agent, connection,
    size, copied): what llhttp's callbacks would have given the protocol, without
    the half-dozen calls from the parser into Python; ``size`` the head's fields
    counted as ClientProtocol.on_header counts them; and ``copied`` the field lines
    as they came less those no hop copies (REQUEST_NOT_COPIED), which
    copy_request_fields takes as one piece where it would copy the others
    unchanged, or None when a line is not as it would write it (OWS other than one
    space) or the client sent its own request id (field ``rid_name``). Anything else, or a target or
    fields above the limits (``max_uri`` bytes, ``max_head`` bytes, ``max_headers``
    lines), is None and goes to llhttp, which answers it (414, 431, 400, or reads it):
    nothing is accepted here that llhttp would refuse or read differently, and no
    request is refused here.

    Compiled, ``raw`` and the tables are C pointers into the bytes (wire.pxd). Its
    field-line grammar is whole_response's, written out again rather than shared: a
    helper would return three positions per line on the hot path.
    """
    n = len(data)
    if n < 18:  # "GET / HTTP/1.1\r\n\r\n"
        return None
    raw = data
    if raw[0] == 71 and raw[1] == 69 and raw[2] == 84 and raw[3] == 32:  # "GET "
        method = "GET"
        pos = 4
    else:
        pos = data.find(b" ", 0, 8)
        if pos < 0:
            return None
        method = _PLAIN_METHODS.get(data[:pos])
        if method is None:
            return None
        pos += 1
    if raw[pos] != 47:  # "/": origin form only
        return None
    target_table = _TARGET_BYTE
    start = pos
    while pos < n and target_table[raw[pos]] != 0:
        pos += 1
    if pos - start > max_uri or not data.startswith(_VERSION_CRLF, pos):
        return None
    url = raw[start:pos]
    pos += 11
    table = _FIELD_BYTE
    looked = _REQUEST_LOOKED
    rid_len = len(rid_name)
    headers = []
    size = 0
    host = None
    user_agent = None
    connection = None
    runs = None  # field lines before one not copied, when there was one
    copy_from = pos  # the start of the field lines copied as they came
    as_written = True  # every copied line is as add_field writes it, and no request id came
    while True:
        if pos + 1 >= n:
            return None
        if raw[pos] == 13:
            if raw[pos + 1] != 10 or pos + 2 != n:
                return None  # a bare CR, or bytes after the head (a body, a pipelined request)
            copy_to = pos
            break
        start = pos
        while pos < n and table[raw[pos]] == 1:
            pos += 1
        if pos == start or pos >= n or raw[pos] != 58:  # ":" (a line starting with SP or HTAB: obs-fold)
            return None
        name_end = pos
        pos += 1
        while pos < n and (raw[pos] == 32 or raw[pos] == 9):
            pos += 1
        value_start = pos
        while pos < n and table[raw[pos]] != 0:
            pos += 1
        if pos == value_start or pos + 1 >= n or raw[pos] != 13 or raw[pos + 1] != 10:
            return None
        last = raw[pos - 1]
        if last == 32 or last == 9:
            return None  # trailing whitespace: how it is trimmed is llhttp's to say
        name = raw[start:name_end]
        value = raw[value_start:pos]
        size += name_end - start + pos - value_start + 4
        pos += 2
        if size > max_head or len(headers) >= max_headers:
            return None
        name_len = name_end - start
        copied = True
        # The fields the protocol reads before routing and those no hop copies, by length first
        # (see ClientProtocol.on_header and copy_request_fields).
        if name_len == 4 and (name == b"Host" or name.lower() == b"host"):
            if host is not None:
                return None  # two: refused on llhttp's path
            host = value
            copied = False  # the gateway writes it
        elif (name_len < 32 and looked[name_len]) or name_len == rid_len:
            lname = name.lower()
            if lname in _BODY_OR_PARSER_FIELDS:
                return None
            if lname == b"user-agent":
                user_agent = value
            elif lname == b"connection":
                if connection is not None or (value != b"keep-alive" and value.lower() != b"keep-alive"):
                    return None
                connection = value
            if lname == rid_name:
                as_written = False
            elif lname in REQUEST_NOT_COPIED:
                copied = False
        if not copied:  # the lines before it are one run of those copied as they came
            if start > copy_from:
                if runs is None:
                    runs = []
                runs.append(raw[copy_from:start])
            copy_from = pos
        elif value_start != name_end + 2 or raw[name_end + 1] != 32:
            as_written = False  # add_field writes "name: value"
        headers.append((name, value))
    if not as_written:
        lines = None
    elif runs is None:
        lines = raw[copy_from:copy_to]
    else:
        if copy_to > copy_from:
            runs.append(raw[copy_from:copy_to])
        lines = runs[0] if len(runs) == 1 else b"".join(runs)
    return method, url, headers, host, user_agent, connection, size, lines


# Request fields whole_request leaves to llhttp: framing, Proxy-Connection (read as
# Connection), Expect, and gRPC's deadline.
_BODY_OR_PARSER_FIELDS = frozenset((b"content-length", b"transfer-encoding", b"proxy-connection", b"expect",
                                    b"grpc-timeout"))
# The lengths of the names whole_request lower-cases: those above, Host, User-Agent, Connection,
# and REQUEST_NOT_COPIED's.
_REQUEST_LOOKED = bytes(1 if n in {len(f) for f in _BODY_OR_PARSER_FIELDS | REQUEST_NOT_COPIED | {b"user-agent"}} else 0
                        for n in range(32))


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
