"""Two OS processes (two replicas) hammering one Global key share one budget."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time


RPM, BURST, SECONDS = 1200, 4, 1.5  # one per 50 ms, 5 at once, for 1.5 s

REPLICA = r"""
import asyncio, json, os, sys, time
from gateway.metrics import REGISTRY
from gateway.ratelimit import RateLimiter
from gateway.routing import RateLimitPolicy

url, route, seconds, rpm, burst = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])

async def main():
    lim = RateLimiter.from_config(url, failure_mode="closed", timeout=0.5)
    policy = RateLimitPolicy(requests_per_minute=rpm, burst=burst, scope="Global")
    assert await lim.ping()
    # Connected: say so, and take the common start time from the test (a loaded
    # host may take seconds to start an interpreter, so no start is fixed in advance).
    print("ready", flush=True)
    start = float(sys.stdin.readline())
    stop = start + seconds
    while time.time() < start:
        await asyncio.sleep(0.005)
    async def redis_now():
        seconds, micros = await lim._redis.time()
        return seconds * 1_000_000 + micros

    admitted = checks = 0
    first = await redis_now()
    while time.time() < stop:
        d = await lim.check(route, policy, "shared-client")
        admitted += d.allowed
        checks += 1
    last = await redis_now()
    await lim.close()
    errors = REGISTRY.get_sample_value("crdgate_ratelimit_redis_errors_total") or 0
    print(json.dumps({"pid": os.getpid(), "admitted": admitted, "checks": checks, "errors": errors,
                      "first": first, "last": last}))

asyncio.run(main())
"""


def test_two_processes_admit_no_more_than_the_shared_limit(redis_server):
    route = f"test/replicas-{os.getpid()}-{time.monotonic_ns()}"
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    args = [redis_server, route, repr(SECONDS), str(RPM), str(BURST)]
    procs = [
        subprocess.Popen([sys.executable, "-c", REPLICA, *args], cwd=root, env=env, stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    for p in procs:  # both interpreters up and connected to Redis (readline blocks until then, or EOF)
        assert p.stdout.readline().strip() == "ready", p.stderr.read() if p.poll() is not None else "no ready line"
    start = time.time() + 0.2
    for p in procs:
        p.stdin.write(f"{start!r}\n")
        p.stdin.flush()
    outs = []
    for p in procs:
        try:
            out, err = p.communicate(timeout=30)
        finally:
            if p.poll() is None:
                p.kill()
        assert p.returncode == 0, err
        outs.append(json.loads(out))

    assert outs[0]["pid"] != outs[1]["pid"]
    assert all(o["errors"] == 0 for o in outs), outs
    total = sum(o["admitted"] for o in outs)
    interval_us = -(-60_000_000 // RPM)
    # GCRA from rest: the k-th admission comes no sooner than (k - 1 - burst)
    # intervals after the first, and every admission happened (by Redis's
    # clock) between the earliest `first` and the latest `last`.
    span = max(o["last"] for o in outs) - min(o["first"] for o in outs)
    ceiling = 1 + BURST + span // interval_us
    assert total <= ceiling, (total, ceiling, outs)
    # And both really hammered one budget: close to what the rate allows,
    # far below what two separate budgets would have given.
    floor = 1 + BURST + int(SECONDS * 1e6 / interval_us) // 2
    assert total >= floor, (total, floor, outs)
    assert all(o["admitted"] >= 1 and o["checks"] > o["admitted"] for o in outs), outs
