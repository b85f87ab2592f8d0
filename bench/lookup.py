"""The route-lookup microbenchmark: ``RouteTable.match`` in-process, no sockets.

Tables of 10, 1,000 and --routes routes — half Prefix (``/svc<i>/v1``), half
Exact (``/svc<i>/health``), a tenth of them bound to a host — are queried with
request paths spread over the whole table (prefix hits two elements deeper than
the route, exact hits, and a 404 miss), and the time per lookup is the median
of a few repeats. The table promises a cost that follows the request path's
depth, not the number of routes: ``flatness`` (largest / smallest ns per
lookup) should stay near 1.

Those requests repeat, so after the first round every lookup is answered by
the table's memo. ``ns_per_walk`` times what a request path never seen
before costs (the memo misses and the table is walked): prefix hits whose
last element is new on every lookup, as paths with ids in them are. That is
what the proxy pays per request when its clients' distinct paths outnumber
the memo (gateway/routing.py ``memo_limit``).
"""

from __future__ import annotations

import random
import time

from gateway.routing import PATH_EXACT, PATH_PREFIX, BackendRef, Route, RouteTable

from .stats import median

REPEATS = 5
FLAT_LIMIT = 2.0  # flatness above this is reported as not flat


def build_table(n: int) -> RouteTable:
    backend = (BackendRef("bench/backend:80"),)
    routes = []
    for i in range(n):
        hosts = (f"api{i % 7}.example.com",) if i % 10 == 0 else ()
        if i % 2 == 0:
            routes.append(Route(f"bench/r{i}", "APIEndpoint", f"/svc{i}/v1", PATH_PREFIX, hosts, backends=backend))
        else:
            routes.append(Route(f"bench/r{i}", "APIEndpoint", f"/svc{i}/health", PATH_EXACT, hosts, backends=backend))
    return RouteTable(routes)


def requests_for(n: int, count: int = 1000, seed: int = 5) -> list[tuple[str, str]]:
    """(host, path) pairs that hit routes all over the table, plus 1 in 20 misses."""
    rng = random.Random(seed)
    out = []
    for k in range(max(count, 1)):
        if k % 20 == 19:
            out.append(("www.example.org", f"/nothing/{k}"))
            continue
        i = rng.randrange(n)
        host = f"api{i % 7}.example.com" if i % 10 == 0 else "www.example.org"
        path = f"/svc{i}/v1/items/{k}" if i % 2 == 0 else f"/svc{i}/health"
        out.append((host, path))
    return out


def ns_per_lookup(table: RouteTable, reqs: list[tuple[str, str]], iterations: int) -> float:
    match = table.match
    rounds = max(1, iterations // len(reqs))
    best = []
    for _ in range(REPEATS):
        t0 = time.perf_counter_ns()
        for _ in range(rounds):
            for host, path in reqs:
                match("GET", host, path)
        best.append((time.perf_counter_ns() - t0) / (rounds * len(reqs)))
    return median(best)


def unseen_requests(n: int, count: int, start: int = 0) -> list[tuple[str, str]]:
    """(host, path) pairs that each hit a Prefix route of the table with a path not asked before."""
    rng = random.Random(start + 11)
    out = []
    for k in range(start, start + max(count, 1)):
        i = rng.randrange(max(n // 2, 1)) * 2  # the even routes are the Prefix ones
        i = min(i, n - 1) if n > 1 else 0
        host = f"api{i % 7}.example.com" if i % 10 == 0 else "www.example.org"
        out.append((host, f"/svc{i}/v1/items/u{k}" if i % 2 == 0 else f"/svc{i}/health"))
    return out


def ns_per_walk(table: RouteTable, n: int, iterations: int) -> float:
    """Median over a few repeats of the time per lookup of a path the table has not seen."""
    count = max(100, min(iterations, 50_000))
    match = table.match
    times = []
    for rep in range(REPEATS):
        reqs = unseen_requests(n, count, start=rep * count)
        t0 = time.perf_counter_ns()
        for host, path in reqs:
            match("GET", host, path)
        times.append((time.perf_counter_ns() - t0) / len(reqs))
    return median(times)


def check(table: RouteTable, reqs: list[tuple[str, str]]) -> str:
    """'' if every request found what it should; the benchmark must time real matches."""
    for host, path in reqs[:50]:
        got = table.match("GET", host, path)
        if path.startswith("/nothing/"):
            if got.route is not None:
                return f"{path} matched {got.route.name}, expected 404"
        elif got.route is None:
            return f"{host}{path} found no route (status {got.status})"
    return ""


def run(sizes: tuple[int, ...], iterations: int, progress=None) -> dict:
    entries = []
    for n in sizes:
        if progress is not None:
            progress.update(f"lookup: {n:,} routes")
        t0 = time.perf_counter()
        table = build_table(n)
        build_ms = (time.perf_counter() - t0) * 1000
        reqs = requests_for(n)
        problem = check(table, reqs)
        if problem:
            return {"sizes": entries, "error": f"lookup at {n} routes: {problem}"}
        entries.append({"routes": n, "ns_per_lookup": round(ns_per_lookup(table, reqs, iterations), 1),
                        "ns_per_walk": round(ns_per_walk(table, n, iterations), 1),
                        "table_build_ms": round(build_ms, 2)})
    values = [e["ns_per_lookup"] for e in entries]
    flatness = max(values) / min(values) if values and min(values) > 0 else None
    return {"sizes": entries, "flatness": flatness, "flat": flatness is not None and flatness <= FLAT_LIMIT,
            "flat_limit": FLAT_LIMIT}
