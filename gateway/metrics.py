"""Prometheus metrics of the data plane (the catalogue is in the README).

Labels are bounded: ``route`` is the owning object's ``namespace/name`` (or
``-`` when nothing matched), never a raw path; ``code`` is the status class.
The hot path bumps plain Python counters (``RequestStats``) and the admin
server folds them into Prometheus families when scraped, so a request costs a
dict update, not a lock and a label lookup per metric.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left

from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

REGISTRY = CollectorRegistry(auto_describe=True)

if TYPE_CHECKING:
    from gateway.routing import Route

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT"))


def status_class(status: int) -> str:
    """The ``code`` label: 2xx, 4xx, ... ("other" outside 100-599)."""
    return "%dxx" % (status // 100) if 100 <= status < 600 else "other"


class RouteCounters:
    """One route's share of ``RequestStats``: its duration histogram (``durations``:
    count per bucket..., +Inf count, sum) and its requests, counted in runs of one
    method and status (a route's requests mostly share both) and added to
    ``RequestStats``' totals when the run changes or a scrape reads them.

    The histogram is an array of C doubles, not a list of floats: a request adds to
    two cells of one small block instead of replacing two float objects, which for
    requests spread over many routes is two cache misses fewer (``cells`` is the
    same array, typed for C access when compiled)."""

    __slots__ = ("name", "durations", "cells", "method", "status", "pending", "stats")

    def __init__(self, name: str, size: int, stats: RequestStats):
        self.name = name
        self.durations = array("d", bytes(8 * size))
        self.cells = self.durations
        self.method: str | None = None
        self.status = 0
        self.pending = 0
        self.stats = stats  # whose counters these are (a route may be seen by several)


class RequestStats:
    """Per-request counters kept as plain dicts; exported at scrape time.

    ``crdgate_requests_total{route,method,code}`` and the histogram
    ``crdgate_request_duration_seconds{route}``. ``code`` is the status class
    (2xx..5xx) so label cardinality stays bounded by routes x methods x 5.
    """

    def __init__(self, buckets: tuple[float, ...] = LATENCY_BUCKETS):
        self.buckets = tuple(buckets)
        self._counts: dict[tuple[str, str, int], int] = {}
        # route -> [count per bucket..., +Inf count, sum] (its RouteCounters' array)
        self.durations: dict[str, array] = {}
        self._routes: dict[str, RouteCounters] = {}
        # The last request's route: the next one is often the same. Per request that is
        # an identity check, or one lookup by route name when requests spread over many
        # routes, instead of a (route, method, status) tuple built, hashed and looked up
        # twice in a dict as large as the table (2026-12-04: 10,000 routes, ~1 µs a request).
        self._last: RouteCounters | None = None

    @property
    def requests(self) -> dict[tuple[str, str, int], int]:
        """(route, method, status) -> requests answered: the request path only
        counts; the status class and the OTHER method are worked out when scraped.
        Bounded: llhttp parses only the methods it knows, statuses are 3 digits."""
        for c in list(self._routes.values()):
            self._add_pending(c)
        return self._counts

    def _add_pending(self, c: RouteCounters) -> None:
        if c.pending:
            key = (c.name, c.method, c.status)
            self._counts[key] = self._counts.get(key, 0) + c.pending
            c.pending = 0

    def counters(self, route: str) -> RouteCounters:
        """The counters of the route named ``route`` (made on first use; kept for
        as long as the gateway runs, as Prometheus counters are)."""
        c = self._routes.get(route)
        if c is None:
            c = self._routes[route] = RouteCounters(route, len(self.buckets) + 2, self)
            self.durations[route] = c.durations
        return c

    def record(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count a request answered on the route named ``route`` ("-" for none)."""
        c = self._last
        if c is None or route is not c.name:
            c = self._last = self.counters(route)
        self._count(c, method, status, seconds)

    def record_route(self, route: Route | None, method: str, status: int, seconds: float) -> None:
        """``record`` for the proxy, which has the Route: its counters are cached on
        it, so a request spread over a large table finds them without a lookup by
        name in a dict as large as the table (a changed route is a new Route: its
        first request looks them up again, and the counts carry on)."""
        if route is None:
            return self.record("-", method, status, seconds)
        c = route.counters
        if c is None or c.stats is not self:
            c = self.counters(route.name)
            object.__setattr__(route, "counters", c)  # Route is frozen; this slot is the cache
        self._count(c, method, status, seconds)

    def _count(self, c: RouteCounters, method: str, status: int, seconds: float) -> None:
        if method is not c.method or status != c.status:
            self._add_pending(c)
            c.method, c.status = method, status
        c.pending += 1
        # bisect_left, written out: compiled, it compares C doubles instead of
        # calling into bisect with a float object per comparison.
        buckets = self.buckets
        lo, hi = 0, len(buckets)
        while lo < hi:
            mid = (lo + hi) // 2
            bound = buckets[mid]
            if bound < seconds:
                lo = mid + 1
            else:
                hi = mid
        d = c.cells
        d[lo] += 1
        d[len(buckets) + 1] += seconds

    def retry(self, route: str) -> None:
        UPSTREAM_RETRIES.labels(route).inc()

    def upstream_error(self, route: str, reason: str) -> None:
        UPSTREAM_ERRORS.labels(route, reason).inc()

    def rejected(self, status: int) -> None:
        REJECTED_REQUESTS.labels(str(status)).inc()

    def collect(self):
        c = CounterMetricFamily(
            "crdgate_requests", "Requests answered, by route, method and status class.",
            labels=["route", "method", "code"],
        )
        by_class: dict[tuple[str, str, str], int] = {}
        for (route, method, status), n in list(self.requests.items()):
            key = (route, method if method in METHODS else "OTHER", status_class(status))
            by_class[key] = by_class.get(key, 0) + n
        for labels, n in by_class.items():
            c.add_metric(list(labels), n)
        yield c
        h = HistogramMetricFamily(
            "crdgate_request_duration_seconds",
            "Time from the request's first byte to the response's last byte, by route.",
            labels=["route"],
        )
        for route, d in list(self.durations.items()):
            acc = 0.0
            buckets = []
            for bound, n in zip(self.buckets, d):
                acc += n
                buckets.append((repr(bound), acc))
            acc += d[len(self.buckets)]
            buckets.append(("+Inf", acc))
            h.add_metric([route], buckets, d[-1])
        yield h


class DecisionCounter:
    """A labelled counter kept as a plain dict: label values tuple -> count.

    Prometheus client's ``labels(...).inc()`` takes a lock and several lookups
    per call; on the request path a dict update is enough (the event loop is
    the only writer). ``counts`` is public so the hot path can bump it
    inline: ``c = COUNTER.counts; c[key] = c.get(key, 0) + 1``.
    """

    def __init__(self, name: str, documentation: str, labels: tuple[str, ...]):
        self.name = name
        self.documentation = documentation
        self.labels = labels
        self.counts: dict[tuple[str, ...], int] = {}

    def inc(self, *values: str) -> None:
        c = self.counts
        c[values] = c.get(values, 0) + 1

    def value(self, *values: str) -> int:
        return self.counts.get(values, 0)

    def collect(self):
        family = CounterMetricFamily(self.name, self.documentation, labels=list(self.labels))
        for values, n in list(self.counts.items()):
            family.add_metric(list(values), n)
        yield family

    def describe(self):
        yield CounterMetricFamily(self.name, self.documentation, labels=list(self.labels))


class PlainHistogram:
    """An unlabelled histogram kept as a list of bucket counts and a sum."""

    def __init__(self, name: str, documentation: str, buckets: tuple[float, ...]):
        self.name = name
        self.documentation = documentation
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)  # the last one is +Inf
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(self.buckets, seconds)] += 1
        self.sum += seconds

    def collect(self):
        h = HistogramMetricFamily(self.name, self.documentation)
        acc = 0
        buckets = []
        for bound, n in zip(self.buckets, self.counts):
            acc += n
            buckets.append((repr(bound), acc))
        acc += self.counts[-1]
        buckets.append(("+Inf", acc))
        h.add_metric([], buckets, self.sum)
        yield h

    def describe(self):
        yield HistogramMetricFamily(self.name, self.documentation)


STATS = RequestStats()
REGISTRY.register(STATS)

UPSTREAM_ERRORS = Counter(
    "crdgate_upstream_errors_total",
    "Failed upstream tries, by route and reason (connect, timeout, reset, protocol, mirror).",
    ["route", "reason"],
    registry=REGISTRY,
)
UPSTREAM_RETRIES = Counter(
    "crdgate_upstream_retries_total",
    "Upstream tries repeated under the route's retry policy.",
    ["route"],
    registry=REGISTRY,
)
UPSTREAM_EJECTIONS = Counter(
    "crdgate_upstream_ejections_total",
    "Endpoints ejected by passive health checking.",
    ["backend"],
    registry=REGISTRY,
)
UPSTREAM_CONNECTIONS = Gauge(
    "crdgate_upstream_connections",
    "Open upstream connections (idle and busy).",
    registry=REGISTRY,
)
CLIENT_CONNECTIONS = Gauge(
    "crdgate_client_connections",
    "Open client connections.",
    registry=REGISTRY,
)
REJECTED_REQUESTS = Counter(
    "crdgate_rejected_requests_total",
    "Requests refused before routing (bad syntax, limits, smuggling attempts), by status.",
    ["code"],
    registry=REGISTRY,
)
TABLE_GENERATION = Gauge(
    "crdgate_table_generation",
    "Generation of the routing table being served.",
    registry=REGISTRY,
)
TABLE_ROUTES = Gauge(
    "crdgate_table_routes",
    "Routes in the table being served.",
    registry=REGISTRY,
)
TABLE_SWAPS = Counter(
    "crdgate_table_swaps_total",
    "Routing tables published, by kind of update (full: compiled from scratch, incremental: only what changed "
    "recompiled, endpoints: EndpointSlices only).",
    ["kind"],
    registry=REGISTRY,
)
COMPILE_DURATION = Histogram(
    "crdgate_compile_duration_seconds",
    "Time to compile the object cache into a routing table.",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
    registry=REGISTRY,
)
OBJECTS = Gauge(
    "crdgate_objects",
    "Objects by kind and state after the last compile (Ready, Pending, Error).",
    ["kind", "state"],
    registry=REGISTRY,
)
# Decision counters and the Redis round-trip histogram are bumped on the
# request path: plain dicts, folded into families when scraped (see
# DecisionCounter). The proxy bumps them inline (``d[key] = d.get(key, 0) + 1``).
AUTH_DECISIONS = DecisionCounter(
    "crdgate_auth_decisions",
    "Authentication decisions by route, scheme and outcome (allowed, missing, invalid, forbidden, error).",
    ("route", "scheme", "outcome"),
)
REGISTRY.register(AUTH_DECISIONS)
RATELIMIT_DECISIONS = DecisionCounter(
    "crdgate_ratelimit_decisions",
    "Rate-limit decisions by route, scope and outcome (allowed, limited, failopen, failclosed).",
    ("route", "scope", "outcome"),
)
REGISTRY.register(RATELIMIT_DECISIONS)
RATELIMIT_REDIS_SECONDS = PlainHistogram(
    "crdgate_ratelimit_redis_seconds",
    "Round-trip time of global rate-limit calls to Redis.",
    (0.0002, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25),
)
REGISTRY.register(RATELIMIT_REDIS_SECONDS)
RATELIMIT_REDIS_ERRORS = Counter(
    "crdgate_ratelimit_redis_errors_total",
    "Global rate-limit calls to Redis that failed or timed out.",
    registry=REGISTRY,
)


class LocalStoreStats:
    """The Local rate-limit store's size and evictions, read from the limiter when scraped.

    A flood of distinct keys (a scan, spoofed header values) shows here first: the
    store filling up to ``--ratelimit-max-keys`` and then evicting, which weakens
    the limit of the keys evicted. Nothing is counted on the request path.
    """

    def __init__(self):
        self.limiter = None  # the process's gateway.ratelimit.RateLimiter, set by gateway/server.py's Server

    def collect(self):
        lim = self.limiter
        keys = GaugeMetricFamily(
            "crdgate_ratelimit_local_keys", "Keys held by the Local rate-limit store (bounded by --ratelimit-max-keys).")
        evictions = CounterMetricFamily(
            "crdgate_ratelimit_local_evictions", "Local rate-limit keys evicted because the store was full (their limits restart).")
        if lim is not None:
            keys.add_metric([], lim.local_keys)
            evictions.add_metric([], lim.evictions)
        yield keys
        yield evictions

    def describe(self):
        return self.collect()


LOCAL_RATELIMIT = LocalStoreStats()
REGISTRY.register(LOCAL_RATELIMIT)

class LogDropStats:
    """Log lines dropped instead of stalling the proxy, read from the log writers when scraped.

    The access log (stdout) and the process log (stderr) each hold a bounded
    buffer (gateway/logwriter.py); a reader that stops reading fills it, and
    then lines are dropped and counted here rather than requests left waiting.
    """

    def __init__(self):
        self.access = None  # the access log's writer (gateway/loopwriter.py, or a LogWriter), set by gateway/accesslog.py
        self.process = None  # ... of the process log, set by crdgate/logs.py's setup_logging

    def collect(self):
        for writer, name, documentation in (
            (self.access, "crdgate_access_log_dropped",
             "Access log lines dropped because stdout was not read fast enough (or was closed)."),
            (self.process, "crdgate_log_dropped",
             "Process log lines dropped because stderr was not read fast enough (or was closed)."),
        ):
            family = CounterMetricFamily(name, documentation)
            family.add_metric([], writer.dropped if writer is not None else 0)
            yield family

    def describe(self):
        return self.collect()


LOG_DROPS = LogDropStats()
REGISTRY.register(LOG_DROPS)

# Controller side (the controller may import the gateway; never the reverse).
WATCH_EVENTS = Counter(
    "crdgate_watch_events_total",
    "Watch events received, by kind and type (ADDED, MODIFIED, DELETED, BOOKMARK, ERROR).",
    ["kind", "type"],
    registry=REGISTRY,
)
STATUS_ONLY_UPDATES = Counter(
    "crdgate_store_status_only_updates_total",
    "Objects received again with only their status or resourceVersion changed (the echo of a status write, "
    "or a relist): cached without a compile or a table swap.",
    ["kind"],
    registry=REGISTRY,
)
RELISTS = Counter(
    "crdgate_relists_total",
    "Full lists of a kind (the first, and each after 410 Gone).",
    ["kind"],
    registry=REGISTRY,
)
WATCH_RECONNECTS = Counter(
    "crdgate_watch_reconnects_total",
    "Watch streams re-opened after an error or a dropped connection, by kind.",
    ["kind"],
    registry=REGISTRY,
)
LAST_SYNC = Gauge(
    "crdgate_last_sync_timestamp_seconds",
    "Unix time of the last event or list received, by kind (age = time() - this).",
    ["kind"],
    registry=REGISTRY,
)
STATUS_WRITES = Counter(
    "crdgate_status_writes_total",
    "Status patches sent to the API server, by kind and result (ok, conflict, notfound, error).",
    ["kind", "result"],
    registry=REGISTRY,
)
LEADER = Gauge(
    "crdgate_leader",
    "1 while this replica holds the status-writer lease.",
    registry=REGISTRY,
)

# Process metrics (CPU, RSS, open fds) on the same registry, as Prometheus users expect.
from prometheus_client import PlatformCollector, ProcessCollector  # noqa: E402

ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)


class TraceExportStats:
    """Spans of sampled requests (gateway/tracing.py), read from the tracer when scraped.

    Export runs on a thread with a bounded queue: a slow or unreachable
    collector drops spans and counts them here, requests never wait for it.
    """

    def __init__(self):
        self.tracer = None  # gateway.tracing.Tracer, set by gateway/server.py when --otlp-endpoint is set

    def collect(self):
        t = self.tracer
        exported = CounterMetricFamily("crdgate_trace_spans_exported",
                                       "Spans the OTLP collector accepted.")
        exported.add_metric([], t.spans_exported if t is not None else 0)
        yield exported
        dropped = CounterMetricFamily(
            "crdgate_trace_spans_dropped",
            "Spans dropped: queue_full (the export queue was full), export_failed (the collector "
            "was unreachable or refused them).", labels=["reason"])
        dropped.add_metric(["queue_full"], t.dropped_queue_full if t is not None else 0)
        dropped.add_metric(["export_failed"], t.dropped_export_failed if t is not None else 0)
        yield dropped

    def describe(self):
        return self.collect()


TRACING = TraceExportStats()
REGISTRY.register(TRACING)
