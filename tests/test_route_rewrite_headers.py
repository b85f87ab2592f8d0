"""URL rewrites (Gateway API semantics) and request/response header modifiers."""

import pytest
from aiohttp import web

from gateway.routing import PATH_EXACT, EndpointSet, HeaderModifier, Rewrite, RoutePolicy
from proxyharness import proxy_port, request, route, start_backend, start_proxy, table


@pytest.mark.parametrize("prefix,replacement,req,expected", [
    ("/foo", "/", "/foo/bar?q=1", "/bar?q=1"),
    ("/foo", "/", "/foo", "/"),
    ("/foo", "/xyz", "/foo/bar", "/xyz/bar"),
    ("/foo/", "/xyz", "/foo/bar", "/xyz/bar"),
    ("/foo", "/xyz/", "/foo/bar", "/xyz/bar"),
    ("/foo", "/xyz", "/foo/", "/xyz/"),
])
async def test_replace_prefix_match(prefix, replacement, req, expected):
    b = await start_backend("b")
    pol = RoutePolicy(rewrite=Rewrite(path_type="ReplacePrefixMatch", replace_prefix_match=replacement))
    srv = await start_proxy(table([route(path=prefix, policy=pol)], {"ns/svc:80": (b.endpoint,)}))
    try:
        assert (await request(proxy_port(srv), path=req)).json()["path"] == expected
    finally:
        await srv.close()
        await b.runner.cleanup()


async def test_replace_full_path_and_hostname():
    b = await start_backend("b")
    pol = RoutePolicy(rewrite=Rewrite(path_type="ReplaceFullPath", replace_full_path="/v2/health", hostname="internal.svc"))
    srv = await start_proxy(table([route(path="/health", path_type=PATH_EXACT, policy=pol)], {"ns/svc:80": (b.endpoint,)}))
    try:
        doc = (await request(proxy_port(srv), path="/health?x=1")).json()
        assert doc["path"] == "/v2/health?x=1"
        assert doc["headers"]["host"] == "internal.svc"
        assert doc["headers"]["x-forwarded-host"] == "example.test"
    finally:
        await srv.close()
        await b.runner.cleanup()


async def test_a_path_rewrite_keeps_a_url_backends_own_host():
    # A URL backend is asked for by its own name with or without a path rewrite;
    # only a rewrite's hostname replaces it.
    b = await start_backend("b")
    key = f"http://backend.example:{b.endpoint.port}"
    eset = EndpointSet(key, (b.endpoint,), host_header=f"backend.example:{b.endpoint.port}")
    plain = route(name="ns/plain", path="/plain", backends=(key,))
    rewritten = route(name="ns/rw", path="/rw", backends=(key,), policy=RoutePolicy(
        rewrite=Rewrite(path_type="ReplacePrefixMatch", replace_prefix_match="/v2")))
    renamed = route(name="ns/rn", path="/rn", backends=(key,), policy=RoutePolicy(
        rewrite=Rewrite(path_type="ReplacePrefixMatch", replace_prefix_match="/v2", hostname="other.example")))
    srv = await start_proxy(table([plain, rewritten, renamed], {key: eset}))
    try:
        port = proxy_port(srv)
        assert (await request(port, path="/plain")).json()["headers"]["host"] == f"backend.example:{b.endpoint.port}"
        doc = (await request(port, path="/rw/x")).json()
        assert doc["path"] == "/v2/x"
        assert doc["headers"]["host"] == f"backend.example:{b.endpoint.port}"
        assert (await request(port, path="/rn/x")).json()["headers"]["host"] == "other.example"
    finally:
        await srv.close()
        await b.runner.cleanup()


async def test_request_and_response_header_modifiers_in_order():
    async def h(request, body):
        return web.Response(text="ok", headers={"X-Powered-By": "php", "X-Keep": "1", "Server-Timing": "db;dur=1"})

    b = await start_backend("b", h)
    pol = RoutePolicy(
        request_headers=HeaderModifier(set=(("X-Env", "prod"),), add=(("X-Tag", "a"),), remove=("x-drop",)),
        response_headers=HeaderModifier(set=(("X-Keep", "2"),), add=(("X-Gw", "crdgate"),), remove=("x-powered-by",)),
    )
    srv = await start_proxy(table([route(path="/", policy=pol)], {"ns/svc:80": (b.endpoint,)}))
    try:
        r = await request(proxy_port(srv), headers={"X-Env": "dev", "X-Tag": "z", "X-Drop": "1"})
        seen = b.seen[-1][2]
        assert seen["X-Env"] == "prod"
        assert [v for k, v in b.seen[-1][2].items() if k.lower() == "x-tag"]  # kept and added
        assert "X-Drop" not in seen
        assert r.headers["x-keep"] == "2"
        assert r.headers["x-gw"] == "crdgate"
        assert "x-powered-by" not in r.headers
        assert r.headers["server-timing"] == "db;dur=1"
    finally:
        await srv.close()
        await b.runner.cleanup()


async def test_fields_the_route_sets_survive_a_client_connection_option_naming_them():
    received = []

    async def h(request, body):
        received.append(list(request.headers.items()))
        return web.Response(text="ok")

    b = await start_backend("b", h)
    pol = RoutePolicy(request_headers=HeaderModifier(set=(("X-Env", "prod"),), add=(("X-Tag", "gw"),)))
    srv = await start_proxy(table([route(path="/", policy=pol)], {"ns/svc:80": (b.endpoint,)}))
    try:
        r = await request(proxy_port(srv), headers={"Connection": "close, X-Env, X-Tag, X-Mine", "X-Tag": "client",
                                                    "X-Mine": "1", "X-Env": "dev"})
        assert r.status == 200
        fields = [(k.lower(), v) for k, v in received[-1]]
        assert [v for k, v in fields if k == "x-env"] == ["prod"]
        assert [v for k, v in fields if k == "x-tag"] == ["gw"], "the client's listed X-Tag dropped, the route's kept"
        assert not [v for k, v in fields if k == "x-mine"]
    finally:
        await srv.close()
        await b.runner.cleanup()
