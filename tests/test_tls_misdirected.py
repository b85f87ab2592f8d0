"""A request whose Host is not the SNI name its certificate was chosen for gets 421 Misdirected Request."""

from __future__ import annotations

from gateway.tls import CertificateStore
from proxyharness import route, start_backend, table
from tlsharness import CA, start_tls_proxy, tls_client


async def test_host_must_agree_with_a_host_bound_sni_name():
    ca = CA()
    store = CertificateStore()
    store.update({
        "api.example.com": ca.issue("api.example.com").bundle(),
        "*.example.com": ca.issue("*.example.com").bundle(),
        "*": ca.issue("default.invalid").bundle(),
    })
    backend = await start_backend("b1")
    server = await start_tls_proxy(table([route()], {"ns/svc:80": (backend.endpoint,)}), store)
    try:
        async with tls_client(server, "api.example.com", ca.client_context()) as c:
            assert (await c.request("GET", "/", host="api.example.com")).status == 200
            assert (await c.request("GET", "/", host="API.example.com:443")).status == 200  # case and port ignored
            forwarded = len(backend.seen)
            r = await c.request("GET", "/", host="admin.example.com")
            assert r.status == 421
            assert r.json()["error"] == "Misdirected Request"
            assert len(backend.seen) == forwarded  # answered by the gateway, never forwarded
            # The connection stays usable for its own host.
            assert (await c.request("GET", "/ok", host="api.example.com")).status == 200
        # A wildcard certificate is bound to the SNI name too.
        async with tls_client(server, "www.example.com", ca.client_context()) as c:
            assert (await c.request("GET", "/", host="www.example.com")).status == 200
            assert (await c.request("GET", "/", host="shop.example.com")).status == 421
        # The default certificate is bound to no name: any Host goes.
        async with tls_client(server, "elsewhere.test", ca.client_context(check_hostname=False)) as c:
            assert (await c.request("GET", "/", host="another.test")).status == 200
    finally:
        await server.close()
        await backend.runner.cleanup()
