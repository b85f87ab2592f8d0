"""SNI picks the certificate: exact host, then the longest wildcard, then the default."""

from __future__ import annotations

import pytest

from gateway.tls import CertificateStore
from proxyharness import route, start_backend, table
from tlsharness import CA, start_tls_proxy, tls_client


@pytest.fixture(scope="module")
def ca():
    return CA()


@pytest.fixture(scope="module")
def certs(ca):
    return {
        "exact": ca.issue("api.example.com", cn="exact"),
        "wild": ca.issue("*.example.com", cn="wild"),
        "deep": ca.issue("*.eu.example.com", cn="deep"),
        "default": ca.issue("fallback.invalid", cn="default"),
    }


def _store(certs, default=True) -> CertificateStore:
    store = CertificateStore()
    table = {
        "api.example.com": certs["exact"].bundle(),
        "*.example.com": certs["wild"].bundle(),
        "*.eu.example.com": certs["deep"].bundle(),
    }
    if default:
        table["*"] = certs["default"].bundle()
    store.update(table)
    return store


# -- the choice itself, no sockets ------------------------------------------------------


@pytest.mark.parametrize(
    "name, expected, bound",
    [
        ("api.example.com", "exact", True),
        ("API.Example.COM.", "exact", True),  # case and a trailing dot do not matter
        ("www.example.com", "wild", True),
        ("shop.eu.example.com", "deep", True),  # the longer wildcard wins
        ("a.b.example.com", "wild", True),  # no *.b.example.com: the next shorter suffix
        ("example.com", "default", False),  # a wildcard needs at least one label in front
        ("other.test", "default", False),
        (None, "default", False),  # no SNI at all
    ],
)
def test_selection_order(certs, name, expected, bound):
    store = _store(certs)
    ctx, is_bound = store.select(name)
    want, _ = store.select({"exact": "api.example.com", "wild": "x.example.com",
                            "deep": "x.eu.example.com"}.get(expected, "nothing.invalid"))
    assert ctx is want
    assert is_bound is bound


def test_without_default_an_unknown_name_selects_nothing(certs):
    store = _store(certs, default=False)
    assert store.select("other.test") == (None, False)
    assert store.select(None) == (None, False)
    assert store.select("www.example.com")[0] is not None


def test_one_context_per_certificate(certs):
    store = CertificateStore()
    shared = certs["exact"].bundle()
    store.update({"a.example.com": shared, "b.example.com": shared, "c.example.com": certs["wild"].bundle()})
    assert store.select("a.example.com")[0] is store.select("b.example.com")[0]
    assert store.select("a.example.com")[0] is not store.select("c.example.com")[0]


# -- the same over real TLS handshakes -----------------------------------------------------


async def test_handshakes_present_the_chosen_certificate(ca, certs):
    backend = await start_backend("b1")
    server = await start_tls_proxy(table([route()], {"ns/svc:80": (backend.endpoint,)}), _store(certs))
    try:
        loose = ca.client_context(check_hostname=False)  # the default cannot match every name
        for sni, expected in [
            ("api.example.com", "exact"),
            ("www.example.com", "wild"),
            ("shop.eu.example.com", "deep"),
            ("unknown.test", "default"),
        ]:
            async with tls_client(server, sni, loose) as c:
                assert c.cn == expected, sni
                assert c.ssl_object.selected_alpn_protocol() in (None, "http/1.1")
                r = await c.request("GET", "/hello")
                assert r.status == 200
                assert r.json()["backend"] == "b1"
        # A verifying client accepts the host-bound ones: the right certificate for the name.
        async with tls_client(server, "www.example.com", ca.client_context()) as c:
            assert (await c.request("GET", "/")).status == 200
    finally:
        await server.close()
        await backend.runner.cleanup()


async def test_alpn_offers_h2_first_and_http11(ca, certs):
    server = await start_tls_proxy(table([], {}), _store(certs))
    try:
        ctx = ca.client_context()
        ctx.set_alpn_protocols(["h2", "http/1.1"])
        async with tls_client(server, "api.example.com", ctx) as c:
            assert c.ssl_object.selected_alpn_protocol() == "h2"  # served as HTTP/2 (tests/test_h2_e2e.py)
        ctx = ca.client_context()
        ctx.set_alpn_protocols(["http/1.1"])
        async with tls_client(server, "api.example.com", ctx) as c:
            assert c.ssl_object.selected_alpn_protocol() == "http/1.1"
            assert (await c.request("GET", "/")).status == 404
    finally:
        await server.close()
