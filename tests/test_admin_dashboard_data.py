"""The dashboard's data (gateway/dashboard.py), without a browser: rates, percentiles, ejection, certificates."""

from __future__ import annotations

import json
import time

import pytest

from gateway import dashboard
from gateway.config import GatewayConfig
from gateway.dashboard import TrafficWindow, quantile
from gateway.metrics import RequestStats
from gateway.routing import Endpoint
from gateway.server import Server
from gateway.tls import CertificateStore
from proxyharness import route, table
from tlsharness import CA


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_quantile_interpolates_within_the_bucket_like_histogram_quantile():
    bounds = (0.1, 0.2, 0.4)
    # 10 in (0, 0.1], 10 in (0.1, 0.2], none above.
    assert quantile(0.5, bounds, [10, 10, 0, 0]) == pytest.approx(0.1)
    assert quantile(0.75, bounds, [10, 10, 0, 0]) == pytest.approx(0.15)
    assert quantile(0.25, bounds, [10, 10, 0, 0]) == pytest.approx(0.05)
    assert quantile(0.99, bounds, [0, 0, 0, 5]) == 0.4  # in +Inf: the highest finite bound
    assert quantile(0.5, bounds, [0, 0, 0, 0]) is None


def test_rates_and_percentiles_come_from_the_difference_between_samples():
    stats = RequestStats(buckets=(0.01, 0.1, 1.0))
    clock = Clock()
    window = TrafficWindow(stats, window=30.0, clock=clock)
    for _ in range(100):  # before the first poll: counted in the totals, not in the rates
        stats.record("shop/slow", "GET", 200, 0.5)
    first = window.report()
    assert first["windowSeconds"] is None
    assert first["routes"][0]["requests"] == 100 and first["routes"][0]["rate"] is None

    clock.now += 10
    for _ in range(18):
        stats.record("shop/fast", "GET", 200, 0.005)
    for _ in range(2):
        stats.record("shop/fast", "POST", 503, 0.05)
    report = window.report()
    assert report["windowSeconds"] == 10
    rows = {r["route"]: r for r in report["routes"]}
    fast = rows["shop/fast"]
    assert fast["requests"] == 20 and fast["errors"] == 2
    assert fast["rate"] == pytest.approx(2.0)
    assert fast["errorRate"] == pytest.approx(0.2)
    assert fast["errorRatio"] == pytest.approx(0.1)
    assert fast["latency"]["p50"] == pytest.approx(0.01 * 10 / 18)
    assert 0.01 < fast["latency"]["p99"] <= 0.1
    slow = rows["shop/slow"]
    assert slow["rate"] == 0 and slow["latency"]["p50"] is None  # nothing new in the window
    json.dumps(report)


def test_polls_share_samples_and_the_window_slides():
    stats = RequestStats()
    clock = Clock()
    window = TrafficWindow(stats, window=30.0, min_gap=1.0, clock=clock)
    window.report()
    clock.now += 0.2
    window.report()  # a second viewer, a moment later: no new sample
    assert len(window.samples) == 1
    for _ in range(100):
        clock.now += 2
        stats.record("a/b", "GET", 200, 0.001)
        window.report()
    assert 15 <= len(window.samples) <= 17  # ~30 s of samples two seconds apart, not 100
    assert window.report()["windowSeconds"] == pytest.approx(30.0, abs=2.0)
    assert window.report()["routes"][0]["rate"] == pytest.approx(0.5)


async def test_snapshot_shows_ejection_and_certificates_but_never_a_key():
    ca = CA()
    issued = ca.issue("shop.example.com", "www.shop.example.com")
    store = CertificateStore()
    store.update({"shop.example.com": issued.bundle("Secret shop/shop-tls")})
    server = Server(GatewayConfig(listen=("127.0.0.1", 0), access_log=False), certificates=store)
    a, b = Endpoint("127.0.0.1", 9001), Endpoint("127.0.0.1", 9002)
    server.swap(table([route("shop/items", "/items", "shop/items:80")], {"shop/items:80": (a, b)}, generation=7))
    pool = server.upstreams.pool(a)
    for _ in range(5):
        pool.failed("shop/items:80", peers=2)
    server.control_plane = lambda: {"objects": [{"kind": "APIEndpoint", "namespace": "shop", "name": "items",
                                                  "state": "Ready", "reason": "Ready", "message": "routed",
                                                  "conditions": []}]}

    snap = dashboard.snapshot(server, TrafficWindow(RequestStats()))
    body = json.dumps(snap)

    assert snap["table"]["generation"] == 7 and snap["table"]["swappedAt"] == pytest.approx(time.time(), abs=60)
    assert [r["name"] for r in snap["routes"]["shown"]] == ["shop/items"]
    assert snap["objects"][0]["name"] == "items"
    (backend,) = snap["upstreams"]["backends"]
    eps = {e["address"]: e for e in backend["endpoints"]}
    assert eps["127.0.0.1:9001"]["ejected"] and eps["127.0.0.1:9001"]["ejectedForSeconds"] > 0
    assert not eps["127.0.0.1:9002"]["ejected"]
    assert pool.ejected_until > 0, "reading the dashboard must not put an endpoint back in rotation"
    (cert,) = snap["certificates"]["serving"]
    assert cert["host"] == "shop.example.com" and cert["source"] == "Secret shop/shop-tls"
    assert cert["dnsNames"] == ["shop.example.com", "www.shop.example.com"]
    assert cert["notAfterUnix"] > time.time()
    key_body = b"".join(issued.key_pem.splitlines()[1:-1]).decode()
    assert "PRIVATE KEY" not in body and key_body[:40] not in body


def _snap(requests: int, rate: float | None, p99: float | None, keys: int, ejected: bool) -> dict:
    return {
        "ready": True,
        "traffic": {"windowSeconds": 10.0, "routes": [
            {"route": "a/b", "requests": requests, "errors": 1, "rate": rate, "errorRate": 0.1 if rate else None,
             "errorRatio": None, "latency": {"p50": 0.001, "p95": 0.002, "p99": p99}}]},
        "rateLimit": {"localKeys": keys, "evictions": 0, "maxKeys": 10},
        "upstreams": {"backends": [{"backend": "a/s:80", "state": "Ready", "count": 1, "endpoints": [
            {"address": "10.0.0.1:80", "ejected": ejected, "ejectedForSeconds": 4.0 if ejected else None}]}],
            "more": 0},
    }


def test_merge_adds_up_what_each_worker_counts_alone():
    merged = dashboard.merge_snapshots([_snap(10, 1.0, 0.01, 3, False), _snap(30, 3.0, 0.05, 4, True)], workers=3)
    (row,) = merged["traffic"]["routes"]
    assert row["requests"] == 40 and row["errors"] == 2
    assert row["rate"] == pytest.approx(4.0) and row["errorRate"] == pytest.approx(0.2)
    assert row["errorRatio"] == pytest.approx(0.05)
    assert row["latency"]["p99"] == 0.05  # the highest: percentiles do not add up
    assert merged["rateLimit"]["localKeys"] == 7
    assert merged["upstreams"]["backends"][0]["endpoints"][0]["ejected"] is True
    assert merged["workers"] == {"answered": 2, "total": 3} and merged["ready"] is False


def test_a_big_table_costs_a_bounded_poll():
    n = dashboard.MAX_ROUTE_ROWS + 100
    eps = {f"ns/s{i}:80": (Endpoint("10.0.0.1", 1000 + i), Endpoint("10.0.0.2", 1000 + i)) for i in range(n)}
    routes = [route(f"ns/r{i}", f"/p{i:04d}", f"ns/s{i}:80") for i in range(n)]
    server = Server(GatewayConfig(listen=("127.0.0.1", 0), access_log=False))
    server.swap(table(routes, eps))
    snap = dashboard.snapshot(server, TrafficWindow(RequestStats()))
    assert len(snap["routes"]["shown"]) == dashboard.MAX_ROUTE_ROWS
    assert snap["routes"]["count"] == n and snap["routes"]["more"] == 100
    assert [r["priority"] for r in snap["routes"]["shown"][:3]] == [1, 2, 3]
    shown = sum(len(b["endpoints"]) for b in snap["upstreams"]["backends"])
    assert shown == dashboard.MAX_ENDPOINT_ROWS
    assert snap["upstreams"]["more"] == 2 * n - shown
