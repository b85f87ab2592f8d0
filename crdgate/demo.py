"""``crdgate demo``: demo backends on loopback + the gateway on deploy/examples.

The backends are tiny aiohttp apps that answer with who they are and what they
received, so a user can see routing, weights, rewrites and forwarded headers at
work. Once the first table is published, one curl line per route is printed.
"""

from __future__ import annotations

import asyncio
import sys

import uvloop
from aiohttp import web

from crdgate.config import Config
from crdgate.run import serve

# The example manifests' Services/EndpointSlices and url backends point here
# (deploy/examples/backends.yaml). Each answers with its name, which starts with
# the name of the Service (or url route) it stands for.
DEMO_BACKENDS = (
    ("users-a", 18081),
    ("users-b", 18082),
    ("orders-v1", 18083),
    ("orders-v2", 18084),
    ("payments", 18085),
    ("accounts", 18086),
    ("storefront", 18087),
)
# The API key of deploy/examples/accounts.yaml's demo Secret.
DEMO_API_KEY = "demo-key-123"


def backend_app(name: str) -> web.Application:
    async def echo(request: web.Request) -> web.Response:
        body = await request.read()
        return web.json_response(
            {
                "backend": name,
                "method": request.method,
                "path": request.path_qs,
                "headers": {k: v for k, v in request.headers.items()},
                "body_bytes": len(body),
            },
            headers={"X-Backend": name},
        )

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_route("*", "/{tail:.*}", echo)
    return app


async def start_backends(backends=DEMO_BACKENDS) -> list[web.AppRunner]:
    runners = []
    for name, port in backends:
        runner = web.AppRunner(backend_app(name), access_log=None, handle_signals=False)
        await runner.setup()
        try:
            await web.TCPSite(runner, "127.0.0.1", port, reuse_address=True).start()
        except OSError as e:
            raise SystemExit(f"crdgate demo: cannot start demo backend {name} on 127.0.0.1:{port}: {e}") from None
        runners.append(runner)
    return runners


def curl_lines(table, listen: tuple[str, int]) -> list[str]:
    host, port = listen
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    base = f"http://{host}:{port}"
    lines = []
    seen = set()
    for r in table.routes:
        if r.path_type == "RegularExpression":
            continue
        path = r.path if r.path != "/" or r.path_type == "Exact" else "/"
        method = sorted(r.methods)[0] if r.methods else "GET"
        parts = ["curl -i"]
        if method != "GET":
            parts.append(f"-X {method}")
        if r.policy.auth is not None and getattr(r.policy.auth, "scheme", "") == "APIKey":
            parts.append(f"-H 'X-API-Key: {DEMO_API_KEY}'")
        for h in r.headers[:1]:
            if h.regex is None:
                parts.append(f"-H '{h.name}: {h.value}'")
        if r.hosts:
            vhost = r.hosts[0].replace("*", "demo")
            parts.append(f"-H 'Host: {vhost}'")
        url = base + path
        if r.query:
            url += "?" + "&".join(f"{q.name}={q.value}" for q in r.query if q.regex is None)
        parts.append(f"'{url}'")
        line = " ".join(parts)
        if line not in seen:
            seen.add(line)
            lines.append(f"{line:<90} # {r.name} {r.rule}".rstrip())
    return lines


def run_demo(config: Config) -> int:
    """The demo backends and the gateway of ``config`` (its source: the example manifests folder)."""
    manifests = config.source.path
    if not manifests.is_dir():
        print(f"crdgate demo: example manifests not found at {manifests} (run from a source checkout, "
              f"or pass --manifests DIR)", file=sys.stderr)
        return 1
    gw = config.gateway

    async def main() -> int:
        print("crdgate demo: starting (Ctrl-C stops; a second Ctrl-C exits at once)", flush=True)
        runners = await start_backends()

        def started(server, publisher) -> None:
            async def announce() -> None:
                while server.table is None:
                    await asyncio.sleep(0.05)
                admin_host, admin_port = gw.admin_listen
                print(f"\ncrdgate demo: gateway on {gw.listen[0]}:{gw.listen[1]} routing from {manifests}", flush=True)
                print("demo backends: " + ", ".join(f"{n} on 127.0.0.1:{p}" for n, p in DEMO_BACKENDS))
                print("\nTry:")
                for line in curl_lines(server.table, gw.listen):
                    print("  " + line)
                print(f"  curl -s http://{admin_host}:{admin_port}/routes     # the live table")
                print(f"  curl -s http://{admin_host}:{admin_port}/metrics    # Prometheus metrics")
                print(f"  open http://{admin_host}:{admin_port}/ in a browser for the dashboard")
                print(f"\nEdit a file in {manifests} and routing changes at once.")
                print("Ctrl-C stops (it lets requests in flight finish); a second Ctrl-C exits at once.\n", flush=True)

            asyncio.ensure_future(announce())

        try:
            return await serve(config, started=started)
        finally:
            for r in runners:
                await r.cleanup()

    try:
        return uvloop.run(main())
    except KeyboardInterrupt:
        return 0
