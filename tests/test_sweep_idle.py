"""The connection sweeper of a server with no client connection sleeps, and its work is still done.

It used to wake every 100 ms whatever the server held (gateway/server.py,
``_sweep``); now, with no client connection, it sleeps until one is accepted,
a table is swapped in, or the first idle upstream connection passes its idle
timeout. These tests check that sleeping loses none of that work; the wake-ups
themselves are counted on the real process (tests/test_idle_wakeups.py).
"""

from __future__ import annotations

import asyncio

from gateway.config import Limits
from polling import eventually
from proxyharness import RawClient, proxy_port, request, route, start_backend, start_proxy, table


def _idle_upstreams(server) -> int:
    return sum(len(pool.idle) for pool in server.upstreams.pools.values())


async def test_an_idle_upstream_connection_is_closed_with_no_client_connected():
    backend = await start_backend()
    server = await start_proxy(table([route()], {"ns/svc:80": (backend.endpoint,)}),
                               Limits(upstream_idle_timeout=0.3))
    try:
        assert (await request(proxy_port(server))).status == 200  # Connection: close
        await eventually(lambda: not server.connections)
        assert _idle_upstreams(server) == 1, "the upstream connection is kept alive for the next request"
        # Nothing wakes the sweeper but the connection's own idle deadline.
        await eventually(lambda: _idle_upstreams(server) == 0, timeout=5.0, what="the idle upstream connection closed")
    finally:
        await server.close()
        await backend.runner.cleanup()


async def test_a_connection_accepted_while_the_sweeper_sleeps_gets_its_deadlines():
    backend = await start_backend()
    server = await start_proxy(table([route()], {"ns/svc:80": (backend.endpoint,)}),
                               Limits(idle_timeout=0.3, upstream_idle_timeout=60.0))
    try:
        await asyncio.sleep(0.3)  # the sweeper is asleep: no connection yet
        async with RawClient(proxy_port(server)) as client:
            await client.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            assert (await client.response()).status == 200
            # Kept alive, then closed by the idle timeout the sweeper checks.
            assert await client.closed(timeout=5.0), "the idle timeout was not enforced"
    finally:
        await server.close()
        await backend.runner.cleanup()


async def test_a_table_swapped_in_while_idle_drops_the_pools_it_no_longer_uses():
    a, b = await start_backend("a"), await start_backend("b")
    server = await start_proxy(table([route()], {"ns/svc:80": (a.endpoint,)}), Limits(upstream_idle_timeout=60.0))
    try:
        assert (await request(proxy_port(server))).status == 200
        await eventually(lambda: not server.connections)
        assert a.endpoint in server.upstreams.pools
        server.swap(table([route()], {"ns/svc:80": (b.endpoint,)}, generation=2))
        await eventually(lambda: a.endpoint not in server.upstreams.pools, timeout=5.0,
                         what="the pool of the endpoint no table uses dropped")
    finally:
        await server.close()
        await a.runner.cleanup()
        await b.runner.cleanup()
