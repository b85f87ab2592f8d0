"""gRPC's own words for what the gateway says itself: statuses, messages, deadlines.

A request with ``content-type: application/grpc*`` that the gateway answers
itself (no route, auth, rate limit, upstream failure, timeout) gets the gRPC
form, whichever HTTP version it came over: HTTP 200, ``content-type:
application/grpc`` and ``grpc-status``/``grpc-message`` in the head
("trailers-only", gRPC over HTTP/2's Trailers-Only response). ``grpc_status``
maps the HTTP status the gateway chose; metrics and the access log keep that
status. The HTTP/2 stream (gateway/h2stream.py) frames the fields; the
exchange (gateway/exchange.py) writes the HTTP/1.1 head with ``grpc_http1_answer``.
"""

from __future__ import annotations

from gateway.wire import add_field, status_line

# gRPC status codes (grpc/doc/statuscodes.md) for the answers the gateway makes
# itself, by the HTTP status it chose.
GRPC_OK = 0
GRPC_UNKNOWN = 2
GRPC_DEADLINE_EXCEEDED = 4
GRPC_PERMISSION_DENIED = 7
GRPC_RESOURCE_EXHAUSTED = 8
GRPC_UNIMPLEMENTED = 12
GRPC_INTERNAL = 13
GRPC_UNAVAILABLE = 14
GRPC_UNAUTHENTICATED = 16
_GRPC_BY_HTTP = {
    401: GRPC_UNAUTHENTICATED, 403: GRPC_PERMISSION_DENIED, 404: GRPC_UNIMPLEMENTED, 405: GRPC_UNIMPLEMENTED,
    408: GRPC_DEADLINE_EXCEEDED, 413: GRPC_RESOURCE_EXHAUSTED, 429: GRPC_RESOURCE_EXHAUSTED,
    431: GRPC_RESOURCE_EXHAUSTED, 500: GRPC_INTERNAL, 501: GRPC_UNIMPLEMENTED, 502: GRPC_UNAVAILABLE,
    503: GRPC_UNAVAILABLE, 504: GRPC_DEADLINE_EXCEEDED,
}
# grpc-timeout units (gRPC over HTTP/2: "Timeout -> TimeoutValue TimeoutUnit").
_GRPC_TIMEOUT_UNITS = {b"H": 3600.0, b"M": 60.0, b"S": 1.0, b"m": 1e-3, b"u": 1e-6, b"n": 1e-9}
# Fields of the gateway's own answers that a trailers-only answer does not carry, or sets itself.
ANSWER_SKIPPED = frozenset((b"connection", b"content-length", b"transfer-encoding", b"keep-alive"))
_HTTP1_SKIPPED = ANSWER_SKIPPED | {b"content-type"}


def grpc_status(http_status: int) -> int:
    """The gRPC status of an answer the gateway made itself with ``http_status``."""
    if http_status < 400:
        return GRPC_UNKNOWN  # a redirect or a preflight answer: nothing a gRPC client can follow
    return _GRPC_BY_HTTP.get(http_status, GRPC_INTERNAL if http_status < 500 else GRPC_UNKNOWN)


def grpc_message(text: str) -> bytes:
    """``grpc-message``: percent-encoded UTF-8, printable ASCII but '%' kept as is."""
    out = bytearray()
    for byte in text.encode("utf-8"):
        if 0x20 <= byte <= 0x7E and byte != 0x25:
            out.append(byte)
        else:
            out += b"%%%02X" % byte
    return bytes(out)


def grpc_timeout(value: bytes) -> float | None:
    """Seconds of a ``grpc-timeout`` value (at most 8 digits and a unit), None when malformed."""
    unit = _GRPC_TIMEOUT_UNITS.get(value[-1:])
    digits = value[:-1]
    if unit is None or not 1 <= len(digits) <= 8 or not digits.isdigit():
        return None
    return int(digits) * unit


def is_grpc(content_type: bytes | None) -> bool:
    return content_type is not None and content_type[:16].lower() == b"application/grpc"


def grpc_http1_answer(status: int, text: str, extra, extra_resp, close: bool) -> bytes:
    """The trailers-only answer to a gRPC request over HTTP/1.1: the whole response, no body."""
    parts = [status_line(200), b"content-type: application/grpc\r\n"]
    for group in (extra, extra_resp):
        if group:
            for name, value in group:
                if name.lower() not in _HTTP1_SKIPPED:
                    add_field(parts, name, value)
    add_field(parts, b"grpc-status", b"%d" % grpc_status(status))
    add_field(parts, b"grpc-message", grpc_message(text))
    parts.append(b"content-length: 0\r\n")
    if close:
        parts.append(b"connection: close\r\n")
    parts.append(b"\r\n")
    return b"".join(parts)


def message_of(body: bytes) -> str:
    """The message of the gateway's JSON error body (gateway/wire.py json_body)."""
    marker = b'"message":"'
    start = body.find(marker)
    if start < 0:
        return body.decode("utf-8", "replace").strip()
    start += len(marker)
    end = body.find(b'"', start)
    return body[start:end].decode("utf-8", "replace")
