"""Retries: to another endpoint, on connect failure and chosen statuses, idempotent only."""

import asyncio

from aiohttp import web

import gateway.upstream as upstream
from gateway.routing import Endpoint, RetryPolicy, RoutePolicy
from proxyharness import free_port, proxy_port, request, route, start_backend, start_proxy, table


async def test_retry_lands_on_healthy_endpoint_after_connect_refused():
    good = await start_backend("good")
    dead = Endpoint("127.0.0.1", free_port())
    pol = RoutePolicy(retries=RetryPolicy(attempts=3, backoff=0.001))
    srv = await start_proxy(table([route(path="/", policy=pol)], {"ns/svc:80": (dead, good.endpoint)}))
    try:
        for _ in range(20):
            r = await request(proxy_port(srv), path="/x")
            assert r.status == 200, r.body
        assert len(good.seen) == 20
    finally:
        await srv.close()
        await good.runner.cleanup()


async def test_retry_on_503_status_for_get_but_never_for_post(monkeypatch):
    monkeypatch.setattr(upstream, "EJECT_AFTER", 1000)  # keep the busy endpoint in rotation
    calls = {"bad": 0}

    async def bad(request, body):
        calls["bad"] += 1
        return web.Response(status=503, text="busy")

    bad_b = await start_backend("bad", bad)
    good = await start_backend("good")
    pol = RoutePolicy(retries=RetryPolicy(attempts=2, backoff=0.001))
    srv = await start_proxy(table([route(path="/", policy=pol)], {"ns/svc:80": (bad_b.endpoint, good.endpoint)}))
    port = proxy_port(srv)
    try:
        for _ in range(10):
            assert (await request(port, path="/g")).status == 200
        calls["bad"] = 0
        posts = [await request(port, "POST", "/p", body=b"order") for _ in range(10)]
        statuses = sorted(r.status for r in posts)
        # Round robin alternates: half the POSTs reach the busy endpoint and are not retried.
        assert statuses.count(503) == calls["bad"] > 0
        assert all(s in (200, 503) for s in statuses)
    finally:
        await srv.close()
        await bad_b.runner.cleanup()
        await good.runner.cleanup()


async def test_post_retried_when_route_allows_non_idempotent():
    dead = Endpoint("127.0.0.1", free_port())
    good = await start_backend("good")
    pol = RoutePolicy(retries=RetryPolicy(attempts=2, backoff=0.001, non_idempotent=True))
    srv = await start_proxy(table([route(path="/", policy=pol)], {"ns/svc:80": (dead, good.endpoint)}))
    try:
        for _ in range(6):
            r = await request(proxy_port(srv), "POST", "/p", body=b"hello")
            assert r.status == 200
            assert r.json()["body_bytes"] == 5
    finally:
        await srv.close()
        await good.runner.cleanup()


async def test_no_retry_after_response_started():
    async def half(request, body):
        resp = web.StreamResponse(headers={"Content-Length": "100"})
        await resp.prepare(request)
        await resp.write(b"x" * 10)
        await asyncio.sleep(0.05)
        request.transport.abort()
        return resp

    b = await start_backend("half", half)
    good = await start_backend("good")
    pol = RoutePolicy(retries=RetryPolicy(attempts=3, backoff=0.001))
    srv = await start_proxy(table([route(path="/", policy=pol)], {"ns/svc:80": (b.endpoint,)}))
    try:
        try:
            r = await request(proxy_port(srv), path="/x")
            assert len(r.body) < 100
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client sees a cut response: that is the contract
        assert len(b.seen) == 1
    finally:
        await srv.close()
        await b.runner.cleanup()
        await good.runner.cleanup()
