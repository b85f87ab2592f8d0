"""A gateway starts from a Config object alone, no command line: what an embedding program or a test does.

In process, on this test's event loop: a manifests folder on 127.0.0.1 port 0,
one request answered through it, then stopped by the caller's event (no signal).
"""

from __future__ import annotations

import asyncio
import time

import aiohttp
from aiohttp import web

from crdgate.config import Config, ManifestsSource
from crdgate.run import serve
from gateway.config import GatewayConfig

ROUTE = """\
apiVersion: crdgate.io/v1
kind: APIEndpoint
metadata: {{name: hello, namespace: demo}}
spec:
  path: /hello
  backends: [{{url: "http://127.0.0.1:{port}"}}]
"""


async def start_backend() -> tuple[web.AppRunner, int]:
    async def hello(request: web.Request) -> web.Response:
        return web.json_response({"backend": "hello", "path": request.path})

    app = web.Application()
    app.router.add_get("/{tail:.*}", hello)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, runner.addresses[0][1]


async def until(condition, what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def test_a_gateway_serves_from_a_config_object_and_stops_on_request(tmp_path):
    backend, backend_port = await start_backend()
    (tmp_path / "hello.yaml").write_text(ROUTE.format(port=backend_port))
    config = Config(
        source=ManifestsSource(tmp_path),
        gateway=GatewayConfig(listen=("127.0.0.1", 0), admin_listen=("127.0.0.1", -1), access_log=False,
                              drain_seconds=0.0, shutdown_timeout=2.0),
    )
    running = {}
    stop = asyncio.Event()
    task = asyncio.ensure_future(serve(config, started=lambda server, publisher: running.update(server=server),
                                       stop=stop))
    try:
        await until(lambda: task.done() or running.get("server") is not None, "the listeners")
        assert not task.done(), task.result()
        server = running["server"]
        await until(lambda: server.table is not None and server.addresses, "the first table")
        host, port = server.addresses[0]
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://{host}:{port}/hello", timeout=aiohttp.ClientTimeout(total=10)) as r:
                assert r.status == 200
                assert (await r.json()) == {"backend": "hello", "path": "/hello"}
        stop.set()
        assert await asyncio.wait_for(task, 15) == 0
    finally:
        stop.set()
        if not task.done():
            task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await backend.cleanup()
