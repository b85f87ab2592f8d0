"""Passive health: an endpoint failing in a row is ejected, comes back later, never the last one."""

import asyncio

from aiohttp import web

import gateway.upstream as upstream
from proxyharness import proxy_port, request, route, start_backend, start_proxy, table


async def test_failing_endpoint_is_ejected_then_readmitted(monkeypatch):
    monkeypatch.setattr(upstream, "EJECT_BASE_SECONDS", 0.5)
    state = {"healthy": False}

    async def flaky(request, body):
        if state["healthy"]:
            return web.json_response({"backend": "flaky"})
        return web.Response(status=502)

    flaky_b = await start_backend("flaky", flaky)
    good = await start_backend("good")
    srv = await start_proxy(table([route(path="/")], {"ns/svc:80": (flaky_b.endpoint, good.endpoint)}))
    port = proxy_port(srv)
    try:
        for _ in range(12):  # 6 reach flaky: 5 in a row eject it
            await request(port)
        before = len(flaky_b.seen)
        for _ in range(10):
            assert (await request(port)).status == 200
        assert len(flaky_b.seen) == before, "an ejected endpoint must get no traffic"
        state["healthy"] = True
        await asyncio.sleep(0.6)
        for _ in range(10):
            await request(port)
        assert len(flaky_b.seen) > before, "an ejected endpoint must come back after its interval"
    finally:
        await srv.close()
        await flaky_b.runner.cleanup()
        await good.runner.cleanup()


async def test_last_endpoint_is_never_ejected():
    async def bad(request, body):
        return web.Response(status=503)

    only = await start_backend("only", bad)
    srv = await start_proxy(table([route(path="/")], {"ns/svc:80": (only.endpoint,)}))
    try:
        for _ in range(12):
            await request(proxy_port(srv))
        assert len(only.seen) == 12
    finally:
        await srv.close()
        await only.runner.cleanup()
