"""The field rules of HTTP/2 messages (RFC 9113 8.2, 8.3), checked in one pass.

The h2 package checks every header block it receives the same way, as a chain
of seven generators, one rule each, and its check of the characters of names
and values loops over them byte by byte in Python: that was a fifth of the
CPU of an HTTP/2 request through the gateway. Both sides of our HTTP/2
(gateway/h2server.py toward clients, gateway/h2upstream.py toward backends)
turn h2's inbound check off and call these instead, which enforce the same
rules in one loop over the fields, with the character checks done by C
(``bytes`` methods) and known-good names remembered:

- names: not empty, none of 0x00-0x20, A-Z, 0x7f-0xff, no ':' but a pseudo-header
  field's first character (8.2.1);
- values: no NUL, CR or LF, no leading or trailing SP or HTAB (8.2.1);
- no connection-specific field (Connection, Proxy-Connection, Keep-Alive,
  Transfer-Encoding, Upgrade); TE only as "trailers" (8.2.2);
- pseudo-header fields: only the request ones, each at most once, all before the
  regular fields; :method always; :scheme and :path unless a plain CONNECT
  (which has neither); :protocol only with CONNECT; :path not empty (8.3);
- :authority or Host present, at most one Host, equal to :authority when both are
  there (8.3.1);
- responses (final or informational): :status, once, and no other pseudo-header
  field (8.3.2);
- trailers: no pseudo-header field (8.1).

A block equal to the last one the same check passed on the same connection is
not checked again (``check_repeated``).

A violation makes the message malformed; the connection answers it as h2
answered its own check: GOAWAY with PROTOCOL_ERROR. Content-Length (digits,
one value, the body's length against it) is still h2's: its own bookkeeping,
not part of the check it lets us turn off.
"""

from __future__ import annotations

from gateway.errors import MalformedFields

CONNECTION_SPECIFIC = frozenset((b"connection", b"proxy-connection", b"keep-alive", b"transfer-encoding",
                                 b"upgrade"))
REQUEST_PSEUDO = frozenset((b":method", b":scheme", b":authority", b":path", b":protocol"))
# Bytes a field name may hold (RFC 9113 8.2.1: not 0x00-0x20, 0x41-0x5a, 0x7f-0xff; ':' apart).
_NAME_BYTES = bytes(c for c in range(0x21, 0x7F) if not 0x41 <= c <= 0x5A and c != 0x3A)
# Names seen valid: they repeat on every request of a client, so most are checked once.
_good_names: set[bytes] = set()
_GOOD_NAMES_MAX = 4096


def _check_name(name: bytes, first: int) -> None:
    """``name[first:]`` is made of allowed bytes (``first`` 1 skips a pseudo-header field's colon)."""
    if not name:
        raise MalformedFields("empty field name")
    if name.translate(None, _NAME_BYTES) if first == 0 else name[1:].translate(None, _NAME_BYTES):
        raise MalformedFields(f"field name {name!r}: character not allowed")
    if len(_good_names) < _GOOD_NAMES_MAX:
        _good_names.add(name)


def _check_value(name: bytes, value: bytes) -> None:
    # Bytes looked up as integers: ``b"\r" in value`` first tries the needle as an
    # integer and builds, then clears, a TypeError (CPython 3.11), which cost more
    # than the rest of an h2c request's field checks together.
    if 0x0D in value or 0x0A in value or 0x00 in value:
        raise MalformedFields(f"field {name!r}: CR, LF or NUL in the value")
    if value[0] in (0x20, 0x09) or value[-1] in (0x20, 0x09):
        raise MalformedFields(f"field {name!r}: value starts or ends with whitespace")


def check_request(fields: list) -> None:
    """The request head ``fields`` (name, value pairs, bytes) obeys RFC 9113; MalformedFields if not."""
    good = _good_names
    pseudo: set[bytes] = set()
    regular = False
    method = path = authority = host = None
    for name, value in fields:
        if name not in good:
            if name[:1] == b":":
                if name not in REQUEST_PSEUDO:
                    raise MalformedFields(f"pseudo-header field {name!r} not allowed in a request")
                _check_name(name, 1)
            else:
                _check_name(name, 0)
        if value:
            _check_value(name, value)
        if name[0] == 58:  # b":"
            if regular:
                raise MalformedFields(f"pseudo-header field {name!r} after a regular field")
            if name in pseudo:
                raise MalformedFields(f"pseudo-header field {name!r} repeated")
            pseudo.add(name)
            if name == b":method":
                method = value
            elif name == b":path":
                path = value
            elif name == b":authority":
                authority = value
            continue
        regular = True
        if name in CONNECTION_SPECIFIC:
            raise MalformedFields(f"connection-specific field {name!r}")
        if name == b"te":
            if value.lower() != b"trailers":
                raise MalformedFields("TE other than trailers")
        elif name == b"host":
            if host is not None:
                raise MalformedFields("more than one Host field")
            host = value
    if method is None:
        raise MalformedFields("no :method")
    if method == b"CONNECT" and b":protocol" not in pseudo:
        if b":scheme" in pseudo or path is not None:
            raise MalformedFields("CONNECT with :scheme or :path")
    else:
        if b":scheme" not in pseudo or path is None:
            raise MalformedFields("no :scheme or no :path")
        if b":protocol" in pseudo and method != b"CONNECT":
            raise MalformedFields(":protocol without CONNECT")
    if path is not None and not path:
        raise MalformedFields("empty :path")
    if authority is None:
        if host is None:
            raise MalformedFields("neither :authority nor Host")
    elif host is not None and host != authority:
        raise MalformedFields(":authority and Host differ")


def check_response(fields: list) -> None:
    """A response head (final or 1xx) obeys RFC 9113; MalformedFields if not."""
    good = _good_names
    status = False
    regular = False
    for name, value in fields:
        if name[:1] == b":":
            if name != b":status":
                raise MalformedFields(f"pseudo-header field {name!r} not allowed in a response")
            if status:
                raise MalformedFields(":status repeated")
            if regular:
                raise MalformedFields(":status after a regular field")
            status = True
        else:
            regular = True
            if name not in good:
                _check_name(name, 0)
            if name in CONNECTION_SPECIFIC:
                raise MalformedFields(f"connection-specific field {name!r}")
            if name == b"te" and value.lower() != b"trailers":
                raise MalformedFields("TE other than trailers")
        if value:
            _check_value(name, value)
    if not status:
        raise MalformedFields("no :status")


def check_trailers(fields: list) -> None:
    """Trailers: the rules for names and values, no pseudo-header field; MalformedFields if broken."""
    good = _good_names
    for name, value in fields:
        if name[:1] == b":":
            raise MalformedFields(f"pseudo-header field {name!r} in trailers")
        if name not in good:
            _check_name(name, 0)
        if value:
            _check_value(name, value)
        if name in CONNECTION_SPECIFIC:
            raise MalformedFields(f"connection-specific field {name!r}")
        if name == b"te" and value.lower() != b"trailers":
            raise MalformedFields("TE other than trailers")


def check_repeated(check, fields: list, passed: dict) -> None:
    """``check`` (one of the above) of ``fields``, unless they equal, field for field, the
    block ``check`` passed last on this connection: a client repeats its request head, a
    backend its reply and trailers (the HPACK decoder hands out the very same field
    tuples for a repeated block, so the comparison is mostly identity). ``passed``: the
    connection's, check -> that block. The checks are pure functions of the fields.
    """
    block = tuple(fields)
    if passed.get(check) != block:
        check(fields)
        passed[check] = block

