"""RequestStats: the request path only counts; labels are worked out when scraped."""

from __future__ import annotations

import pytest

from gateway.metrics import RequestStats
from gateway.routing import Route


def samples(stats: RequestStats) -> dict:
    out = {}
    for family in stats.collect():
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_status_classes_methods_and_histogram():
    stats = RequestStats(buckets=(0.01, 0.1))
    stats.record("ns/a", "GET", 200, 0.005)
    stats.record("ns/a", "GET", 204, 0.05)
    stats.record("ns/a", "PROPFIND", 404, 0.5)  # a method llhttp knows that we do not list
    stats.record("-", "GET", 99, 0.001)
    got = samples(stats)
    req = "crdgate_requests_total"
    assert got[(req, (("code", "2xx"), ("method", "GET"), ("route", "ns/a")))] == 2
    assert got[(req, (("code", "4xx"), ("method", "OTHER"), ("route", "ns/a")))] == 1
    assert got[(req, (("code", "other"), ("method", "GET"), ("route", "-")))] == 1
    hist = "crdgate_request_duration_seconds_bucket"
    assert got[(hist, (("le", "0.01"), ("route", "ns/a")))] == 1
    assert got[(hist, (("le", "0.1"), ("route", "ns/a")))] == 2
    assert got[(hist, (("le", "+Inf"), ("route", "ns/a")))] == 3
    assert got[("crdgate_request_duration_seconds_count", (("route", "ns/a"),))] == 3


def test_histogram_bounds_are_inclusive_and_every_bucket_is_reachable():
    bounds = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
    stats = RequestStats(buckets=bounds)
    # One duration exactly on each bound ("le" is inclusive), one just above the last.
    for b in bounds:
        stats.record("ns/a", "GET", 200, b)
    stats.record("ns/a", "GET", 200, 2.5000001)
    got = samples(stats)
    hist = "crdgate_request_duration_seconds_bucket"
    for i, b in enumerate(bounds):
        assert got[(hist, (("le", repr(b)), ("route", "ns/a")))] == i + 1
    assert got[(hist, (("le", "+Inf"), ("route", "ns/a")))] == len(bounds) + 1
    assert got[("crdgate_request_duration_seconds_sum", (("route", "ns/a"),))] == sum(bounds) + 2.5000001


def test_runs_of_one_key_are_counted_when_read():
    """Requests of the same route, method and status are counted as a run; every read
    of ``requests`` (the scrape, the dashboard) sees all of them, whatever came between."""
    stats = RequestStats(buckets=(0.01,))
    for _ in range(3):
        stats.record("ns/a", "GET", 200, 0.001)
    assert stats.requests == {("ns/a", "GET", 200): 3}
    stats.record("ns/a", "GET", 200, 0.001)  # the same run, read again
    stats.record("ns/b", "GET", 200, 0.001)
    stats.record("ns/a", "GET", 200, 0.001)  # the first key again, after another
    stats.record("ns/a", "GET", 503, 0.02)
    # an equal route name that is another str object (a new table's route) joins the same key
    stats.record("".join(["ns/", "a"]), "GET", 503, 0.02)
    assert stats.requests == {("ns/a", "GET", 200): 5, ("ns/b", "GET", 200): 1, ("ns/a", "GET", 503): 2}
    got = samples(stats)
    assert got[("crdgate_requests_total", (("code", "2xx"), ("method", "GET"), ("route", "ns/a")))] == 5
    assert got[("crdgate_request_duration_seconds_count", (("route", "ns/a"),))] == 7
    assert got[("crdgate_request_duration_seconds_bucket", (("le", "0.01"), ("route", "ns/a")))] == 5


def test_requests_spread_over_many_routes_each_keep_their_own_runs():
    """Requests that alternate between routes (a load spread over a large table) are
    counted per route, each route's run of one method and status kept apart from the
    others', and a run that changes status mid-way on one route is split correctly."""
    stats = RequestStats(buckets=(0.01,))
    routes = [f"ns/r-{i}" for i in range(50)]
    for _ in range(4):
        for r in routes:
            stats.record(r, "GET", 200, 0.001)
    stats.record("ns/r-7", "GET", 503, 0.02)
    stats.record("ns/r-8", "POST", 200, 0.001)
    stats.record("ns/r-7", "GET", 200, 0.001)
    got = stats.requests
    assert got[("ns/r-7", "GET", 200)] == 5 and got[("ns/r-7", "GET", 503)] == 1
    assert got[("ns/r-8", "GET", 200)] == 4 and got[("ns/r-8", "POST", 200)] == 1
    assert all(got[(r, "GET", 200)] == 4 for r in routes if r not in ("ns/r-7",))
    assert sum(got.values()) == 4 * 50 + 3
    # Reading twice adds nothing twice; the histogram counted every request of each route.
    assert stats.requests == got
    # ([count per bucket..., above the last bound, sum])
    assert list(stats.durations["ns/r-7"][:2]) == [5, 1] and list(stats.durations["ns/r-0"][:2]) == [4, 0]


def test_requests_recorded_by_route_object_count_under_its_name():
    """The proxy records by Route (its counters cached on it): the counts are the same
    as by name, a changed route (a new Route of the same name) carries on the same
    counts, a route seen by two gateways counts in each one's own stats, and no route
    counts under "-"."""
    one, other = RequestStats(buckets=(0.01,)), RequestStats(buckets=(0.01,))
    first = Route(name="ns/a", kind="APIEndpoint", path="/a")
    for _ in range(3):
        one.record_route(first, "GET", 200, 0.001)
    changed = Route(name="ns/a", kind="APIEndpoint", path="/a2")  # the object changed: a new Route
    one.record_route(changed, "GET", 200, 0.02)
    one.record_route(changed, "GET", 503, 0.001)
    one.record("ns/a", "GET", 200, 0.001)  # by name: the same counters
    other.record_route(first, "POST", 200, 0.001)
    one.record_route(None, "GET", 404, 0.001)
    assert one.requests == {("ns/a", "GET", 200): 5, ("ns/a", "GET", 503): 1, ("-", "GET", 404): 1}
    assert other.requests == {("ns/a", "POST", 200): 1}
    assert list(one.durations["ns/a"][:2]) == [5, 1] and one.durations["ns/a"][2] == pytest.approx(0.025)
    assert list(other.durations["ns/a"]) == [1, 0, 0.001]
    assert first.counters is not None and first.counters.name == "ns/a"
