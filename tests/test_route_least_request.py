"""LeastRequest balancing prefers the endpoint with fewer requests in flight."""

import asyncio

from aiohttp import web

from gateway.routing import RoutePolicy
from proxyharness import proxy_port, request, route, start_backend, start_proxy, table


async def test_least_request_avoids_the_slow_endpoint():
    async def slow(request, body):
        await asyncio.sleep(0.5)
        return web.json_response({"backend": "slow"})

    slow_b = await start_backend("slow", slow)
    fast = await start_backend("fast")
    pol = RoutePolicy(load_balancer="LeastRequest")
    srv = await start_proxy(table([route(path="/", policy=pol)], {"ns/svc:80": (slow_b.endpoint, fast.endpoint)}))
    port = proxy_port(srv)
    try:
        counts = {"slow": 0, "fast": 0}

        async def worker():
            for _ in range(10):
                counts[(await request(port)).json()["backend"]] += 1

        await asyncio.gather(*(worker() for _ in range(4)))
        # Round robin would give 20/20; least-request sends most to the endpoint that is free.
        assert counts["fast"] > counts["slow"], counts
    finally:
        await srv.close()
        await slow_b.runner.cleanup()
        await fast.runner.cleanup()
