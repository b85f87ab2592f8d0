"""Global rate limits shared by replicas through a real redis-server."""

from __future__ import annotations

import inspect
import uuid

import pytest
import redis

from gateway.ratelimit import GCRA_SHA, REDIS_PREFIX, Decision, RateLimiter
from gateway.routing import RateLimitPolicy


def route() -> str:
    return f"test/{uuid.uuid4().hex[:12]}"


async def decide(lim: RateLimiter, name: str, policy: RateLimitPolicy, key: str) -> Decision:
    d = lim.check(name, policy, key)
    assert inspect.isawaitable(d)
    return await d


@pytest.fixture
async def pair(redis_server):
    """Two limiters on one Redis: two replicas as far as the limit can tell."""
    a = RateLimiter.from_config(redis_server, failure_mode="closed", timeout=1.0)
    b = RateLimiter.from_config(redis_server, failure_mode="closed", timeout=1.0)
    yield a, b
    await a.close()
    await b.close()


async def test_two_replicas_share_one_budget(pair):
    a, b = pair
    name = route()
    p = RateLimitPolicy(requests_per_minute=6, burst=3, scope="Global")  # 10 s interval
    got = [await decide(lim, name, p, "client") for lim in (a, b, a, b, a, b)]
    assert [d.allowed for d in got] == [True, True, True, True, False, False]
    assert [d.remaining for d in got[:4]] == [3, 2, 1, 0]
    assert all(d.outcome == "limited" for d in got[4:])
    # Redis's clock: the next request is ~10 s away (less the few ms spent here).
    assert 9.0 < got[4].retry_after <= 10.0
    assert 39.0 < got[4].reset_after <= 40.0
    # Another key and another route have their own budgets.
    assert (await decide(b, name, p, "other")).allowed
    assert (await decide(b, route(), p, "client")).allowed


async def test_bucket_key_hides_the_client_key_and_expires(pair, redis_server):
    a, _ = pair
    name = route()
    p = RateLimitPolicy(requests_per_minute=60, burst=1, key="Header", key_header="x-api-key", scope="Global")
    secret = "sk_live_do_not_store_me"
    assert (await decide(a, name, p, secret)).allowed
    sync = redis.Redis.from_url(redis_server)
    try:
        keys = sync.keys(REDIS_PREFIX + name + ":*")
        assert len(keys) == 1 and secret.encode() not in keys[0]
        ttl = sync.pttl(keys[0])
        assert 0 < ttl <= 1000  # gone once the client is back at rest
    finally:
        sync.close()


async def test_script_reloads_after_script_flush(pair, redis_server):
    a, _ = pair
    name = route()
    p = RateLimitPolicy(requests_per_minute=60, scope="Global")
    assert (await decide(a, name, p, "k")).outcome == "allowed"
    sync = redis.Redis.from_url(redis_server)
    try:
        sync.script_flush()
        assert sync.script_exists(GCRA_SHA) == [False]
        d = await decide(a, name, p, "k")
        assert d.outcome == "limited"  # a real answer, through the NOSCRIPT reload
        assert sync.script_exists(GCRA_SHA) == [True]
    finally:
        sync.close()


async def test_global_refill_uses_redis_time(pair):
    import asyncio

    a, b = pair
    name = route()
    p = RateLimitPolicy(requests_per_minute=600, scope="Global")  # 0.1 s interval
    assert (await decide(a, name, p, "k")).allowed
    d = await decide(b, name, p, "k")
    assert not d.allowed and 0 < d.retry_after <= 0.1
    await asyncio.sleep(d.retry_after + 0.01)
    assert (await decide(b, name, p, "k")).allowed


async def test_local_policy_never_touches_redis(pair):
    a, _ = pair
    d = a.check(route(), RateLimitPolicy(requests_per_minute=60), "k")
    assert type(d) is Decision and d.allowed


async def test_concurrent_checks_share_few_connections_and_stay_exact(redis_restartable):
    import asyncio

    lim = RateLimiter.from_config(redis_restartable.url, failure_mode="closed", timeout=2.0, max_inflight=2)
    try:
        p = RateLimitPolicy(requests_per_minute=6, burst=9, scope="Global")
        got = await asyncio.gather(*(lim.check("ns/r", p, "k") for _ in range(300)))
        assert sum(d.allowed for d in got) == 10
        assert sum(d.outcome == "limited" for d in got) == 290
        sync = redis.Redis.from_url(redis_restartable.url)
        try:
            clients = sync.info("clients")["connected_clients"] - 1  # not this one
        finally:
            sync.close()
        assert 1 <= clients <= 2  # one script call per connection, at most max_inflight
    finally:
        await lim.close()


async def test_one_script_call_carries_many_keys_and_policies_exactly(redis_restartable):
    """Checks of one loop turn share a script call: more than MAX_BATCH of them,
    repeated keys and different policies in the same call all stay exact."""
    import asyncio

    from gateway.ratelimit import MAX_BATCH

    lim = RateLimiter.from_config(redis_restartable.url, failure_mode="closed", timeout=2.0, max_inflight=1)
    try:
        strict = RateLimitPolicy(requests_per_minute=6, burst=0, scope="Global")
        loose = RateLimitPolicy(requests_per_minute=6, burst=99, scope="Global")
        checks = [lim.check("ns/batch", loose, "shared") for _ in range(2 * MAX_BATCH + 50)]
        checks += [lim.check("ns/batch", strict, f"own-{i % 3}") for i in range(9)]
        got = await asyncio.gather(*checks)
        shared, own = got[: 2 * MAX_BATCH + 50], got[2 * MAX_BATCH + 50:]
        assert sum(d.allowed for d in shared) == 100
        assert all(d.outcome in ("allowed", "limited") for d in got)
        assert sum(d.allowed for d in own) == 3  # one per distinct key
    finally:
        await lim.close()
