"""Certificates rotate without a restart; established connections keep going on the old one."""

from __future__ import annotations

from gateway.tls import CertificateStore
from proxyharness import route, start_backend, table
from tlsharness import CA, start_tls_proxy, tls_client


async def test_rotation_keeps_open_connections_and_serves_the_new_certificate_to_new_ones():
    ca = CA()
    old = ca.issue("api.example.com", cn="old").bundle("Secret shop/api-tls")
    new = ca.issue("api.example.com", cn="new").bundle("Secret shop/api-tls")
    store = CertificateStore()
    store.update({"api.example.com": old})
    backend = await start_backend("b1")
    server = await start_tls_proxy(table([route()], {"ns/svc:80": (backend.endpoint,)}), store)
    ctx = ca.client_context()
    try:
        async with tls_client(server, "api.example.com", ctx) as kept:
            assert kept.cn == "old"
            assert (await kept.request("GET", "/before")).status == 200

            store.update({"api.example.com": new})
            assert store.serving("api.example.com") is new

            # The open connection was not dropped and goes on with the certificate it negotiated.
            r = await kept.request("GET", "/after")
            assert r.status == 200 and r.json()["path"] == "/after"
            assert kept.cn == "old"
            # A new connection gets the new certificate.
            async with tls_client(server, "api.example.com", ctx) as fresh:
                assert fresh.cn == "new"
                assert (await fresh.request("GET", "/")).status == 200
            # The kept connection still works after the new one came and went.
            assert (await kept.request("GET", "/again")).status == 200
    finally:
        await server.close()
        await backend.runner.cleanup()


async def test_unchanged_bundles_keep_their_context_and_removed_hosts_lose_theirs():
    ca = CA()
    a = ca.issue("a.example.com", cn="a").bundle()
    b = ca.issue("b.example.com", cn="b").bundle()
    store = CertificateStore()
    store.update({"a.example.com": a, "b.example.com": b})
    ctx_a = store.select("a.example.com")[0]
    # An equal bundle (a new object from a new compile) reuses the context: no reload per publish.
    same_a = type(a)(a.cert_pem, a.key_pem, a.source)
    store.update({"a.example.com": same_a})
    assert store.select("a.example.com")[0] is ctx_a
    assert store.select("b.example.com") == (None, False)
    assert len(store) == 1
