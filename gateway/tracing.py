"""Distributed tracing: sampling on the request path, OpenTelemetry spans off it.

With ``--otlp-endpoint`` the server holds a ``Tracer``. For each request the
exchange (gateway/exchange.py) asks ``Tracer.sample`` first: a W3C
``traceparent`` the client sent decides (parent-based: its sampled flag is
obeyed either way), otherwise one ``random()`` against ``--trace-sample-ratio``.
An unsampled request gets ``None`` and nothing else happens: no span object,
no clock read beyond what the exchange does anyway.

A sampled request carries a ``RequestTrace``: ids and, per upstream try, the
client span's id, times and outcome, recorded as plain values. When the
request ends ``Tracer.finish`` copies the server span's attributes into a tuple
and appends it to a bounded queue; a daemon thread turns queued requests into
SDK spans (one SERVER span, one CLIENT span per try) and exports them with the
OTLP/HTTP protobuf exporter. The event loop never waits on the collector: a
full queue or a failed export drops spans and counts them
(``crdgate_trace_spans_dropped_total``, gateway/metrics.py).

The OpenTelemetry packages (the ``tracing`` extra) are imported only when a
Tracer is made, so a gateway without tracing never loads them.
"""

from __future__ import annotations

import logging
import random
import re
import threading
import time
from collections import deque
from gateway.errors import MissingTracingPackages

log = logging.getLogger("crdgate.tracing")

# version-traceid-parentid-flags (W3C Trace Context, level 1); version ff is invalid.
_TRACEPARENT = re.compile(rb"\s*([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(?:-.*)?\s*")

QUEUE_LIMIT = 2048  # finished requests waiting for the exporter thread; above: dropped, counted
BATCH_LIMIT = 512  # requests per export call
EXPORT_INTERVAL = 1.0  # seconds between exports while the queue holds less than a batch
EXPORT_TIMEOUT = 5.0  # seconds one export may take (the exporter's own retries included)


def packages_installed() -> bool:
    """Whether the OpenTelemetry SDK and OTLP/HTTP exporter can be imported (without importing them)."""
    import importlib.util

    try:
        return importlib.util.find_spec("opentelemetry.exporter.otlp.proto.http.trace_exporter") is not None \
            and importlib.util.find_spec("opentelemetry.sdk.trace") is not None
    except ImportError:  # a parent package is missing
        return False


def parse_traceparent(value: bytes):
    """(trace_id, parent_span_id, sampled) of a valid W3C traceparent, else None."""
    m = _TRACEPARENT.fullmatch(value)
    if m is None:
        return None
    version, trace_id, span_id, flags = m.groups()
    if version == b"ff" or (version == b"00" and m.end(4) != len(value.rstrip())):
        return None  # version 00 has exactly four fields
    tid, sid = int(trace_id, 16), int(span_id, 16)
    if not tid or not sid:
        return None
    return tid, sid, bool(int(flags, 16) & 1)


def _new_id(bits: int) -> int:
    return random.getrandbits(bits) or 1


class RequestTrace:
    """What a sampled request records for its spans: ids, and one entry per upstream try."""

    __slots__ = ("trace_id", "span_id", "parent_id", "tracestate", "tries", "current")

    def __init__(self, trace_id: int, parent_id: int | None, tracestate: bytes | None):
        self.trace_id = trace_id
        self.span_id = _new_id(64)
        self.parent_id = parent_id  # the client's span (remote), or None for a new trace
        self.tracestate = tracestate
        self.tries: list = []
        self.current = None  # the try in flight: [span_id, start, end, address, status, error]

    def try_started(self, address: str, now: float) -> None:
        self.current = t = [_new_id(64), now, 0.0, address, 0, None]
        self.tries.append(t)

    def traceparent(self) -> bytes:
        """The header line for the upstream: this trace, the current try's client span as parent."""
        t = self.current
        return b"traceparent: 00-%032x-%016x-01\r\n" % (self.trace_id, t[0] if t is not None else self.span_id)

    def try_status(self, status: int) -> None:
        if self.current is not None:
            self.current[4] = status

    def try_error(self, reason: str) -> None:
        if self.current is not None:
            self.current[5] = reason

    def try_ended(self, now: float) -> None:
        t = self.current
        if t is not None:
            t[2] = now
            self.current = None


class Tracer:
    """Samples requests and exports the spans of sampled ones from a background thread."""

    def __init__(self, endpoint: str, ratio: float, service_name: str = "crdgate", exporter=None):
        try:
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import ReadableSpan
            from opentelemetry.sdk.util.instrumentation import InstrumentationScope
            from opentelemetry.trace import SpanContext, SpanKind, TraceFlags, TraceState
            from opentelemetry.trace.status import Status, StatusCode
            if exporter is None:
                from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
                exporter = OTLPSpanExporter(endpoint=endpoint, timeout=EXPORT_TIMEOUT)
        except ImportError as e:
            raise MissingTracingPackages(
                f"--otlp-endpoint needs the OpenTelemetry packages: pip install 'crdgate[tracing]' ({e})") from None
        self._otel = (ReadableSpan, SpanContext, SpanKind, TraceFlags, TraceState, Status, StatusCode)
        self._resource = Resource.create({"service.name": service_name})
        from gateway import __name__ as scope_name
        self._scope = InstrumentationScope(scope_name)
        self.endpoint = endpoint
        self.ratio = ratio
        self.exporter = exporter
        # Monotonic seconds (what the exchange records) -> Unix nanoseconds (what OTLP wants).
        self._wall_offset = time.time_ns() - int(time.monotonic() * 1e9)
        self._queue: deque = deque()
        self.spans_exported = 0
        self.dropped_queue_full = 0  # counted on the event loop
        self.dropped_export_failed = 0  # counted on the exporter thread
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="crdgate-trace-export", daemon=True)
        self._thread.start()

    # -- the request path (event loop) -----------------------------------------------

    def sample(self, headers) -> RequestTrace | None:
        """A RequestTrace when this request is traced, else None (the common case: keep it cheap)."""
        parent = state = None
        for name, value in headers:
            if len(name) == 11 and name.lower() == b"traceparent":
                parent = value
            elif len(name) == 10 and name.lower() == b"tracestate":
                state = value
        if parent is not None:
            ctx = parse_traceparent(parent)
            if ctx is not None:
                # Parent-based: the client's decision stands, sampled or not.
                return RequestTrace(ctx[0], ctx[1], state) if ctx[2] else None
        if self.ratio > 0.0 and random.random() < self.ratio:
            return RequestTrace(_new_id(128), None, None)
        return None

    def finish(self, ex, now: float, error: str | None = None) -> None:
        """The request has ended: queue what its spans need (plain values, read now).

        ``error``: why it ended early, when it did (the response was cut: ``timeout``,
        ``reset``, ...; the client went away: ``client_closed``).
        """
        trace = ex.trace
        if trace.current is not None:
            trace.try_ended(now)
        if len(self._queue) >= QUEUE_LIMIT:
            self.dropped_queue_full += 1 + len(trace.tries)
            return
        route = ex.route
        proto = ex.proto
        attrs = {
            "http.request.method": ex.method,
            "url.path": ex.path or ex.url.decode("latin-1"),
            "url.scheme": proto.scheme,
            "network.protocol.version": "1.0" if ex.http10 else "1.1",
            "client.address": proto.peer,
        }
        if ex.status:
            attrs["http.response.status_code"] = ex.status
        if error is not None:
            attrs["error.type"] = error
        host = ex.host
        if host:
            host = host.decode("latin-1") if isinstance(host, bytes) else host
            name, _, port = host.rpartition(":") if not host.endswith("]") else (host, "", "")
            if name and port.isdigit():
                attrs["server.address"], attrs["server.port"] = name, int(port)
            else:
                attrs["server.address"] = host
        if ex.query:
            attrs["url.query"] = ex.query
        if route is not None:
            attrs["http.route"] = route.path
            attrs["crdgate.route"] = route.name
            if route.policy.rate_limit is not None:
                # The rate limit runs just before forwarding: a try means it admitted the request.
                if ex.attempts:
                    attrs["crdgate.rate_limit"] = "admitted"
                elif ex.status == 429:
                    attrs["crdgate.rate_limit"] = "rejected"
        if ex.consumer is not None:
            attrs["crdgate.consumer"] = str(ex.consumer)
        if ex.upstream_ep is not None:
            attrs["crdgate.upstream"] = ex.upstream_addr
        if ex.request_id is not None:
            attrs["crdgate.request_id"] = ex.request_id.decode("latin-1")
        span_name = ex.method + " " + route.path if route is not None else ex.method
        self._queue.append((trace, span_name, ex.start, now, attrs, ex.method))

    # -- the exporter thread ------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            self._stop.wait(EXPORT_INTERVAL)
            self._drain()
        self._drain()

    def _drain(self) -> None:
        queue = self._queue
        while queue:
            batch = []
            while queue and len(batch) < BATCH_LIMIT:
                batch.append(queue.popleft())
            spans = []
            for item in batch:
                spans.extend(self._spans(*item))
            try:
                result = self.exporter.export(spans)
                ok = getattr(result, "name", "") == "SUCCESS"
            except Exception:
                log.debug("trace export failed", exc_info=True)
                ok = False
            if ok:
                self.spans_exported += len(spans)
            else:
                self.dropped_export_failed += len(spans)

    def _spans(self, trace: RequestTrace, name: str, start: float, end: float, attrs: dict, method: str) -> list:
        ReadableSpan, SpanContext, SpanKind, TraceFlags, TraceState, Status, StatusCode = self._otel
        sampled = TraceFlags(TraceFlags.SAMPLED)
        state = _trace_state(TraceState, trace.tracestate)
        ns = self._ns
        server_ctx = SpanContext(trace.trace_id, trace.span_id, is_remote=False, trace_flags=sampled, trace_state=state)
        parent = (SpanContext(trace.trace_id, trace.parent_id, is_remote=True, trace_flags=sampled, trace_state=state)
                  if trace.parent_id is not None else None)
        status = attrs.get("http.response.status_code", 0)
        failed = status >= 500 or "error.type" in attrs
        spans = [ReadableSpan(
            name, context=server_ctx, parent=parent, resource=self._resource, attributes=attrs,
            kind=SpanKind.SERVER, instrumentation_scope=self._scope, start_time=ns(start), end_time=ns(end),
            # OTel HTTP conventions: a server span is an error on 5xx (or no complete answer), not 4xx.
            status=Status(StatusCode.ERROR) if failed else Status(StatusCode.UNSET),
        )]
        for n, (span_id, t0, t1, address, up_status, error) in enumerate(trace.tries):
            host, _, port = address.rpartition(":")
            a = {"http.request.method": method, "server.address": host.strip("[]")}
            if port.isdigit():
                a["server.port"] = int(port)
            if n:
                a["http.request.resend_count"] = n
            if up_status:
                a["http.response.status_code"] = up_status
            failed = error is not None or up_status >= 500
            if error is not None:
                a["error.type"] = error
            elif up_status >= 500:
                a["error.type"] = str(up_status)
            spans.append(ReadableSpan(
                method, context=SpanContext(trace.trace_id, span_id, is_remote=False, trace_flags=sampled,
                                            trace_state=state),
                parent=server_ctx, resource=self._resource, attributes=a, kind=SpanKind.CLIENT,
                instrumentation_scope=self._scope, start_time=ns(t0), end_time=ns(t1 or end),
                status=Status(StatusCode.ERROR) if failed else Status(StatusCode.UNSET),
            ))
        return spans

    def _ns(self, monotonic: float) -> int:
        return int(monotonic * 1e9) + self._wall_offset

    # -- lifecycle ------------------------------------------------------------------------

    @property
    def spans_dropped(self) -> int:
        return self.dropped_queue_full + self.dropped_export_failed

    def close(self, timeout: float = EXPORT_TIMEOUT) -> None:
        """Export what is queued (bounded in time) and stop the thread. Blocking: call it off the loop."""
        self._stop.set()
        self._thread.join(timeout)
        try:
            self.exporter.shutdown()
        except Exception:
            pass


def _trace_state(TraceState, raw: bytes | None):
    if not raw:
        return None
    try:
        return TraceState.from_header([raw.decode("latin-1")])
    except Exception:
        return None
