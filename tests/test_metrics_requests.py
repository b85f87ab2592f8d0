"""RequestStats: the request path only counts; labels are worked out when scraped."""

from __future__ import annotations

from gateway.metrics import RequestStats


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
