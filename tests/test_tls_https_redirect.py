"""httpsRedirect: plain HTTP gets 301 (GET/HEAD) or 308 to https; over TLS the route forwards."""

from __future__ import annotations

import ipaddress

from controller.compile import CompileOptions, compile_snapshot
from gateway.routing import RoutePolicy
from gateway.tls import CertificateStore
from kobjects import apiendpoint, backend, snapshot
from proxyharness import proxy_port, request, route, start_backend, table
from tlsharness import CA, start_tls_proxy, tls_client


def test_the_field_compiles_into_the_route_policy():
    snap = snapshot(
        apiendpoint("secure", {"path": "/s", "backendService": "users", "httpsRedirect": True}),
        apiendpoint("plain", {"path": "/p", "backendService": "users"}),
        *backend(),
    )
    result = compile_snapshot(snap, CompileOptions())
    by_name = {r.name: r for r in result.table.routes}
    assert by_name["shop/secure"].policy.https_redirect is True
    assert not by_name["shop/secure"].plain  # the proxy must look at its policy
    assert by_name["shop/plain"].policy.https_redirect is False
    bad = compile_snapshot(snapshot(apiendpoint("x", {"path": "/", "backendService": "users",
                                                       "httpsRedirect": "yes"}), *backend()), CompileOptions())
    assert bad.statuses["APIEndpoint:shop/x"].reason == "InvalidSpec"
    assert "httpsRedirect" in bad.statuses["APIEndpoint:shop/x"].message


async def test_plain_listener_redirects_and_tls_listener_forwards():
    ca = CA()
    store = CertificateStore()
    store.update({"shop.test": ca.issue("shop.test").bundle()})
    backend_ = await start_backend("b1")
    routes = [route("ns/secure", "/", policy=RoutePolicy(https_redirect=True))]
    server = await start_tls_proxy(table(routes, {"ns/svc:80": (backend_.endpoint,)}), store,
                                   trusted_proxies=(ipaddress.ip_network("127.0.0.1/32"),))
    try:
        port = proxy_port(server)
        r = await request(port, "GET", "/cart?id=7", host="shop.test:8080")
        assert r.status == 301
        assert r.headers["location"] == "https://shop.test/cart?id=7"
        r = await request(port, "HEAD", "/cart", host="shop.test")
        assert r.status == 301
        r = await request(port, "POST", "/cart", host="shop.test", body=b"x=1")
        assert r.status == 308  # keeps the method and body
        assert r.headers["location"] == "https://shop.test/cart"
        assert backend_.seen == []
        # A trusted proxy in front that terminated TLS already: no redirect loop.
        r = await request(port, "GET", "/cart", host="shop.test", headers={"X-Forwarded-Proto": "https"})
        assert r.status == 200
        async with tls_client(server, "shop.test", ca.client_context()) as c:
            r = await c.request("GET", "/cart")
            assert r.status == 200 and r.json()["path"] == "/cart"
            r = await c.request("POST", "/cart", body=b"x=1")
            assert r.status == 200
    finally:
        await server.close()
        await backend_.runner.cleanup()
