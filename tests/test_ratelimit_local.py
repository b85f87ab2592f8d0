"""Local (per-process) rate limits: exact GCRA semantics on a controlled clock."""

from __future__ import annotations

import pytest

from gateway.ratelimit import (
    MISSING_HEADER_KEY,
    Decision,
    RateLimiter,
    policy_error,
    rate_limit_key,
)
from gateway.routing import RateLimitPolicy


class Clock:
    def __init__(self, t: float = 1000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


def limiter(clock: Clock, **kw) -> RateLimiter:
    return RateLimiter.from_config(None, clock=clock, **kw)


def admitted(lim: RateLimiter, policy: RateLimitPolicy, n: int, route: str = "ns/r", key: str = "k") -> int:
    return sum(lim.check(route, policy, key).allowed for _ in range(n))


def test_local_check_is_synchronous():
    lim = limiter(Clock())
    d = lim.check("ns/r", RateLimitPolicy(requests_per_minute=60), "k")
    assert type(d) is Decision


@pytest.mark.parametrize("burst", [0, 1, 5])
def test_at_rest_one_plus_burst_then_one_per_interval(burst):
    clock = Clock()
    lim = limiter(clock)
    p = RateLimitPolicy(requests_per_minute=120, burst=burst)  # one per 0.5 s
    assert admitted(lim, p, 1 + burst) == 1 + burst
    d = lim.check("ns/r", p, "k")
    assert not d.allowed and d.outcome == "limited"
    assert d.retry_after == pytest.approx(0.5)
    clock.t += 0.499
    assert not lim.check("ns/r", p, "k").allowed
    clock.t += 0.001
    assert lim.check("ns/r", p, "k").allowed
    assert not lim.check("ns/r", p, "k").allowed
    # Steady rate: exactly one per interval for a while.
    for _ in range(20):
        clock.t += 0.5
        assert admitted(lim, p, 3) == 1


def test_refill_is_gradual_and_capped_at_burst():
    clock = Clock()
    lim = limiter(clock)
    p = RateLimitPolicy(requests_per_minute=60, burst=3)  # one per second, 4 at once
    assert admitted(lim, p, 10) == 4
    clock.t += 2.0
    assert admitted(lim, p, 10) == 2
    clock.t += 3600.0  # a long rest refills no more than 1 + burst
    assert admitted(lim, p, 10) == 4


def test_denied_requests_cost_nothing():
    clock = Clock()
    lim = limiter(clock)
    p = RateLimitPolicy(requests_per_minute=60)
    assert lim.check("ns/r", p, "k").allowed
    for _ in range(50):
        assert not lim.check("ns/r", p, "k").allowed
    clock.t += 1.0
    assert lim.check("ns/r", p, "k").allowed


def test_decision_fields():
    clock = Clock()
    lim = limiter(clock)
    p = RateLimitPolicy(requests_per_minute=60, burst=2)
    d = lim.check("ns/r", p, "k")
    assert (d.allowed, d.limit, d.remaining, d.reset_after, d.retry_after) == (True, 3, 2, 1.0, 0.0)
    d = lim.check("ns/r", p, "k")
    assert (d.remaining, d.reset_after) == (1, 2.0)
    clock.t += 0.5
    d = lim.check("ns/r", p, "k")
    assert (d.remaining, d.reset_after) == (0, pytest.approx(2.5))
    d = lim.check("ns/r", p, "k")
    assert (d.allowed, d.remaining, d.outcome) == (False, 0, "limited")
    assert d.reset_after == pytest.approx(2.5)
    assert d.retry_after == pytest.approx(0.5)


def test_keys_and_routes_are_separate():
    lim = limiter(Clock())
    p = RateLimitPolicy(requests_per_minute=60, burst=1)
    assert admitted(lim, p, 5, key="a") == 2
    assert admitted(lim, p, 5, key="b") == 2
    assert admitted(lim, p, 5, route="ns/other", key="a") == 2
    assert admitted(lim, p, 5, key="a") == 0


def test_equal_policies_from_a_new_table_share_the_bucket():
    lim = limiter(Clock())
    assert admitted(lim, RateLimitPolicy(requests_per_minute=60), 3) == 1
    assert admitted(lim, RateLimitPolicy(requests_per_minute=60), 3) == 0


def test_tighter_policy_applies_at_once_looser_forgets_excess_debt():
    clock = Clock()
    lim = limiter(clock)
    slow = RateLimitPolicy(requests_per_minute=1, burst=4)  # 60 s interval: 300 s of debt
    assert admitted(lim, slow, 5) == 5
    fast = RateLimitPolicy(requests_per_minute=60)  # 1 s interval, 1 s window
    d = lim.check("ns/r", fast, "k")
    assert not d.allowed and d.retry_after == pytest.approx(1.0)
    clock.t += 1.0
    assert lim.check("ns/r", fast, "k").allowed


def test_idle_keys_expire():
    clock = Clock()
    lim = limiter(clock)
    p = RateLimitPolicy(requests_per_minute=60, burst=1)
    for i in range(100):
        lim.check("ns/r", p, f"k{i}")
    assert lim.local_keys == 100
    clock.t += 1.0  # everyone is back at rest
    for i in range(30):  # each new key drops a few at-rest ones
        lim.check("ns/r", p, f"new{i}")
    assert lim.local_keys == 30
    assert lim.evictions == 0


def test_memory_is_capped_and_least_recent_is_evicted():
    clock = Clock()
    lim = limiter(clock, max_keys=10)
    p = RateLimitPolicy(requests_per_minute=1)  # 60 s of debt per request
    lim.check("ns/r", p, "victim")
    for i in range(9):
        lim.check("ns/r", p, f"k{i}")
    assert not lim.check("ns/r", p, "victim").allowed  # still owes time
    lim.check("ns/r", p, "k0")  # denied: does not refresh k0
    for i in range(1000):
        lim.check("ns/r", p, f"flood{i}")
    assert lim.local_keys == 10
    assert lim.evictions == 1000
    # The flood evicted the victim's debt: that is the documented trade-off.
    assert lim.check("ns/r", p, "victim").allowed


def test_recently_admitted_key_survives_eviction():
    clock = Clock()
    lim = limiter(clock, max_keys=3)
    p = RateLimitPolicy(requests_per_minute=60, burst=10)
    for k in ("a", "b", "c"):
        lim.check("ns/r", p, k)
    lim.check("ns/r", p, "a")  # a is now the most recent
    lim.check("ns/r", p, "d")  # evicts b
    assert lim.evictions == 1
    assert lim.check("ns/r", p, "a").remaining == 8  # a kept its count: 3 of 11 used
    assert lim.check("ns/r", p, "b").remaining == 10  # b starts afresh


def test_long_keys_are_stored_as_digest():
    lim = limiter(Clock())
    p = RateLimitPolicy(requests_per_minute=60, key="Header", key_header="x-api-key")
    big = "x" * 100_000
    assert lim.check("ns/r", p, big).allowed
    assert not lim.check("ns/r", p, big).allowed
    assert lim.check("ns/r", p, big[:-1] + "y").allowed
    assert all(len(k) <= 64 for _, k in lim._store)


def test_global_without_redis_limits_locally(caplog):
    lim = limiter(Clock())
    p = RateLimitPolicy(requests_per_minute=60, scope="Global")
    d = lim.check("ns/r", p, "k")
    assert type(d) is Decision and d.allowed
    assert not lim.check("ns/r", p, "k").allowed
    assert sum("no Redis is configured" in r.message for r in caplog.records) == 1


def test_policy_error_names_the_field():
    assert policy_error(RateLimitPolicy(requests_per_minute=60)) is None
    assert "requestsPerMinute" in policy_error(RateLimitPolicy(requests_per_minute=0))
    assert "burst" in policy_error(RateLimitPolicy(requests_per_minute=1, burst=-1))
    assert "rateLimit.key " in policy_error(RateLimitPolicy(requests_per_minute=1, key="Cookie"))
    assert "keyHeader" in policy_error(RateLimitPolicy(requests_per_minute=1, key="Header"))
    assert "scope" in policy_error(RateLimitPolicy(requests_per_minute=1, scope="Cluster"))
    with pytest.raises(ValueError, match="requestsPerMinute"):
        limiter(Clock()).check("ns/r", RateLimitPolicy(requests_per_minute=0), "k")


def test_bad_settings_name_the_flag():
    with pytest.raises(ValueError, match="--ratelimit-redis-failure"):
        RateLimiter.from_config(None, failure_mode="maybe")
    with pytest.raises(ValueError, match="--ratelimit-max-keys"):
        RateLimiter.from_config(None, max_keys=0)


def test_key_extraction():
    hdrs = {"x-tenant": "acme"}
    addr = "203.0.113.7"
    k = lambda **kw: rate_limit_key(RateLimitPolicy(requests_per_minute=1, **kw), addr, "alice", hdrs)
    assert k() == addr
    assert k(key="Consumer") == "alice"
    anon = rate_limit_key(RateLimitPolicy(requests_per_minute=1, key="Consumer"), addr, None, hdrs)
    assert anon != addr and anon.endswith(addr)  # per address, apart from consumer names
    assert k(key="Header", key_header="x-tenant") == "acme"
    assert k(key="Header", key_header="x-other") == MISSING_HEADER_KEY
    assert k(key="Route") == ""
    assert rate_limit_key(RateLimitPolicy(requests_per_minute=1, key="Route"), "1.2.3.4") == k(key="Route")
