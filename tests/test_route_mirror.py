"""Mirroring: a copy of each request reaches the mirror backend; the client never waits for it."""

import asyncio
import contextlib

from aiohttp import web

from gateway.routing import BackendRef, Mirror, RoutePolicy
from polling import eventually
from proxyharness import proxy_port, request, route, start_backend, start_proxy, table


async def test_requests_are_copied_to_the_mirror_without_affecting_responses():
    answer = asyncio.Event()

    async def slow_mirror(request, body):
        # A slow mirror must not slow the client down: this one answers only once the test
        # has checked everything (or after 30 s), so its clean-up waits for no fixed sleep.
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(answer.wait(), 30)
        return web.Response(status=500)

    main = await start_backend("main")
    shadow = await start_backend("shadow", slow_mirror)
    pol = RoutePolicy(mirror=Mirror(BackendRef("ns/shadow:80"), 100.0))
    srv = await start_proxy(table([route(path="/", policy=pol)],
                                  {"ns/svc:80": (main.endpoint,), "ns/shadow:80": (shadow.endpoint,)}))
    try:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        for i in range(5):
            r = await request(proxy_port(srv), "POST", f"/orders/{i}", body=b"payload")
            assert r.status == 200 and r.json()["backend"] == "main"
        assert loop.time() - t0 < 2.5, "the client waited on the mirror"
        await eventually(lambda: len(shadow.seen) == 5, 10, "the 5 mirrored requests")
        assert sorted(s[1] for s in shadow.seen) == [f"/orders/{i}" for i in range(5)]
        assert all(s[3] == len(b"payload") for s in shadow.seen)
    finally:
        answer.set()
        await srv.close()
        await main.runner.cleanup()
        await shadow.runner.cleanup()
