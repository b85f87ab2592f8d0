"""WebSocket (HTTP Upgrade) passes through and survives a table swap mid-conversation."""

import aiohttp
from aiohttp import web

from proxyharness import proxy_port, route, start_proxy, table
from proxyharness import free_port, Backend
from gateway.routing import Endpoint


async def ws_backend(name: str):
    async def ws(request):
        sock = web.WebSocketResponse()
        await sock.prepare(request)
        async for msg in sock:
            if msg.type == aiohttp.WSMsgType.TEXT:
                await sock.send_str(f"{name}:{msg.data}")
            elif msg.type == aiohttp.WSMsgType.BINARY:
                await sock.send_bytes(msg.data)
        return sock

    app = web.Application()
    app.router.add_get("/ws", ws)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return Backend(name, port, runner)


async def test_websocket_echo_survives_table_swap():
    a = await ws_backend("a")
    b = await ws_backend("b")
    srv = await start_proxy(table([route(path="/ws")], {"ns/svc:80": (a.endpoint,)}, generation=1))
    port = proxy_port(srv)
    try:
        async with aiohttp.ClientSession() as s:
            async with s.ws_connect(f"http://127.0.0.1:{port}/ws") as ws:
                await ws.send_str("one")
                assert (await ws.receive(timeout=5)).data == "a:one"
                # New table: the route now points elsewhere. The open stream stays where it is.
                srv.swap(table([route(path="/ws")], {"ns/svc:80": (b.endpoint,)}, generation=2))
                for i in range(20):
                    await ws.send_str(f"m{i}")
                    assert (await ws.receive(timeout=5)).data == f"a:m{i}"
                big = bytes(range(256)) * 4096
                await ws.send_bytes(big)
                assert (await ws.receive(timeout=5)).data == big
            # A new connection follows the new table.
            async with s.ws_connect(f"http://127.0.0.1:{port}/ws") as ws2:
                await ws2.send_str("two")
                assert (await ws2.receive(timeout=5)).data == "b:two"
    finally:
        await srv.close()
        await a.runner.cleanup()
        await b.runner.cleanup()


async def test_upgrade_refused_by_upstream_is_a_normal_response():
    async def plain(request):
        return web.Response(status=400, text="no upgrade here")

    app = web.Application()
    app.router.add_get("/ws", plain)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    port_b = free_port()
    await web.TCPSite(runner, "127.0.0.1", port_b).start()
    srv = await start_proxy(table([route(path="/ws")], {"ns/svc:80": (Endpoint("127.0.0.1", port_b),)}))
    try:
        async with aiohttp.ClientSession() as s:
            try:
                await s.ws_connect(f"http://127.0.0.1:{proxy_port(srv)}/ws")
                raise AssertionError("upgrade should have failed")
            except aiohttp.WSServerHandshakeError as e:
                assert e.status == 400
    finally:
        await srv.close()
        await runner.cleanup()
