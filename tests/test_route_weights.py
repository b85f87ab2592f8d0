"""Weighted backends split traffic by weight; weight 0 gets nothing."""

from collections import Counter

from gateway.routing import BackendRef
from proxyharness import proxy_port, route, start_backend, start_proxy, table
import aiohttp


async def test_weights_90_10_over_2000_requests():
    a = await start_backend("a")
    b = await start_backend("b")
    c = await start_backend("c")
    r = route(path="/", backends=(BackendRef("ns/a:80", 90), BackendRef("ns/b:80", 10), BackendRef("ns/c:80", 0)))
    srv = await start_proxy(table([r], {"ns/a:80": (a.endpoint,), "ns/b:80": (b.endpoint,), "ns/c:80": (c.endpoint,)}))
    seen = Counter()
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=8)) as s:
            for _ in range(2000):
                async with s.get(f"http://127.0.0.1:{proxy_port(srv)}/") as resp:
                    seen[(await resp.json())["backend"]] += 1
        # Binomial(2000, 0.1): sd ~ 13.4; 5 sd either side.
        assert 133 <= seen["b"] <= 267, seen
        assert seen["a"] + seen["b"] == 2000
        assert seen["c"] == 0
    finally:
        await srv.close()
        for x in (a, b, c):
            await x.runner.cleanup()
