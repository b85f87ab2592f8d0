"""Upstream-side and routing errors: the status a careful proxy gives, with a JSON body."""

import asyncio
import contextlib

from aiohttp import web

from gateway.routing import ENDPOINTS_NOT_FOUND, Endpoint, EndpointSet, RoutePolicy, Timeouts
from proxyharness import free_port, proxy_port, request, route, start_backend, start_proxy, table


async def _one(routes, endpoints):
    srv = await start_proxy(table(routes, endpoints))
    return srv, proxy_port(srv)


async def test_no_route_is_404_json():
    srv, port = await _one([route(path="/a")], {"ns/svc:80": ()})
    try:
        r = await request(port, path="/b")
        assert r.status == 404
        assert r.json() == {"status": 404, "error": "Not Found", "message": "no route"}
    finally:
        await srv.close()


async def test_method_mismatch_is_405_with_allow():
    srv, port = await _one([route(path="/a", methods=frozenset({"GET", "PUT"}))], {"ns/svc:80": ()})
    try:
        r = await request(port, "POST", "/a", body=b"x")
        assert r.status == 405
        assert r.headers["allow"] == "GET, PUT"
    finally:
        await srv.close()


async def test_connect_refused_is_502():
    dead = Endpoint("127.0.0.1", free_port())
    srv, port = await _one([route(path="/a")], {"ns/svc:80": (dead,)})
    try:
        r = await request(port, path="/a")
        assert r.status == 502
        assert r.json()["status"] == 502
    finally:
        await srv.close()


async def test_no_ready_endpoints_is_503_and_missing_backend_is_500():
    routes = [route("ns/a", path="/a", backends=("ns/empty:80",)), route("ns/b", path="/b", backends=("ns/gone:80",))]
    endpoints = {"ns/empty:80": (), "ns/gone:80": EndpointSet("ns/gone:80", (), ENDPOINTS_NOT_FOUND)}
    srv, port = await _one(routes, endpoints)
    try:
        assert (await request(port, path="/a")).status == 503
        assert (await request(port, path="/b")).status == 500
    finally:
        await srv.close()


async def test_upstream_timeout_is_504():
    answer = asyncio.Event()

    async def slow(request, body):
        # Late: it answers only once the test has its 504 (or after 30 s), so that the
        # backend's clean-up need not wait for a fixed sleep to run out.
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(answer.wait(), 30)
        return web.Response(text="late")

    b = await start_backend("slow", slow)
    pol = RoutePolicy(timeouts=Timeouts(request=0.4))
    srv, port = await _one([route(path="/a", policy=pol)], {"ns/svc:80": (b.endpoint,)})
    try:
        r = await request(port, path="/a")
        assert r.status == 504
    finally:
        answer.set()
        await srv.close()
        await b.runner.cleanup()


async def test_upstream_reset_midway_is_502_before_response():
    async def reset(request, body):
        request.transport.abort()
        await asyncio.sleep(0.1)
        return web.Response(text="never")

    b = await start_backend("reset", reset)
    srv, port = await _one([route(path="/a")], {"ns/svc:80": (b.endpoint,)})
    try:
        r = await request(port, path="/a")
        assert r.status == 502
    finally:
        await srv.close()
        await b.runner.cleanup()


async def test_no_table_yet_is_503():
    srv = await start_proxy(None)
    try:
        r = await request(proxy_port(srv), path="/")
        assert r.status == 503
    finally:
        await srv.close()
