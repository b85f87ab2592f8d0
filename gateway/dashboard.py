"""The admin port's dashboard: ``GET /`` serves a page, ``GET /dashboard.json`` the data it polls.

The page (gateway/static/: HTML, CSS and JS shipped with the package, no CDN,
works offline) polls ``/dashboard.json`` every two seconds and renders: the
routes in match order with their source object, every object's state and
conditions, traffic per route, upstream endpoints with their ejection state,
the rate-limit store, TLS certificates with their expiry, the last table swap
and any load errors.

Neighbours: reads the live ``Server`` (its table, upstream pools, limiter,
certificate store), the request counters of gateway/metrics.py, and the
control-plane facts the front door hands over as plain data
(``Server.control_plane``, set by crdgate/run.py: this module never imports
the controller). Routes are rendered by gateway/tablejson.py, the same rows as
``/routes``, so credentials never appear; no Secret content, key or credential
is ever read here: certificates show their public dates and names only.

Rates are computed here, not in the browser: each poll records the cumulative
counters (at most one sample a second, kept ``WINDOW_SECONDS``), and rates and
latency percentiles come from the difference between the newest sample and
the oldest one inside the window, so every open page sees the same numbers and
the arithmetic is testable without a browser. Nothing here runs unless a page
polls; the request path is untouched.
"""

from __future__ import annotations

import time
from collections import deque
from importlib import resources
from typing import Any, Callable, Mapping

from aiohttp import web

from gateway import metrics
from gateway.tablejson import route_to_json
from gateway.tls import certificate_info

WINDOW_SECONDS = 30.0  # rates are averaged over (at most) this much history
MIN_SAMPLE_GAP = 1.0  # polls closer than this reuse the last sample
MAX_ROUTE_ROWS = 500  # a page is no place for 10,000 rows: the rest are counted
MAX_ENDPOINT_ROWS = 500
QUANTILES = (0.5, 0.95, 0.99)
# The page loads nothing from elsewhere and runs no inline script: say so to the browser.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}
DATA_HEADERS = {"Cache-Control": "no-store"}
# The page's files, served from memory; the names are the URLs under /dashboard/.
STATIC_FILES = {"dashboard.js": "text/javascript", "dashboard.css": "text/css"}

ControlPlane = Callable[[], Mapping[str, Any]]


# -- traffic: cumulative counters -> rates and percentiles ---------------------------------


class Sample:
    """Cumulative per-route counters at one moment: requests, 5xx answers, latency buckets."""

    __slots__ = ("at", "requests", "errors", "buckets")

    def __init__(self, at: float, requests: dict[str, int], errors: dict[str, int],
                 buckets: dict[str, list[float]]):
        self.at = at
        self.requests = requests
        self.errors = errors
        self.buckets = buckets  # route -> count per bucket (not cumulative), +Inf last


def take_sample(stats: metrics.RequestStats, at: float) -> Sample:
    requests: dict[str, int] = {}
    errors: dict[str, int] = {}
    for (route, _method, status), n in list(stats.requests.items()):
        requests[route] = requests.get(route, 0) + n
        if status >= 500:
            errors[route] = errors.get(route, 0) + n
    n_buckets = len(stats.buckets) + 1
    buckets = {route: list(d[:n_buckets]) for route, d in list(stats.durations.items())}
    return Sample(at, requests, errors, buckets)


def quantile(q: float, bounds: tuple[float, ...], counts: list[float]) -> float | None:
    """The ``q`` quantile of a histogram (per-bucket counts, +Inf last), as Prometheus's
    ``histogram_quantile`` estimates it: linear within the bucket it falls in. None when empty;
    the highest finite bound when it falls in +Inf."""
    total = sum(counts)
    if total <= 0:
        return None
    rank = q * total
    seen = 0.0
    for i, n in enumerate(counts):
        if n and seen + n >= rank:
            if i >= len(bounds):
                return bounds[-1]
            lower = bounds[i - 1] if i > 0 else 0.0
            return lower + (bounds[i] - lower) * (rank - seen) / n
        seen += n
    return bounds[-1]


def traffic(newest: Sample, oldest: Sample | None, bounds: tuple[float, ...]) -> list[dict]:
    """Per route: totals since start, and over ``oldest..newest`` the request and error
    rates and latency percentiles (None without two samples or without traffic)."""
    span = newest.at - oldest.at if oldest is not None else 0.0
    rows = []
    for route in sorted(newest.requests):
        total = newest.requests[route]
        row: dict[str, Any] = {
            "route": route,
            "requests": total,
            "errors": newest.errors.get(route, 0),
            "rate": None,
            "errorRate": None,
            "errorRatio": None,
            "latency": {f"p{round(q * 100)}": None for q in QUANTILES},
        }
        if oldest is not None and span > 0:
            n = total - oldest.requests.get(route, 0)
            e = newest.errors.get(route, 0) - oldest.errors.get(route, 0)
            row["rate"] = n / span
            row["errorRate"] = e / span
            row["errorRatio"] = e / n if n > 0 else None
            old = oldest.buckets.get(route)
            new = newest.buckets.get(route, [])
            delta = [c - (old[i] if old is not None else 0) for i, c in enumerate(new)]
            for q in QUANTILES:
                row["latency"][f"p{round(q * 100)}"] = quantile(q, bounds, delta)
        rows.append(row)
    return rows


class TrafficWindow:
    """Samples taken when the page polls, kept for ``window`` seconds, shared by every viewer."""

    def __init__(self, stats: metrics.RequestStats, window: float = WINDOW_SECONDS,
                 min_gap: float = MIN_SAMPLE_GAP, clock: Callable[[], float] = time.monotonic):
        self.stats = stats
        self.window = window
        self.min_gap = min_gap
        self.clock = clock
        self.samples: deque[Sample] = deque()

    def report(self) -> dict:
        now = self.clock()
        samples = self.samples
        if not samples or now - samples[-1].at >= self.min_gap:
            samples.append(take_sample(self.stats, now))
        while len(samples) > 2 and now - samples[1].at >= self.window:
            samples.popleft()  # keep one sample at (or just past) the window's start
        newest = samples[-1]
        oldest = samples[0] if len(samples) > 1 else None
        return {
            "windowSeconds": round(newest.at - oldest.at, 3) if oldest is not None else None,
            "routes": traffic(newest, oldest, self.stats.buckets),
        }


# -- the rest of the snapshot ------------------------------------------------------------


def _routes(table) -> dict:
    """The first ``MAX_ROUTE_ROWS`` routes in match order (and the fallback): only those are
    rendered, so a poll costs the same at 10,000 routes as at 500 (this runs on the proxy's loop)."""
    if table is None:
        return {"generation": None, "count": 0, "shown": [], "more": 0}
    ordered = table.routes
    rows = [route_to_json(r, table, i) for i, r in enumerate(ordered[:MAX_ROUTE_ROWS], 1)]
    count = len(ordered)
    if table.fallback is not None:
        count += 1
        if len(rows) < MAX_ROUTE_ROWS:
            rows.append(route_to_json(table.fallback, table, None))
    return {"generation": table.generation, "count": count, "shown": rows, "more": count - len(rows)}


def _endpoints(server) -> dict:
    """The backends of the table with their endpoints and passive-health state, at most
    ``MAX_ENDPOINT_ROWS`` rows (an endpoint, or a backend without any); ``more`` counts the rest."""
    table = server.table
    if table is None:
        return {"backends": [], "more": 0}
    pools = server.upstreams.pools
    now = time.monotonic()
    rows = []
    shown = 0
    for key in sorted(table.endpoints):
        if shown >= MAX_ENDPOINT_ROWS:
            break
        eset = table.endpoints[key]
        eps = []
        for ep in eset.endpoints[:MAX_ENDPOINT_ROWS - shown]:
            pool = pools.get(ep)
            # Read, never call ``ejected()``: that one also puts an endpoint back in rotation.
            left = pool.ejected_until - now if pool is not None and pool.ejected_until else 0.0
            eps.append({
                "address": f"{ep.host}:{ep.port}",
                "tls": ep.tls,
                "ejected": left > 0,
                "ejectedForSeconds": round(left, 1) if left > 0 else None,
                "ejections": pool.ejections if pool is not None else 0,
                "failures": pool.failures if pool is not None else 0,
                "active": pool.active if pool is not None else 0,
                "idle": len(pool.idle) if pool is not None else 0,
            })
        shown += max(1, len(eps))  # a backend without endpoints still takes a row
        rows.append({"backend": key, "state": eset.state, "count": len(eset.endpoints), "endpoints": eps})
    total = sum(max(1, len(e.endpoints)) for e in table.endpoints.values())
    return {"backends": rows, "more": max(0, total - shown)}


def _rate_limit(server, settings: Mapping[str, Any]) -> dict | None:
    lim = server.limiter
    if lim is None:
        return None
    return {"localKeys": lim.local_keys, "evictions": lim.evictions, **settings}


def _certificates(server) -> dict | None:
    store = server.certificates
    if store is None:
        return None  # no TLS listener
    rows = []
    for pattern, bundle in store.bundles():
        row = {"host": pattern, "source": bundle.source}
        row.update(certificate_info(bundle))
        rows.append(row)
    errors = [{"host": p, "error": why} for p, why in sorted(store.errors.items())]
    return {"serving": rows, "errors": errors}


def snapshot(server, window: TrafficWindow) -> dict:
    """Everything the page shows, as JSON-ready plain data. Read-only."""
    control: Mapping[str, Any] = {}
    if server.control_plane is not None:
        control = server.control_plane()
    table = server.table
    return {
        "now": time.time(),
        "ready": server.ready,
        "draining": server.draining,
        "table": {
            "generation": table.generation if table is not None else None,
            "routes": len(table) if table is not None else 0,
            "swappedAt": server.swapped_at,
        },
        "routes": _routes(table),
        "objects": list(control.get("objects", ())),
        "loadErrors": list(control.get("loadErrors", ())),
        "controller": dict(control.get("controller", {})),
        "traffic": window.report(),
        "upstreams": _endpoints(server),
        "rateLimit": _rate_limit(server, control.get("rateLimit", {})),
        "certificates": _certificates(server),
    }


# -- HTTP ---------------------------------------------------------------------------------


def _static(name: str) -> bytes:
    return resources.files("gateway").joinpath("static", name).read_bytes()


def add_page(app: web.Application) -> None:
    """``/`` (the page) and ``/dashboard/<file>`` (its script and style); the data is someone else's."""
    page = _static("dashboard.html")
    files = {name: (_static(name), ctype) for name, ctype in STATIC_FILES.items()}

    async def index(_: web.Request) -> web.Response:
        return web.Response(body=page, content_type="text/html", charset="utf-8", headers=PAGE_HEADERS)

    async def static(request: web.Request) -> web.Response:
        found = files.get(request.match_info["name"])
        if found is None:
            raise web.HTTPNotFound()
        body, ctype = found
        return web.Response(body=body, content_type=ctype, charset="utf-8", headers=PAGE_HEADERS)

    app.router.add_get("/", index)
    app.router.add_get("/dashboard/{name}", static)


def add_routes(app: web.Application, server) -> None:
    """The page, and ``/dashboard.json`` from this process's ``server``."""
    window = TrafficWindow(metrics.STATS)

    async def data(_: web.Request) -> web.Response:
        return web.json_response(snapshot(server, window), headers=DATA_HEADERS)

    add_page(app)
    app.router.add_get("/dashboard.json", data)


# -- several workers (crdgate/workers.py) ---------------------------------------------------


def merge_snapshots(snaps: list[dict], workers: int) -> dict:
    """One view of ``--workers`` processes from the snapshots of those that answered.

    Each worker compiles the same objects, so the table, objects, load errors
    and certificates are the first worker's. What each worker counts alone is
    added up: request and error rates and totals, rate-limit keys (each worker
    has its own Local store). Latency percentiles cannot be added: the highest
    of the workers' is shown (an upper bound). Ejection is passive health seen
    by one worker: an endpoint is shown ejected when any worker ejected it.
    """
    base = dict(snaps[0])
    base["workers"] = {"answered": len(snaps), "total": workers}
    base["ready"] = len(snaps) == workers and all(s["ready"] for s in snaps)
    routes: dict[str, dict] = {}
    for snap in snaps:
        for row in snap["traffic"]["routes"]:
            acc = routes.get(row["route"])
            if acc is None:
                routes[row["route"]] = {**row, "latency": dict(row["latency"])}
                continue
            for k in ("requests", "errors", "rate", "errorRate"):
                if acc[k] is None or row[k] is None:
                    acc[k] = acc[k] if row[k] is None else row[k]
                else:
                    acc[k] += row[k]
            for q, v in row["latency"].items():
                if v is not None and (acc["latency"][q] is None or v > acc["latency"][q]):
                    acc["latency"][q] = v
    for acc in routes.values():
        rate, err = acc["rate"], acc["errorRate"]
        acc["errorRatio"] = err / rate if rate and err is not None else None
    windows = [s["traffic"]["windowSeconds"] for s in snaps if s["traffic"]["windowSeconds"] is not None]
    base["traffic"] = {"windowSeconds": min(windows) if windows else None,
                       "routes": [routes[r] for r in sorted(routes)]}
    if base.get("rateLimit"):
        base["rateLimit"] = dict(base["rateLimit"],
                                 localKeys=sum((s.get("rateLimit") or {}).get("localKeys", 0) for s in snaps),
                                 evictions=sum((s.get("rateLimit") or {}).get("evictions", 0) for s in snaps))
    ejected: dict[tuple[str, str], dict] = {}
    for snap in snaps[1:]:
        for b in snap["upstreams"]["backends"]:
            for e in b["endpoints"]:
                if e["ejected"]:
                    ejected[(b["backend"], e["address"])] = e
    if ejected:
        backends = []
        for b in base["upstreams"]["backends"]:
            eps = []
            for e in b["endpoints"]:
                other = ejected.get((b["backend"], e["address"]))
                if other is not None and not e["ejected"]:
                    e = dict(e, ejected=True, ejectedForSeconds=other["ejectedForSeconds"])
                eps.append(e)
            backends.append(dict(b, endpoints=eps))
        base["upstreams"] = dict(base["upstreams"], backends=backends)
    return base
