"""controller/certs.py: which Secret serves which host, and what the owning object's status says."""

from __future__ import annotations

import pytest

from controller.certs import (
    DEFAULT_OWNER,
    INVALID_CERTIFICATE,
    CertificateCompiler,
    CertificateOptions,
    compile_certificates,
)
from controller.compile import CompileOptions, compile_snapshot
from kobjects import apiendpoint, backend, ingress, path, snapshot
from tlsharness import CA, mismatched, tls_secret

T1 = "2024-02-01T00:00:00Z"


@pytest.fixture(scope="module")
def ca():
    return CA()


def _compile(*objects, default=None):
    snap = snapshot(*objects)
    compiler = CertificateCompiler(CertificateOptions(default_certificate=default))
    return compiler.compile(snap, CompileOptions(), 1)


def _api(name="api", hosts=("api.example.com",), secret="api-tls", created="2024-01-01T00:00:00Z", **spec):
    body = {"path": "/", "backendService": "users", "hosts": list(hosts), **spec}
    if secret:
        body["tls"] = {"secretName": secret}
    return apiendpoint(name, body, created=created)


def test_apiendpoint_and_ingress_certificates_by_host(ca):
    api = ca.issue("api.example.com")
    shop = ca.issue("shop.example.com", "*.shop.example.com")
    ing = ingress("web", {
        "tls": [{"hosts": ["shop.example.com", "*.shop.example.com"], "secretName": "shop-tls"}],
        "rules": [{"host": "shop.example.com", "http": {"paths": [path("/", "users")]}}],
    })
    result = _compile(_api(), ing, *backend(), tls_secret("shop", "api-tls", api), tls_secret("shop", "shop-tls", shop))
    assert set(result.certificates) == {"api.example.com", "shop.example.com", "*.shop.example.com"}
    assert result.certificates["api.example.com"].cert_pem == api.cert_pem
    assert result.certificates["*.shop.example.com"] is result.certificates["shop.example.com"]
    assert result.certificates["api.example.com"].source == "Secret shop/api-tls"
    assert result.certificate_problems == {}
    assert result.statuses["APIEndpoint:shop/api"].state == "Ready"
    assert result.statuses["Ingress:shop/web"].state == "Ready"


def test_ingress_tls_without_hosts_applies_to_its_rules_hosts(ca):
    cert = ca.issue("a.example.com", "b.example.com")
    ing = ingress("web", {
        "tls": [{"secretName": "web-tls"}],
        "rules": [{"host": "a.example.com", "http": {"paths": [path("/", "users")]}},
                  {"host": "b.example.com", "http": {"paths": [path("/", "users")]}}],
    })
    result = _compile(ing, *backend(), tls_secret("shop", "web-tls", cert))
    assert set(result.certificates) == {"a.example.com", "b.example.com"}


def test_missing_secret_is_secret_not_found_and_serves_nothing(ca):
    result = _compile(_api(), *backend())
    assert result.certificates == {}
    st = result.statuses["APIEndpoint:shop/api"]
    assert st.state == "Error" and st.reason == "SecretNotFound"
    assert "spec.tls.secretName: Secret shop/api-tls not found" in st.message
    refs = {c.type: c for c in st.conditions}
    assert (refs["ResolvedRefs"].status, refs["ResolvedRefs"].reason) == ("False", "SecretNotFound")
    assert refs["Accepted"].status == "True"  # still routed
    assert len(result.table.routes) == 1


@pytest.mark.parametrize(
    "secret, expected",
    [
        ("mismatch", "tls.key does not match the certificate in tls.crt"),
        ("no-key", "data[tls.key] is missing"),
        ("not-base64", "data[tls.crt] is not base64"),
        ("not-pem", "tls.crt holds no PEM certificate"),
    ],
)
def test_invalid_secret_is_reported_and_its_bundle_still_handed_on(ca, secret, expected):
    good = ca.issue("api.example.com")
    obj = {
        "mismatch": tls_secret("shop", "api-tls", mismatched(good)),
        "no-key": tls_secret("shop", "api-tls", good),
        "not-base64": tls_secret("shop", "api-tls", good),
        "not-pem": tls_secret("shop", "api-tls", crt=b"hello", key=good.key_pem),
    }[secret]
    if secret == "no-key":
        del obj["data"]["tls.key"]
    if secret == "not-base64":
        obj["data"]["tls.crt"] = "***"
    result = _compile(_api(), *backend(), obj)
    st = result.statuses["APIEndpoint:shop/api"]
    assert st.state == "Error" and st.reason == INVALID_CERTIFICATE
    assert expected in st.message and "Secret shop/api-tls" in st.message
    # Handed on so that the proxy, failing to load it, keeps the previous certificate.
    assert "api.example.com" in result.certificates


def test_older_object_keeps_a_host_named_with_another_secret(ca):
    a, b = ca.issue("api.example.com", cn="a"), ca.issue("api.example.com", cn="b")
    older = _api("older", secret="a-tls", path="/a")
    younger = _api("younger", secret="b-tls", created=T1, path="/b")
    result = _compile(younger, older, *backend(), tls_secret("shop", "a-tls", a), tls_secret("shop", "b-tls", b))
    assert result.certificates["api.example.com"].cert_pem == a.cert_pem
    assert result.statuses["APIEndpoint:shop/older"].state == "Ready"
    st = result.statuses["APIEndpoint:shop/younger"]
    assert st.reason == "Conflicted" and "Secret shop/a-tls of shop/older" in st.message


def test_same_secret_named_twice_is_no_conflict(ca):
    cert = ca.issue("api.example.com")
    result = _compile(_api("one", path="/a"), _api("two", created=T1, path="/b"), *backend(),
                      tls_secret("shop", "api-tls", cert))
    assert result.certificate_problems == {}
    assert result.statuses["APIEndpoint:shop/two"].state == "Ready"


def test_tls_without_hosts_is_reported(ca):
    result = _compile(_api(hosts=()), *backend(), tls_secret("shop", "api-tls", ca.issue("x.example.com")))
    st = result.statuses["APIEndpoint:shop/api"]
    assert st.state == "Error" and "spec.tls: the APIEndpoint has no spec.hosts" in st.message
    assert result.certificates == {}


def test_objects_left_out_of_the_table_serve_no_certificate(ca):
    bad = _api(pathType="Nope")
    result = _compile(bad, *backend(), tls_secret("shop", "api-tls", ca.issue("api.example.com")))
    assert result.statuses["APIEndpoint:shop/api"].reason == "InvalidSpec"
    assert result.certificates == {}


def test_default_certificate(ca):
    cert = ca.issue("fallback.example.com")
    result = _compile(*backend(), tls_secret("infra", "fallback", cert), default=("infra", "fallback"))
    assert result.certificates["*"].cert_pem == cert.cert_pem
    missing = _compile(*backend(), default=("infra", "nope"))
    assert "*" not in missing.certificates
    assert missing.certificate_problems[DEFAULT_OWNER] == (("SecretNotFound", "Secret infra/nope not found"),)


def test_pure_and_cached(ca):
    cert = ca.issue("api.example.com")
    objects = (_api(), *backend(), tls_secret("shop", "api-tls", cert))
    snap = snapshot(*objects)
    base = compile_snapshot(snap, CompileOptions(), 1)
    first = compile_certificates(snap, base)
    again = compile_certificates(snap, base)
    assert first == again
    # An unchanged Secret yields the very same bundle object: the proxy reuses its context for free.
    assert first[0]["api.example.com"] is again[0]["api.example.com"]


def test_endpoint_refresh_keeps_certificates_and_their_statuses(ca):
    compiler = CertificateCompiler()
    snap = snapshot(_api(), *backend())  # Secret missing: status Error
    full = compiler.compile(snap, CompileOptions(), 1)
    refreshed = compiler.refresh(full, snap, 2)
    assert refreshed.statuses == full.statuses
    assert refreshed.certificates is full.certificates
    assert refreshed.table.generation == 2
