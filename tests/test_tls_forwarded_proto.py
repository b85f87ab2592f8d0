"""Requests that arrived over TLS tell the upstream so: X-Forwarded-Proto https (plain ones say http)."""

from __future__ import annotations

from gateway.tls import CertificateStore
from proxyharness import proxy_port, request, route, start_backend, table
from tlsharness import CA, start_tls_proxy, tls_client


async def test_forwarded_proto_follows_the_listener():
    ca = CA()
    store = CertificateStore()
    store.update({"api.example.com": ca.issue("api.example.com").bundle()})
    backend = await start_backend("b1")
    server = await start_tls_proxy(table([route()], {"ns/svc:80": (backend.endpoint,)}), store)
    try:
        async with tls_client(server, "api.example.com", ca.client_context()) as c:
            # A client's own value is not trusted: the gateway's replaces it.
            r = await c.request("GET", "/x", headers={"X-Forwarded-Proto": "http"})
            seen = r.json()["headers"]
            assert seen["x-forwarded-proto"] == "https"
            assert "proto=https" in seen["forwarded"]
            assert seen["x-forwarded-host"] == "api.example.com"
            # Second request on the same connection (the forwarding block is cached per connection).
            assert (await c.request("GET", "/y")).json()["headers"]["x-forwarded-proto"] == "https"
        plain = await request(proxy_port(server), "GET", "/x", host="api.example.com")
        assert plain.json()["headers"]["x-forwarded-proto"] == "http"
    finally:
        await server.close()
        await backend.runner.cleanup()
