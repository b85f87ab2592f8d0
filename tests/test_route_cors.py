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


# -- preflights on routes that list their methods --------------------------------------
#
# A preflight (OPTIONS with Origin and Access-Control-Request-Method) is matched as
# the request it announces: the route that request would reach answers with its CORS
# policy, although OPTIONS is not among its methods.


async def _compiled_gw(*extra: dict):
    from controller.compile import compile_snapshot
    from kobjects import ingress, snapshot
    from test_compile_examples import example_objects

    b = await start_backend("b")
    url = [{"url": f"http://127.0.0.1:{b.port}"}]

    def endpoint(name, spec):
        return {"apiVersion": "crdgate.io/v1", "kind": "APIEndpoint", "metadata": {"name": name, "namespace": "shop",
                "creationTimestamp": "2024-01-01T00:00:00Z", "generation": 1}, "spec": {"backends": url, **spec}}

    site = ingress("site", {"rules": [{"host": "site.test", "http": {"paths": [
        {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "users", "port": {"number": 80}}}}]}}]},
        ns="demo", annotations={"crdgate.io/cors-allow-origins": "https://site.test",
                                "crdgate.io/cors-allow-methods": "GET, POST"})
    objects = [*example_objects(), site,
               endpoint("checkout", {"hosts": ["site.test"], "path": "/checkout", "methods": ["POST"],
                                     "cors": {"allowOrigins": ["https://checkout.test"], "allowMethods": ["POST"]}}),
               endpoint("no-cors", {"path": "/no-cors", "methods": ["POST"]}),
               endpoint("own-options", {"path": "/own-options", "methods": ["OPTIONS", "POST"],
                                        "cors": {"allowOrigins": ["https://x.test"]}}),
               *extra]
    result = compile_snapshot(snapshot(*objects))
    assert not [k for k, s in result.statuses.items() if s.state == "Error"], result.statuses
    srv = await start_proxy(result.table)
    return b, srv, proxy_port(srv)


def _preflight(origin: str, method: str = "POST") -> dict:
    return {"Origin": origin, "Access-Control-Request-Method": method, "Access-Control-Request-Headers": "content-type"}


async def test_preflight_on_the_demo_payments_route_is_answered_by_its_cors_policy():
    b, srv, port = await _compiled_gw()
    try:
        r = await request(port, "OPTIONS", "/api/v1/payments", headers=_preflight("https://shop.demo.local"))
        assert r.status == 204, r.body
        assert r.headers["access-control-allow-origin"] == "https://shop.demo.local"
        assert r.headers["access-control-allow-methods"] == "GET, POST"
        assert r.headers["access-control-max-age"] == "600"
        r = await request(port, "OPTIONS", "/api/v1/payments", headers=_preflight("https://evil.test"))
        assert r.status == 403
        # A plain OPTIONS (no preflight) is still outside the route's methods.
        r = await request(port, "OPTIONS", "/api/v1/payments")
        assert r.status == 405 and r.headers["allow"] == "GET, POST"
        assert b.seen == []
    finally:
        await srv.close()
        await b.runner.cleanup()


async def test_preflight_is_answered_by_the_route_the_announced_request_reaches():
    b, srv, port = await _compiled_gw()
    try:
        # POST /checkout on site.test goes to the APIEndpoint, not to the Ingress's "/": so does its preflight.
        r = await request(port, "OPTIONS", "/checkout", host="site.test", headers=_preflight("https://checkout.test"))
        assert r.status == 204 and r.headers["access-control-allow-origin"] == "https://checkout.test"
        r = await request(port, "OPTIONS", "/checkout", host="site.test", headers=_preflight("https://site.test"))
        assert r.status == 403
        # Elsewhere on the host, the Ingress's annotations answer, as before.
        r = await request(port, "OPTIONS", "/page", host="site.test", headers=_preflight("https://site.test", "GET"))
        assert r.status == 204 and r.headers["access-control-allow-origin"] == "https://site.test"
        # A preflight for a route without CORS keeps its answer (405: OPTIONS is not among its methods).
        r = await request(port, "OPTIONS", "/no-cors", headers=_preflight("https://x.test"))
        assert r.status == 405 and r.headers["allow"] == "POST"
        # A route that lists OPTIONS matches the preflight itself (and answers it with its CORS policy).
        r = await request(port, "OPTIONS", "/own-options", headers=_preflight("https://x.test"))
        assert r.status == 204 and r.headers["access-control-allow-origin"] == "https://x.test"
        assert b.seen == []
    finally:
        await srv.close()
        await b.runner.cleanup()
