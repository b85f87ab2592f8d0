"""CORS: preflight answered by the gateway, headers added to actual responses."""

from gateway.routing import CorsPolicy, RoutePolicy
from proxyharness import proxy_port, request, route, start_backend, start_proxy, table

CORS = CorsPolicy(allow_origins=("https://app.test", "https://*.example.test"), allow_methods=("GET", "POST"),
                  allow_headers=("Content-Type", "Authorization"), expose_headers=("X-Total",),
                  allow_credentials=True, max_age=600)


async def _gw():
    b = await start_backend("b")
    srv = await start_proxy(table([route(path="/", policy=RoutePolicy(cors=CORS))], {"ns/svc:80": (b.endpoint,)}))
    return b, srv, proxy_port(srv)


async def test_preflight_is_answered_without_the_backend():
    b, srv, port = await _gw()
    try:
        r = await request(port, "OPTIONS", "/api", headers={"Origin": "https://app.test",
                                                            "Access-Control-Request-Method": "POST",
                                                            "Access-Control-Request-Headers": "content-type"})
        assert r.status == 204
        assert r.headers["access-control-allow-origin"] == "https://app.test"
        assert r.headers["access-control-allow-methods"] == "GET, POST"
        assert r.headers["access-control-allow-headers"] == "Content-Type, Authorization"
        assert r.headers["access-control-allow-credentials"] == "true"
        assert r.headers["access-control-max-age"] == "600"
        assert b.seen == []
    finally:
        await srv.close()
        await b.runner.cleanup()


async def test_preflight_from_unknown_origin_or_method_is_refused():
    b, srv, port = await _gw()
    try:
        r = await request(port, "OPTIONS", "/api", headers={"Origin": "https://evil.test", "Access-Control-Request-Method": "GET"})
        assert r.status == 403
        assert "access-control-allow-origin" not in r.headers
        r = await request(port, "OPTIONS", "/api", headers={"Origin": "https://app.test", "Access-Control-Request-Method": "DELETE"})
        assert r.status == 403
        # Wildcard subdomain matches one or more labels but never another site.
        r = await request(port, "OPTIONS", "/api", headers={"Origin": "https://a.b.example.test", "Access-Control-Request-Method": "GET"})
        assert r.status == 204
        r = await request(port, "OPTIONS", "/api", headers={"Origin": "https://example.test.evil", "Access-Control-Request-Method": "GET"})
        assert r.status == 403
    finally:
        await srv.close()
        await b.runner.cleanup()


async def test_actual_request_gets_cors_headers_only_for_allowed_origins():
    b, srv, port = await _gw()
    try:
        r = await request(port, "GET", "/api", headers={"Origin": "https://app.test"})
        assert r.status == 200
        assert r.headers["access-control-allow-origin"] == "https://app.test"
        assert r.headers["access-control-expose-headers"] == "X-Total"
        assert "Origin" in r.headers["vary"]
        r = await request(port, "GET", "/api", headers={"Origin": "https://evil.test"})
        assert r.status == 200
        assert "access-control-allow-origin" not in r.headers
    finally:
        await srv.close()
        await b.runner.cleanup()
