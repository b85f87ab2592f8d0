"""Rate limits end to end: local per replica, and global across two gateway processes via Redis."""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp

from gatewayproc import GatewayProcess, endpoint_manifests
from polling import eventually
from proxyharness import start_backend


def limited(name: str, path: str, **rate) -> dict:
    return {"apiVersion": "crdgate.io/v1", "kind": "APIEndpoint", "metadata": {"name": name, "namespace": "shop"},
            "spec": {"path": path, "backendService": "app", "rateLimit": rate}}


async def status_and_headers(session, url, headers=None):
    async with session.get(url, headers=headers or {}) as r:
        await r.read()
        return r.status, r.headers


async def test_local_limit_burst_then_429_with_headers(tmp_path):
    app = await start_backend("app")
    (tmp_path / "svc.yaml").write_text(endpoint_manifests("shop", "app", app.port))
    (tmp_path / "routes.json").write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": [
        limited("per-client", "/client", requestsPerMinute=60, burst=2),
        limited("per-tenant", "/tenant", requestsPerMinute=60, burst=0, key="Header", keyHeader="X-Tenant"),
    ]}))
    gw = GatewayProcess(tmp_path)
    try:
        await asyncio.get_running_loop().run_in_executor(None, gw.wait_ready)
        async with aiohttp.ClientSession() as s:
            results = [await status_and_headers(s, gw.base + "/client") for _ in range(4)]
            assert [r[0] for r in results] == [200, 200, 200, 429]
            ok_headers, denied = results[0][1], results[3][1]
            assert ok_headers["RateLimit-Policy"].startswith('"default";q=60;w=60')
            assert ok_headers["RateLimit"].startswith('"default";r=2;')
            assert int(denied["Retry-After"]) >= 1
            assert '"default";r=0;' in denied["RateLimit"]
            # Keys are separate: each tenant has its own bucket.
            assert (await status_and_headers(s, gw.base + "/tenant", {"X-Tenant": "a"}))[0] == 200
            assert (await status_and_headers(s, gw.base + "/tenant", {"X-Tenant": "a"}))[0] == 429
            assert (await status_and_headers(s, gw.base + "/tenant", {"X-Tenant": "b"}))[0] == 200
        assert len(app.seen) == 5, "denied requests never reach the backend"
    finally:
        gw.close()
        await app.runner.cleanup()


async def test_global_limit_is_shared_by_two_replicas(tmp_path, redis_server):
    app = await start_backend("app")
    (tmp_path / "svc.yaml").write_text(endpoint_manifests("shop", "app", app.port))
    rpm, burst = 600, 5  # one request per 100 ms, plus 5 at once
    (tmp_path / "routes.json").write_text(json.dumps(limited("global", "/g", requestsPerMinute=rpm, burst=burst,
                                                             key="Route", scope="Global")))
    # A Redis call that outlives --ratelimit-redis-timeout is admitted (fail open), which is
    # not the shared count this test checks: on a loaded host, give the calls time.
    a = GatewayProcess(tmp_path, "--redis-url", redis_server, *_PATIENT)
    b = GatewayProcess(tmp_path, "--redis-url", redis_server, *_PATIENT)
    try:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, a.wait_ready)
        await loop.run_in_executor(None, b.wait_ready)
        admitted = 0
        denied = 0
        t0 = time.monotonic()
        async with aiohttp.ClientSession() as s:
            async def hammer(gw):
                nonlocal admitted, denied
                while time.monotonic() - t0 < 1.5:
                    st, _ = await status_and_headers(s, gw.base + "/g")
                    if st == 200:
                        admitted += 1
                    elif st == 429:
                        denied += 1
                    else:
                        raise AssertionError(st)

            await asyncio.gather(hammer(a), hammer(b), hammer(a), hammer(b))
            span = time.monotonic() - t0
            assert await _redis_errors(s, a, b) == 0
        bound = 1 + burst + int(span / (60 / rpm)) + 1  # +1: a slot may open while the last request flies
        assert denied > 0
        assert 1 + burst <= admitted <= bound, (admitted, bound)
        assert len(app.seen) == admitted
    finally:
        a.close()
        b.close()
        await app.runner.cleanup()


async def test_global_limit_with_redis_down_fails_open_or_closed(tmp_path, redis_restartable):
    app = await start_backend("app")
    (tmp_path / "svc.yaml").write_text(endpoint_manifests("shop", "app", app.port))
    (tmp_path / "routes.json").write_text(json.dumps(limited("global", "/g", requestsPerMinute=6000, burst=100,
                                                             key="Route", scope="Global")))
    opened = GatewayProcess(tmp_path, "--redis-url", redis_restartable.url, "--ratelimit-redis-failure", "open")
    closed = GatewayProcess(tmp_path, "--redis-url", redis_restartable.url, "--ratelimit-redis-failure", "closed")
    try:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, opened.wait_ready)
        await loop.run_in_executor(None, closed.wait_ready)
        async with aiohttp.ClientSession() as s:
            assert (await status_and_headers(s, opened.base + "/g"))[0] == 200
            assert (await status_and_headers(s, closed.base + "/g"))[0] == 200
            redis_restartable.stop()
            assert (await status_and_headers(s, opened.base + "/g"))[0] == 200
            assert (await status_and_headers(s, closed.base + "/g"))[0] == 429
            async with s.get(opened.admin + "/metrics") as r:
                text = await r.text()
            assert "crdgate_ratelimit_redis_errors_total" in text
            assert 'outcome="failopen"' in text
            redis_restartable.start()

            async def recovered():
                return (await status_and_headers(s, closed.base + "/g"))[0] == 200

            await eventually(recovered, 10, "recovery after Redis returns")
    finally:
        opened.close()
        closed.close()
        await app.runner.cleanup()


# For the tests of the shared count: a Redis call past the timeout would be admitted unchecked.
_PATIENT = ("--ratelimit-redis-timeout", "2")


async def _redis_errors(session, *gateways) -> float:
    """Redis errors and timeouts of the gateways, all outcomes (0 when none was counted)."""
    total = 0.0
    for gw in gateways:
        async with session.get(gw.admin + "/metrics") as r:
            for line in (await r.text()).splitlines():
                if line.startswith("crdgate_ratelimit_redis_errors_total"):
                    total += float(line.split()[-1])
    return total


def _sample(metrics_text: str, name: str) -> float:
    for line in metrics_text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not exported")


async def test_flood_of_distinct_keys_fills_the_store_to_its_cap_and_shows_in_metrics(tmp_path):
    # A client inventing a new key per request (here a header value) must not grow
    # memory past --ratelimit-max-keys; the operator sees the store full and evicting.
    app = await start_backend("app")
    (tmp_path / "svc.yaml").write_text(endpoint_manifests("shop", "app", app.port))
    (tmp_path / "routes.json").write_text(json.dumps(
        limited("per-tenant", "/tenant", requestsPerMinute=60, burst=0, key="Header", keyHeader="X-Tenant")))
    gw = GatewayProcess(tmp_path, "--ratelimit-max-keys", "50")
    try:
        await asyncio.get_running_loop().run_in_executor(None, gw.wait_ready)
        async with aiohttp.ClientSession() as s:
            async with s.get(gw.admin + "/metrics") as r:
                before = await r.text()
            assert _sample(before, "crdgate_ratelimit_local_keys") == 0
            assert _sample(before, "crdgate_ratelimit_local_evictions_total") == 0
            statuses = [(await status_and_headers(s, gw.base + "/tenant", {"X-Tenant": f"t{i}"}))[0] for i in range(80)]
            assert statuses == [200] * 80  # every new key starts with a full bucket
            # The same key twice in a row is still limited while it is held.
            assert (await status_and_headers(s, gw.base + "/tenant", {"X-Tenant": "t79"}))[0] == 429
            async with s.get(gw.admin + "/metrics") as r:
                after = await r.text()
        assert _sample(after, "crdgate_ratelimit_local_keys") == 50
        assert _sample(after, "crdgate_ratelimit_local_evictions_total") == 30
    finally:
        gw.close()
        await app.runner.cleanup()


async def test_two_gateways_with_leases_admit_within_the_stated_bound(tmp_path, redis_server):
    # 100 at once then one every 0.6 s; (1 + burst) // 16 = 6: each gateway may lease 6 at a time.
    app = await start_backend("app")
    (tmp_path / "svc.yaml").write_text(endpoint_manifests("shop", "app", app.port))
    rpm, burst, lease_max, requests = 100, 99, 6, 400
    (tmp_path / "routes.json").write_text(json.dumps(limited("leased", "/leased", requestsPerMinute=rpm, burst=burst,
                                                             key="Route", scope="Global")))
    a = GatewayProcess(tmp_path, "--redis-url", redis_server, *_PATIENT)
    b = GatewayProcess(tmp_path, "--redis-url", redis_server, *_PATIENT)
    try:
        loop = asyncio.get_running_loop()
        # A deadline, not a wait: two interpreters starting at once on a loaded host can take long.
        await asyncio.gather(loop.run_in_executor(None, a.wait_ready, 60), loop.run_in_executor(None, b.wait_ready, 60))
        statuses = []
        t0 = time.monotonic()
        async with aiohttp.ClientSession() as s:
            async def client(gw, n):
                for _ in range(n):
                    statuses.append((await status_and_headers(s, gw.base + "/leased"))[0])

            # Four clients, two on each gateway, 100 requests each.
            await asyncio.gather(*(client(gw, requests // 4) for gw in (a, b, a, b)))
            span = time.monotonic() - t0
            calls = 0
            for gw in (a, b):
                async with s.get(gw.admin + "/metrics") as r:
                    calls += _sample(await r.text(), "crdgate_ratelimit_redis_seconds_count")
            assert await _redis_errors(s, a, b) == 0
        assert set(statuses) <= {200, 429} and len(statuses) == requests
        admitted = statuses.count(200)
        exact = 1 + burst + int(span / (60 / rpm)) + 1  # +1: a slot may open while the last request flies
        assert 1 + burst - 2 * lease_max <= admitted <= exact + 2 * lease_max, (admitted, exact, span)
        assert len(app.seen) == admitted
        # The admitted requests mostly came from leases: far fewer Redis calls than requests.
        assert calls <= requests - admitted // 2, (calls, admitted)
    finally:
        a.close()
        b.close()
        await app.runner.cleanup()
