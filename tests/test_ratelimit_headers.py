"""RateLimit-Policy, RateLimit and Retry-After values (draft-ietf-httpapi-ratelimit-headers-11)."""

from __future__ import annotations

from gateway.ratelimit import OUTCOME_FAILCLOSED, OUTCOME_FAILOPEN, RateLimiter
from gateway.routing import RateLimitPolicy


class Clock:
    def __init__(self, t: float = 500.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_headers_through_a_burst_and_a_denial():
    clock = Clock()
    lim = RateLimiter.from_config(None, clock=clock)
    p = RateLimitPolicy(requests_per_minute=6, burst=2)  # one per 10 s, 3 at once
    policy = (b"ratelimit-policy", b'"default";q=6;w=60;crdgate-burst=2')
    seen = [lim.headers(p, lim.check("ns/r", p, "k")) for _ in range(3)]
    assert seen == [
        [policy, (b"ratelimit", b'"default";r=2;t=10')],
        [policy, (b"ratelimit", b'"default";r=1;t=10')],
        [policy, (b"ratelimit", b'"default";r=0;t=10')],
    ]
    clock.t += 2.5
    assert lim.headers(p, lim.check("ns/r", p, "k")) == [
        policy,
        (b"ratelimit", b'"default";r=0;t=8'),
        (b"retry-after", b"8"),
    ]
    clock.t += 7.5  # one request's worth back
    assert lim.headers(p, lim.check("ns/r", p, "k")) == [policy, (b"ratelimit", b'"default";r=0;t=10')]
    clock.t += 25.0  # 2.5 requests back, one used: r=1, the next one in 5 s
    assert lim.headers(p, lim.check("ns/r", p, "k")) == [policy, (b"ratelimit", b'"default";r=1;t=5')]


def test_no_burst_parameter_without_burst_and_subsecond_rounding():
    clock = Clock()
    lim = RateLimiter.from_config(None, clock=clock)
    p = RateLimitPolicy(requests_per_minute=600)  # one per 0.1 s
    assert lim.headers(p, lim.check("ns/r", p, "k")) == [
        (b"ratelimit-policy", b'"default";q=600;w=60'),
        (b"ratelimit", b'"default";r=0;t=1'),
    ]
    clock.t += 0.05
    h = lim.headers(p, lim.check("ns/r", p, "k"))
    assert h[2] == (b"retry-after", b"1")  # 0.05 s rounds up, never to 0
    assert h[1] == (b"ratelimit", b'"default";r=0;t=1')


def test_failure_decisions():
    lim = RateLimiter.from_config(None)
    p = RateLimitPolicy(requests_per_minute=60, scope="Global")
    plan = lim._plan(p)
    assert plan.fail_open.outcome == OUTCOME_FAILOPEN and plan.fail_open.allowed
    assert lim.headers(p, plan.fail_open) == [(b"ratelimit-policy", b'"default";q=60;w=60')]
    assert plan.fail_closed.outcome == OUTCOME_FAILCLOSED and not plan.fail_closed.allowed
    assert lim.headers(p, plan.fail_closed) == [
        (b"ratelimit-policy", b'"default";q=60;w=60'),
        (b"ratelimit", b'"default";r=0;t=1'),
        (b"retry-after", b"1"),
    ]
