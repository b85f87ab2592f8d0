"""Global limits with leases: a process takes several requests of a busy key from Redis at once.

The over-admission bound (docs/rate-limiting.md): R processes admit at most
``R * lease_max`` more than one exact shared GCRA would, where ``lease_max`` is
``min(--ratelimit-redis-lease, (1 + burst) // 16)``, at least 1.
"""

from __future__ import annotations

import asyncio
import inspect
import socket
import uuid

import pytest
from gateway.ratelimit import LEASE_SECONDS, OUTCOME_ALLOWED, OUTCOME_FAILCLOSED, Decision, RateLimiter
from gateway.routing import RateLimitPolicy


def route() -> str:
    return f"test/{uuid.uuid4().hex[:12]}"


async def decide(lim: RateLimiter, name: str, policy: RateLimitPolicy, key: str) -> Decision:
    d = lim.check(name, policy, key)
    if inspect.isawaitable(d):
        d = await d
    return d


def _evalsha_calls(port: int) -> int:
    """EVALSHA calls Redis has served since it started (INFO commandstats, read as raw RESP)."""
    with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
        s.sendall(b"*2\r\n$4\r\nINFO\r\n$12\r\ncommandstats\r\n")
        buf = b""
        while b"\r\n" not in buf or len(buf) < _bulk_end(buf):
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    for line in buf.decode().splitlines():
        if line.startswith("cmdstat_evalsha:"):
            return int(line.split("calls=")[1].split(",")[0])
    return 0


async def warmed(lim: RateLimiter, p: RateLimitPolicy, port: int) -> int:
    """Load the script (the first call of a fresh Redis is a NOSCRIPT reply) and return the call count."""
    await decide(lim, route(), p, "warm-up")
    return _evalsha_calls(port)


def _bulk_end(buf: bytes) -> int:
    head = buf.partition(b"\r\n")[0]
    return len(head) + 2 + int(head[1:]) + 2


@pytest.fixture
def server(redis_restartable):
    return redis_restartable  # a server of this test alone: its call counts are the test's


async def test_a_busy_key_takes_leases_instead_of_one_round_trip_per_request(server):
    lim = RateLimiter.from_config(server.url, failure_mode="closed", timeout=1.0)
    p = RateLimitPolicy(requests_per_minute=600_000, burst=9_999, scope="Global")
    try:
        name, before = route(), await warmed(lim, p, server.port)
        got = [await decide(lim, name, p, "client") for _ in range(1000)]
        assert all(d.allowed and d.outcome == OUTCOME_ALLOWED for d in got)
        calls = _evalsha_calls(server.port) - before
        # Leases of 1, 2, 4 ... 625 (10,000 // 16) requests: a few dozen calls, not 1000.
        assert calls <= 60, calls
    finally:
        await lim.close()


async def test_lease_of_one_asks_redis_for_every_request(server):
    lim = RateLimiter.from_config(server.url, failure_mode="closed", timeout=1.0, lease_max=1)
    p = RateLimitPolicy(requests_per_minute=600_000, burst=9_999, scope="Global")
    try:
        name, before = route(), await warmed(lim, p, server.port)
        got = [await decide(lim, name, p, "client") for _ in range(200)]
        assert all(d.allowed for d in got)
        assert _evalsha_calls(server.port) - before == 200
    finally:
        await lim.close()


async def test_small_bursts_are_exact_whatever_the_lease_setting(server):
    # (1 + burst) // 16 < 2: no lease, every request is one shared GCRA step.
    lim = RateLimiter.from_config(server.url, failure_mode="closed", timeout=1.0)
    p = RateLimitPolicy(requests_per_minute=6, burst=30, scope="Global")  # 10 s interval
    try:
        name, before = route(), await warmed(lim, p, server.port)
        got = [(await decide(lim, name, p, "client")).allowed for _ in range(40)]
        assert got == [True] * 31 + [False] * 9
        assert _evalsha_calls(server.port) - before == 40
    finally:
        await lim.close()


async def test_two_processes_stay_within_the_stated_bound(server):
    # 100 at once, then one a minute; lease_max = 100 // 16 = 6 per process.
    rpm, burst, processes = 1, 99, 2
    a = RateLimiter.from_config(server.url, failure_mode="closed", timeout=1.0)
    b = RateLimiter.from_config(server.url, failure_mode="closed", timeout=1.0)
    p = RateLimitPolicy(requests_per_minute=rpm, burst=burst, scope="Global")
    try:
        name = route()
        admitted = {id(a): 0, id(b): 0}
        for i in range(400):
            lim = (a, b)[i % 2]
            admitted[id(lim)] += (await decide(lim, name, p, "client")).allowed
        total = sum(admitted.values())
        lease_max = (1 + burst) // 16
        assert 1 + burst - processes * lease_max <= total <= 1 + burst + processes * lease_max, admitted
        assert all(n > 0 for n in admitted.values()), admitted
    finally:
        await a.close()
        await b.close()


async def test_concurrent_checks_in_two_processes_stay_within_the_stated_bound(server):
    # Checks made in one loop turn while a lease is being fetched go to Redis one by one.
    rpm, burst, processes = 1, 99, 2
    a = RateLimiter.from_config(server.url, failure_mode="closed", timeout=2.0)
    b = RateLimiter.from_config(server.url, failure_mode="closed", timeout=2.0)
    p = RateLimitPolicy(requests_per_minute=rpm, burst=burst, scope="Global")
    try:
        name, total = route(), 0
        for _ in range(8):  # waves of 25 concurrent checks per process
            got = await asyncio.gather(*(decide(lim, name, p, "client") for lim in (a, b) for _ in range(25)))
            total += sum(d.allowed for d in got)
        lease_max = (1 + burst) // 16
        assert 1 + burst - processes * lease_max <= total <= 1 + burst + processes * lease_max, total
    finally:
        await a.close()
        await b.close()


async def test_headers_count_down_on_leased_requests(server):
    lim = RateLimiter.from_config(server.url, failure_mode="closed", timeout=1.0)
    p = RateLimitPolicy(requests_per_minute=60, burst=999, scope="Global")  # one a second, 1000 at once
    try:
        name = route()
        got = [await decide(lim, name, p, "client") for _ in range(300)]
        for k, d in enumerate(got):
            # remaining after k + 1 admissions; a second may pass and give one back.
            assert 999 - k <= d.remaining <= 1000 - k, (k, d)
            assert d.limit == 1000
            fields = dict(lim.headers(p, d))
            assert fields[b"ratelimit"].startswith(b'"default";r=%d;' % d.remaining)
    finally:
        await lim.close()


async def test_unused_leases_expire_and_the_key_asks_redis_again(server):
    now = [1000.0]
    lim = RateLimiter.from_config(server.url, failure_mode="closed", timeout=1.0, clock=lambda: now[0])
    p = RateLimitPolicy(requests_per_minute=600_000, burst=9_999, scope="Global")
    try:
        name = route()
        await warmed(lim, p, server.port)
        for _ in range(20):  # the lease has grown past one
            await decide(lim, name, p, "client")
        before = _evalsha_calls(server.port)
        assert (await decide(lim, name, p, "client")).allowed
        assert _evalsha_calls(server.port) == before, "a leased request needs no round trip"
        now[0] += LEASE_SECONDS + 0.1  # what is left of the lease is dropped
        assert (await decide(lim, name, p, "client")).allowed
        assert _evalsha_calls(server.port) == before + 1
    finally:
        await lim.close()


async def test_leased_requests_admit_while_redis_is_down_then_the_failure_mode_applies(server):
    lim = RateLimiter.from_config(server.url, failure_mode="closed", timeout=0.2)
    p = RateLimitPolicy(requests_per_minute=600_000, burst=9_999, scope="Global")
    try:
        name = route()
        for _ in range(20):  # leases of 1, 2, 4, 8: some are held now
            await decide(lim, name, p, "client")
        server.stop()
        outcomes = [(await decide(lim, name, p, "client")).outcome for _ in range(300)]
        # Requests already taken from Redis are admitted; then Redis's absence shows.
        leased = outcomes.index(OUTCOME_FAILCLOSED)
        assert 1 <= leased <= 625, outcomes[:20]
        assert set(outcomes[:leased]) == {OUTCOME_ALLOWED}
        assert set(outcomes[leased:]) == {OUTCOME_FAILCLOSED}
    finally:
        await lim.close()
