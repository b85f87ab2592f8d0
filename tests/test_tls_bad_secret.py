"""A bad certificate Secret is reported on its owner and in the log; the previous certificate keeps serving."""

from __future__ import annotations

import logging

from controller.certs import CertificateCompiler
from controller.compile import CompileOptions
from gateway.tls import CertificateStore
from kobjects import apiendpoint, backend, snapshot
from tlsharness import CA, mismatched, start_tls_proxy, tls_client, tls_secret


def _api():
    return apiendpoint("api", {"path": "/", "backendService": "users", "hosts": ["api.example.com"],
                               "tls": {"secretName": "api-tls"}})


async def test_mismatched_key_keeps_the_previous_certificate_and_reports_it(caplog):
    ca = CA()
    good = ca.issue("api.example.com", cn="good")
    compiler = CertificateCompiler()
    store = CertificateStore()

    first = compiler.compile(snapshot(_api(), *backend(), tls_secret("shop", "api-tls", good)), CompileOptions(), 1)
    assert first.statuses["APIEndpoint:shop/api"].state == "Ready"
    store.update(first.certificates)

    server = await start_tls_proxy(None, store)
    try:
        async with tls_client(server, "api.example.com", ca.client_context()) as c:
            assert c.cn == "good"

        # The Secret is edited: a new certificate with a key that does not belong to it.
        broken = mismatched(ca.issue("api.example.com", cn="broken"))
        second = compiler.compile(snapshot(_api(), *backend(), tls_secret("shop", "api-tls", broken)),
                                  CompileOptions(), 2)
        st = second.statuses["APIEndpoint:shop/api"]
        assert st.state == "Error" and st.reason == "InvalidCertificate"
        assert "tls.key does not match the certificate in tls.crt" in st.message
        with caplog.at_level(logging.WARNING, logger="crdgate.tls"):
            store.update(second.certificates)
        assert "api.example.com" in store.errors
        assert "does not match" in store.errors["api.example.com"]
        assert any("previous certificate keeps serving" in r.getMessage() for r in caplog.records)
        assert all("PRIVATE KEY" not in r.getMessage() for r in caplog.records)

        async with tls_client(server, "api.example.com", ca.client_context()) as c:
            assert c.cn == "good"

        # Publishing the same broken bundle again neither retries nor logs it again.
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="crdgate.tls"):
            store.update(compiler.compile(
                snapshot(_api(), *backend(), tls_secret("shop", "api-tls", broken)), CompileOptions(), 3
            ).certificates)
        assert not caplog.records
        assert store.serving("api.example.com").cert_pem == good.cert_pem

        # Fixed: the new certificate takes over, and the status clears.
        fixed = ca.issue("api.example.com", cn="fixed")
        third = compiler.compile(snapshot(_api(), *backend(), tls_secret("shop", "api-tls", fixed)),
                                 CompileOptions(), 4)
        assert third.statuses["APIEndpoint:shop/api"].state == "Ready"
        store.update(third.certificates)
        assert store.errors == {}
        async with tls_client(server, "api.example.com", ca.client_context()) as c:
            assert c.cn == "fixed"
    finally:
        await server.close()


def test_a_bad_bundle_with_nothing_before_it_serves_nothing():
    ca = CA()
    store = CertificateStore()
    store.update({"api.example.com": mismatched(ca.issue("api.example.com")).bundle("Secret shop/api-tls")})
    assert store.select("api.example.com") == (None, False)
    assert "does not match" in store.errors["api.example.com"]
