"""Distributed tracing: sampling on the request path, OTLP export off it.

With ``--otlp-endpoint`` the server holds a ``Tracer``. For each request the
exchange (gateway/exchange.py) asks ``Tracer.sample`` first: a W3C
``traceparent`` the client sent decides (parent-based: its sampled flag is
obeyed either way), otherwise one ``random()`` against ``--trace-sample-ratio``.
An unsampled request gets ``None`` and nothing else happens: no object, no
clock read beyond what the exchange does anyway. The exchange itself (compiled)
looks for a traceparent and, when there is none, draws the random number: only
a request with a traceparent, or one the ratio picked, calls into this module
(``sample`` parses the header; ``new_trace`` starts a trace).

A sampled request carries a ``RequestTrace``: ids and, per upstream try, the
client span's id, times and outcome, recorded as plain values. When the
request ends ``Tracer.finish`` copies what the server span needs into a tuple
and appends it to a bounded queue. A daemon thread turns batches of queued
requests into one OTLP/HTTP protobuf request (one SERVER span per request,
one CLIENT span per try; attributes after the OpenTelemetry HTTP semantic
conventions) and POSTs it (gateway/otlp.py). The event loop never waits on the
collector: a full queue or a failed export drops spans and counts them
(``crdgate_trace_spans_dropped_total``, gateway/metrics.py).

Nothing of the OpenTelemetry SDK runs here: its span objects and encoder cost
about 300 µs per traced request (measured; see docs/tracing.md), the bytes
gateway/otlp.py writes are the same message.
"""

from __future__ import annotations

import logging
import random
import re
import threading
import time
from collections import deque
from gateway import otlp

log = logging.getLogger("crdgate.tracing")

# version-traceid-parentid-flags (W3C Trace Context, level 1); version ff is invalid.
_TRACEPARENT = re.compile(rb"\s*([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(?:-.*)?\s*")

QUEUE_LIMIT = 2048  # finished requests waiting for the exporter thread; above: dropped, counted
BATCH_LIMIT = 512  # requests per export call
EXPORT_INTERVAL = 1.0  # seconds between exports while the queue holds less than a batch
EXPORT_TIMEOUT = 5.0  # seconds one export may take (its one retry included)
EXPORT_WARNING_INTERVAL = 60.0  # at most one "export failed" warning per this many seconds


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
        self.endpoint = endpoint
        self.ratio = ratio
        # ``exporter.export(body: bytes)`` raises on failure; tests pass their own.
        self.exporter = exporter if exporter is not None else otlp.OtlpHttpExporter(endpoint, EXPORT_TIMEOUT)
        self._resource = otlp.resource(service_name)
        from gateway import __name__ as scope_name
        self._scope = otlp.scope(scope_name)
        # Monotonic seconds (what the exchange records) -> Unix nanoseconds (what OTLP wants).
        self._wall_offset = time.time_ns() - int(time.monotonic() * 1e9)
        self._queue: deque = deque()
        self.spans_exported = 0
        self.dropped_queue_full = 0  # counted on the event loop
        self.dropped_export_failed = 0  # counted on the exporter thread
        self._last_warning = -EXPORT_WARNING_INTERVAL
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="crdgate-trace-export", daemon=True)
        self._thread.start()

    # -- the request path (event loop) -----------------------------------------------

    def sample(self, headers) -> RequestTrace | None:
        """A RequestTrace when this request is traced, else None (the common case: keep it cheap)."""
        parent = state = None
        for name, value in headers:
            n = len(name)
            if n == 11:
                if name.lower() == b"traceparent":
                    parent = value
            elif n == 10 and name.lower() == b"tracestate":
                state = value
        if parent is not None:
            ctx = parse_traceparent(parent)
            if ctx is not None:
                # Parent-based: the client's decision stands, sampled or not.
                return RequestTrace(ctx[0], ctx[1], state) if ctx[2] else None
        if self.ratio > 0.0 and random.random() < self.ratio:
            return self.new_trace()
        return None

    def new_trace(self) -> RequestTrace:
        """A new trace, rooted at this request: for a request the ratio picked (the exchange draws
        the number itself when no traceparent came, so an unsampled request makes no call here)."""
        return RequestTrace(_new_id(128), None, None)

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
        limited = route is not None and route.policy.rate_limit is not None
        self._queue.append((
            trace, ex.start, now, error, ex.method, ex.path or ex.url.decode("latin-1"), proto.scheme,
            ex.http10, proto.peer, ex.status, ex.host, ex.query,
            route.path if route is not None else None, route.name if route is not None else None,
            # The rate limit runs just before forwarding: a try means it admitted the request.
            ("admitted" if ex.attempts else "rejected" if ex.status == 429 else None) if limited else None,
            ex.consumer, ex.upstream_addr if ex.upstream_ep is not None else None, ex.request_id,
        ))

    # -- the exporter thread ------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            self._stop.wait(EXPORT_INTERVAL)
            self._drain()
        self._drain()

    def _drain(self) -> None:
        queue = self._queue
        while queue:
            batch = [queue.popleft() for _ in range(min(BATCH_LIMIT, len(queue)))]
            count = sum(1 + len(item[0].tries) for item in batch)
            try:
                spans = []
                for item in batch:
                    spans.extend(self._spans(*item))
                self.exporter.export(otlp.export_request(self._resource, self._scope, spans))
            except Exception as e:  # whatever went wrong, the thread goes on with the next batch
                self.dropped_export_failed += count
                self._warn(e)
            else:
                self.spans_exported += count

    def _warn(self, e: Exception) -> None:
        now = time.monotonic()
        if now - self._last_warning >= EXPORT_WARNING_INTERVAL:
            self._last_warning = now
            log.warning("trace export to %s failed: %s (spans dropped: crdgate_trace_spans_dropped_total)",
                        self.endpoint, e)

    def _spans(self, trace: RequestTrace, start: float, end: float, error: str | None, method: str, path: str,
               scheme: str, http10: bool, peer: str | None, status: int, host, query, route_path: str | None,
               route_name: str | None, rate_limit: str | None, consumer, upstream: str | None,
               request_id: bytes | None) -> list:
        """The encoded SERVER span of one request and a CLIENT span per upstream try."""
        attr = otlp.attribute
        a = [attr("http.request.method", method), attr("url.path", path), attr("url.scheme", scheme),
             attr("network.protocol.version", "1.0" if http10 else "1.1")]
        if peer is not None:
            a.append(attr("client.address", peer))
        if status:
            a.append(attr("http.response.status_code", status))
        if error is not None:
            a.append(attr("error.type", error))
        if host:
            host = host.decode("latin-1") if isinstance(host, bytes) else host
            name, _, port = host.rpartition(":") if not host.endswith("]") else (host, "", "")
            if name and port.isdigit():
                a += (attr("server.address", name), attr("server.port", int(port)))
            else:
                a.append(attr("server.address", host))
        if query:
            a.append(attr("url.query", query.decode("latin-1") if isinstance(query, bytes) else query))
        if route_path is not None:
            a += (attr("http.route", route_path), attr("crdgate.route", route_name))
        if rate_limit is not None:
            a.append(attr("crdgate.rate_limit", rate_limit))
        if consumer is not None:
            a.append(attr("crdgate.consumer", str(consumer)))
        if upstream is not None:
            a.append(attr("crdgate.upstream", upstream))
        if request_id is not None:
            a.append(attr("crdgate.request_id", request_id.decode("latin-1")))
        ns = self._ns
        trace_id = trace.trace_id.to_bytes(16, "big")
        state = otlp.tracestate(trace.tracestate)
        remote = trace.parent_id is not None
        # OTel HTTP conventions: a server span is an error on 5xx (or no complete answer), not on 4xx.
        spans = [otlp.span(trace_id, trace.span_id, state, trace.parent_id,
                           method + " " + route_path if route_path is not None else method, otlp.SERVER,
                           ns(start), ns(end), a, status >= 500 or error is not None, remote)]
        for n, (span_id, t0, t1, address, up_status, up_error) in enumerate(trace.tries):
            host, _, port = address.rpartition(":")
            c = [attr("http.request.method", method), attr("server.address", host.strip("[]"))]
            if port.isdigit():
                c.append(attr("server.port", int(port)))
            if n:
                c.append(attr("http.request.resend_count", n))
            if up_status:
                c.append(attr("http.response.status_code", up_status))
            if up_error is None and up_status >= 500:
                up_error = str(up_status)
            if up_error is not None:
                c.append(attr("error.type", up_error))
            spans.append(otlp.span(trace_id, span_id, state, trace.span_id, method, otlp.CLIENT,
                                   ns(t0), ns(t1 or end), c, up_error is not None, False))
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
