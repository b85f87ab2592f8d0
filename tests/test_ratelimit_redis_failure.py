"""Global limits when Redis is down, restarted or too slow: the failure mode decides."""

from __future__ import annotations

import logging
import time

import pytest

from gateway.metrics import REGISTRY
from gateway.ratelimit import RateLimiter
from gateway.routing import RateLimitPolicy
from polling import eventually

POLICY = RateLimitPolicy(requests_per_minute=6, burst=1, scope="Global")


def redis_errors() -> float:
    return REGISTRY.get_sample_value("crdgate_ratelimit_redis_errors_total") or 0.0


def redis_calls() -> float:
    return REGISTRY.get_sample_value("crdgate_ratelimit_redis_seconds_count") or 0.0


@pytest.mark.parametrize("mode,allowed,outcome", [("open", True, "failopen"), ("closed", False, "failclosed")])
async def test_redis_stopped_then_restarted(redis_restartable, mode, allowed, outcome):
    lim = RateLimiter.from_config(redis_restartable.url, failure_mode=mode, timeout=0.5)
    try:
        assert (await lim.check("ns/r", POLICY, "k")).outcome == "allowed"
        redis_restartable.stop()
        errors, calls = redis_errors(), redis_calls()
        d = await lim.check("ns/r", POLICY, "k")
        assert (d.allowed, d.outcome) == (allowed, outcome)
        assert redis_errors() == errors + 1
        assert redis_calls() == calls + 1
        # Back on the same port, empty (no persistence) and without our script:
        # the same limiter reconnects and reloads it by itself.
        redis_restartable.start()
        got = [await lim.check("ns/r", POLICY, "k") for _ in range(3)]
        assert [d.outcome for d in got] == ["allowed", "allowed", "limited"]
        assert redis_errors() == errors + 1
    finally:
        await lim.close()


async def test_slow_redis_times_out_into_the_failure_mode(redis_restartable):
    lim = RateLimiter.from_config(redis_restartable.url, failure_mode="closed", timeout=0.05)
    try:
        assert (await lim.check("ns/r", POLICY, "k")).allowed  # connected, script loaded
        errors = redis_errors()
        redis_restartable.pause(3000)
        started = time.monotonic()
        d = await lim.check("ns/r", POLICY, "k")
        waited = time.monotonic() - started
        assert d.outcome == "failclosed"
        assert waited < 2.0  # answered long before Redis woke up: the deadline applied
        assert redis_errors() == errors + 1
        redis_restartable.unpause()
        # A call that timed out may still have been counted once Redis woke up,
        # so only a fresh key's answer is certain; both are real answers.
        assert (await lim.check("ns/r", POLICY, "k")).outcome in ("allowed", "limited")
        assert (await lim.check("ns/r", POLICY, "fresh")).outcome == "allowed"
        assert redis_errors() == errors + 1
    finally:
        await lim.close()


async def test_errors_are_logged_once_per_period_not_per_request(redis_restartable, caplog):
    clock_t = [100.0]
    lim = RateLimiter.from_config(redis_restartable.url, failure_mode="open", timeout=0.5, clock=lambda: clock_t[0])
    try:
        redis_restartable.stop()
        with caplog.at_level(logging.WARNING, logger="crdgate.ratelimit"):
            for _ in range(20):
                assert (await lim.check("ns/r", POLICY, "k")).outcome == "failopen"
            clock_t[0] += 10.0
            for _ in range(5):
                await lim.check("ns/r", POLICY, "k")
            redis_restartable.start()
            assert (await lim.check("ns/r", POLICY, "k")).outcome == "allowed"
        lines = [r.getMessage() for r in caplog.records if r.name == "crdgate.ratelimit"]
        assert len(lines) == 3, lines
        assert "failed 1 time(s)" in lines[0]
        assert "failed 20 time(s)" in lines[1]  # 19 more, then the first after 10 s
        assert "answers again after 25 failed call(s)" in lines[2]
        assert all(f"127.0.0.1:{redis_restartable.port}" in line for line in lines)
    finally:
        await lim.close()


async def test_url_password_never_logged(redis_restartable, caplog):
    url = redis_restartable.url.replace("redis://", "redis://user:hunter2@")
    lim = RateLimiter.from_config(url, failure_mode="open", timeout=0.5)
    try:
        with caplog.at_level(logging.WARNING, logger="crdgate.ratelimit"):
            await lim.check("ns/r", POLICY, "k")  # AUTH fails: an error, logged
        assert caplog.records
        assert not any("hunter2" in r.getMessage() for r in caplog.records)
    finally:
        await lim.close()


async def test_ping(redis_restartable):
    lim = RateLimiter.from_config(redis_restartable.url, timeout=0.2)
    try:
        assert await lim.ping()
        redis_restartable.stop()
        assert not await lim.ping()
    finally:
        await lim.close()
    assert await RateLimiter.from_config(None).ping()


@pytest.mark.parametrize("mode,status", [("open", 200), ("closed", 429)])
async def test_proxy_answers_by_the_failure_mode_while_redis_hangs(redis_restartable, mode, status):
    """Through the proxy: a Global check waiting on a stalled Redis is answered
    at its deadline, and the connection keeps working for the next request."""
    from gateway.config import GatewayConfig, Limits
    from gateway.routing import RoutePolicy
    from gateway.server import Server
    from proxyharness import proxy_port, request, route, start_backend, table

    backend = await start_backend("b")
    policy = RoutePolicy(rate_limit=RateLimitPolicy(requests_per_minute=600, burst=100, scope="Global"))
    tbl = table([route("ns/g", "/g", ("ns/b:80",), policy=policy)], {"ns/b:80": (backend.endpoint,)})
    lim = RateLimiter.from_config(redis_restartable.url, failure_mode=mode, timeout=0.2)
    server = Server(GatewayConfig(listen=("127.0.0.1", 0), access_log=False, limits=Limits()), limiter=lim)
    server.swap(tbl)
    await server.start()
    port = proxy_port(server)
    try:
        assert (await request(port, path="/g")).status == 200  # connected, script loaded
        redis_restartable.pause(2000)
        started = time.monotonic()
        r = await request(port, path="/g")
        assert r.status == status
        assert time.monotonic() - started < 1.5  # the deadline, not Redis waking up
        if status == 429:
            assert r.headers["retry-after"] == "1"
        redis_restartable.unpause()

        async def admitted():
            return (await request(port, path="/g")).status == 200

        await eventually(admitted, 5, "admission once Redis answers again")
    finally:
        redis_restartable.unpause()
        await server.close()
        await backend.runner.cleanup()
