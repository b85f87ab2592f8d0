"""Admin HTTP server on its own port (or, for a worker, a Unix socket): /healthz, /readyz, /metrics, /routes, /explain.

aiohttp is fine here: nothing on this port is on the request path. ``/readyz``
answers 200 once the first routing table is published and until a drain starts;
``/routes`` is a read-only JSON view of the live table; ``/explain?method=&url=&header=``
says which route a request would reach on it and why (gateway/explain.py), for
``crdgate explain --admin``. Neither shows a credential.
"""

from __future__ import annotations

import json

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateway import dashboard, metrics
from gateway.explain import ExplainError, explain, parse_headers
from gateway.tablejson import table_to_json


def routes_response(table) -> web.Response:
    """``/routes``: the table as JSON (also the ``--workers`` supervisor's, from the controller's table)."""
    if table is None:
        return web.json_response({"generation": None, "routes": []}, status=503)
    body = {"generation": table.generation, "routes": table_to_json(table)}
    return web.Response(text=json.dumps(body, indent=1), content_type="application/json")


def explain_response(table, request: web.Request, not_ready=None) -> web.Response:
    """``/explain?method=&url=&header=``: which route of ``table`` a request would reach, and why."""
    if table is None:
        return web.json_response({"error": "no routing table yet"}, status=503)
    q = request.query
    if "url" not in q:
        return web.json_response({"error": "missing query parameter url (and method, header...)"}, status=400)
    try:
        doc = explain(table, q.get("method", "GET"), q["url"], parse_headers(q.getall("header", [])))
    except ExplainError as e:
        return web.json_response({"error": str(e)}, status=400)
    doc["notReady"] = list(not_ready()) if not_ready is not None else None
    return web.Response(text=json.dumps(doc, indent=1), content_type="application/json")


def make_app(server, extra_ready=None, not_ready=None) -> web.Application:
    """``extra_ready``: optional callable returning (ok, reason) for more readiness checks.
    ``not_ready``: optional callable returning the objects the last compile did not make
    Ready (left out of the table, or routed with a problem), as plain dicts (kind,
    namespace, name, state, reason, message): the controller's statuses, which the data
    plane does not know by itself; ``/explain`` lists them."""

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        if server.draining:
            return web.json_response({"status": "draining"}, status=503)
        if server.table is None:
            return web.json_response({"status": "waiting for the first routing table"}, status=503)
        if extra_ready is not None:
            ok, reason = extra_ready()
            if not ok:
                return web.json_response({"status": reason}, status=503)
        return web.json_response({"status": "ready", "generation": server.table.generation})

    async def metrics_handler(_: web.Request) -> web.Response:
        body = generate_latest(metrics.REGISTRY)
        resp = web.Response(body=body)
        resp.content_type = CONTENT_TYPE_LATEST.split(";")[0]
        return resp

    async def routes(_: web.Request) -> web.Response:
        return routes_response(server.table)

    async def explain_handler(request: web.Request) -> web.Response:
        return explain_response(server.table, request, not_ready)

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_handler)
    app.router.add_get("/routes", routes)
    dashboard.add_routes(app, server)  # / and /dashboard.json: gateway/dashboard.py
    app.router.add_get("/explain", explain_handler)
    return app


async def start_admin(server, host: str, port: int, extra_ready=None, not_ready=None) -> web.AppRunner:
    runner = web.AppRunner(make_app(server, extra_ready, not_ready), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True)
    await site.start()
    return runner


async def start_admin_unix(server, path: str, not_ready=None) -> web.AppRunner:
    """The same app on a Unix socket: a proxy worker's admin, reached only by its supervisor
    (the socket lives in the supervisor's private directory, see crdgate/workers.py)."""
    runner = web.AppRunner(make_app(server, not_ready=not_ready), access_log=None, handle_signals=False)
    await runner.setup()
    await web.UnixSite(runner, path).start()
    return runner
