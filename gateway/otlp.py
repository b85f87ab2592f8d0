"""OTLP/HTTP trace export: spans encoded as protobuf by hand, POSTed from the exporter thread.

The tracer (gateway/tracing.py) hands this module plain tuples; it writes the
bytes of an ``ExportTraceServiceRequest`` (opentelemetry-proto's
``collector/trace/v1``) the way the OpenTelemetry SDK's encoder lays them out:
one ResourceSpans, one ScopeSpans, fields in field-number order, the SDK's
span ``flags`` (context-has-is-remote, is-remote for a client's parent) and an
empty Status for UNSET. Why by hand: the SDK path (a ReadableSpan per span,
then the generated message classes, one object per attribute) cost about
300 µs per traced request on the event loop's core; writing the bytes from
precomputed attribute-key prefixes costs a few dozen. tests/test_tracing_otlp.py
decodes what a receiver gets with the generated classes, so the layout is
checked against opentelemetry-proto itself.

``OtlpHttpExporter`` POSTs one request per batch with a keep-alive
``http.client`` connection (blocking: it runs on the exporter thread only).
"""

from __future__ import annotations

import http.client
import re
import struct
import time
import urllib.parse

from gateway.errors import ExportFailed

# Field tags (field number << 3 | wire type), as bytes.
SERVER, CLIENT = 2, 3  # Span.SpanKind
_STATUS_UNSET = b"\x7a\x00"  # Span.status (15): an empty Status, code UNSET
_STATUS_ERROR = b"\x7a\x02\x18\x02"  # Status.code (3) = STATUS_CODE_ERROR
_HAS_IS_REMOTE, _IS_REMOTE = 0x100, 0x200  # SpanFlags
_FLAGS_LOCAL = b"\x85\x01" + struct.pack("<I", _HAS_IS_REMOTE)  # Span.flags (16, fixed32)
_FLAGS_REMOTE_PARENT = b"\x85\x01" + struct.pack("<I", _HAS_IS_REMOTE | _IS_REMOTE)
_U64 = struct.Struct("<Q").pack

# W3C tracestate: list members key=value (what the SDK's TraceState keeps; an invalid header is dropped whole).
_TS_KEY = r"(?:[a-z][_0-9a-z\-*/]{0,255}|[a-z0-9][_0-9a-z\-*/]{0,240}@[a-z][_0-9a-z\-*/]{0,13})"
_TS_VALUE = r"[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]"
_TS_MEMBER = re.compile(r"\s*(%s)=(%s)\s*" % (_TS_KEY, _TS_VALUE))
TRACESTATE_MAX_MEMBERS = 32


def varint(n: int) -> bytes:
    if n < 0x80:
        return _SMALL[n]
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


_SMALL = [bytes((i,)) for i in range(0x80)]


def _field(tag: bytes, payload: bytes) -> bytes:
    return tag + varint(len(payload)) + payload


def _utf8(s: str) -> bytes:
    # A protobuf string must be valid UTF-8 (receivers refuse the message otherwise).
    return s.encode("utf-8", "replace")


_KEYS: dict[str, bytes] = {}


def key_value(key: str, value) -> bytes:
    """One KeyValue message: a string or an int AnyValue."""
    prefix = _KEYS.get(key)
    if prefix is None:
        prefix = _KEYS[key] = _field(b"\x0a", _utf8(key))  # KeyValue.key (1)
    if isinstance(value, str):
        any_value = _field(b"\x0a", _utf8(value))  # AnyValue.string_value (1)
    else:
        any_value = b"\x18" + varint(value & 0xFFFFFFFFFFFFFFFF)  # AnyValue.int_value (3), two's complement
    return prefix + _field(b"\x12", any_value)  # KeyValue.value (2)


def attribute(key: str, value) -> bytes:
    """Span.attributes (9): one KeyValue."""
    return _field(b"\x4a", key_value(key, value))


def tracestate(raw: bytes | None) -> bytes | None:
    """The ``tracestate`` a client sent, as the span's trace_state: valid members only, or nothing."""
    if not raw:
        return None
    members = raw.decode("latin-1").split(",")
    kept = []
    for m in members:
        if not m.strip():
            continue
        match = _TS_MEMBER.fullmatch(m)
        if match is None:
            return None  # like the SDK: an invalid header is ignored whole
        kept.append(match.group(1) + "=" + match.group(2))
    if not kept or len(kept) > TRACESTATE_MAX_MEMBERS:
        return None
    return ",".join(kept).encode("ascii")


def span(trace_id: bytes, span_id: int, trace_state: bytes | None, parent_id: int | None, name: str, kind: int,
         start_ns: int, end_ns: int, attributes: list, error: bool, remote_parent: bool) -> bytes:
    """One Span message: ids, name, kind, times, attributes (encoded), status and flags."""
    parts = [b"\x0a\x10", trace_id, b"\x12\x08", span_id.to_bytes(8, "big")]
    if trace_state:
        parts.append(_field(b"\x1a", trace_state))
    if parent_id is not None:
        parts += (b"\x22\x08", parent_id.to_bytes(8, "big"))
    parts += (_field(b"\x2a", _utf8(name)), b"\x30", _SMALL[kind],
              b"\x39", _U64(start_ns), b"\x41", _U64(end_ns))
    parts += attributes
    parts.append(_STATUS_ERROR if error else _STATUS_UNSET)
    parts.append(_FLAGS_REMOTE_PARENT if remote_parent else _FLAGS_LOCAL)
    return _field(b"\x12", b"".join(parts))  # ScopeSpans.spans (2)


def resource(service_name: str) -> bytes:
    """ResourceSpans.resource (1): service.name and the telemetry.sdk.* attributes (Resource.attributes, 1)."""
    attrs = (("service.name", service_name), ("telemetry.sdk.language", "python"), ("telemetry.sdk.name", "crdgate"))
    return _field(b"\x0a", b"".join(_field(b"\x0a", key_value(k, v)) for k, v in attrs))


def scope(name: str) -> bytes:
    """ScopeSpans.scope (1): the InstrumentationScope, by name."""
    return _field(b"\x0a", _field(b"\x0a", _utf8(name)))


def export_request(resource_field: bytes, scope_field: bytes, spans: list) -> bytes:
    """ExportTraceServiceRequest with one ResourceSpans holding one ScopeSpans of ``spans``."""
    scope_spans = _field(b"\x12", scope_field + b"".join(spans))  # ResourceSpans.scope_spans (2)
    return _field(b"\x0a", resource_field + scope_spans)  # ExportTraceServiceRequest.resource_spans (1)


class OtlpHttpExporter:
    """POSTs encoded requests to an OTLP/HTTP traces URL; one keep-alive connection, one thread."""

    RETRYABLE = (429, 502, 503, 504)  # OTLP/HTTP: the collector asks to be tried again

    def __init__(self, endpoint: str, timeout: float):
        url = urllib.parse.urlsplit(endpoint)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"--otlp-endpoint must be an http:// or https:// URL, not {endpoint!r}")
        self.scheme = url.scheme
        self.host = url.hostname
        self.port = url.port or (443 if url.scheme == "https" else 80)
        self.path = (url.path or "/v1/traces") + (f"?{url.query}" if url.query else "")
        self.host_header = url.netloc.rpartition("@")[2]
        self.timeout = timeout
        self._conn: http.client.HTTPConnection | None = None

    def export(self, body: bytes) -> None:
        """Send one request; raises ExportFailed. One retry: a stale keep-alive connection, or a 429/5xx."""
        deadline = time.monotonic() + self.timeout
        for attempt in (1, 2):
            try:
                status = self._post(body, deadline)
            except (OSError, http.client.HTTPException) as e:
                self.close()
                if attempt == 2 or time.monotonic() >= deadline:
                    raise ExportFailed(f"{type(e).__name__}: {e}") from None
                continue
            if 200 <= status < 300:
                return
            if status not in self.RETRYABLE or attempt == 2:
                raise ExportFailed(f"the collector answered {status}")
            time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
        raise ExportFailed("no answer")

    def _post(self, body: bytes, deadline: float) -> int:
        conn = self._conn
        if conn is None:
            timeout = max(0.1, deadline - time.monotonic())
            if self.scheme == "https":
                conn = http.client.HTTPSConnection(self.host, self.port, timeout=timeout)
            else:
                conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
            self._conn = conn
        conn.request("POST", self.path, body, {"Host": self.host_header, "Content-Type": "application/x-protobuf"})
        resp = conn.getresponse()
        resp.read()
        if resp.will_close:
            self.close()
        return resp.status

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def shutdown(self) -> None:
        self.close()
