"""controller/certs.py for Gateway HTTPS listeners: each listener's certificate for its hostname,
and what goes wrong with it on that listener's conditions (not the whole Gateway's)."""

from __future__ import annotations

import pytest

from controller.certs import CertificateCompiler, CertificateOptions
from controller.compile import CompileOptions
from kobjects import snapshot
from tlsharness import CA, mismatched, tls_secret

GROUP = "gateway.networking.k8s.io"


@pytest.fixture(scope="module")
def ca():
    return CA()


def gatewayclass() -> dict:
    return {"apiVersion": f"{GROUP}/v1", "kind": "GatewayClass", "metadata": {"name": "crdgate"},
            "spec": {"controllerName": "crdgate.io/gateway-controller"}}


def https(name: str, host: str | None, secret: str, **ref) -> dict:
    ls = {"name": name, "port": 443, "protocol": "HTTPS",
          "tls": {"mode": "Terminate", "certificateRefs": [{"name": secret, **ref}]}}
    if host:
        ls["hostname"] = host
    return ls


def gateway(*listeners: dict, name: str = "gw", created: str = "2024-01-01T00:00:00Z") -> dict:
    return {"apiVersion": f"{GROUP}/v1", "kind": "Gateway",
            "metadata": {"name": name, "namespace": "infra", "creationTimestamp": created, "generation": 1},
            "spec": {"gatewayClassName": "crdgate", "listeners": list(listeners)}}


def compiled(*objects, default=None):
    compiler = CertificateCompiler(CertificateOptions(default_certificate=default))
    return compiler.compile(snapshot(gatewayclass(), *objects), CompileOptions(), 1)


def listener(result, name: str, gw: str = "infra/gw"):
    return next(ls for ls in result.statuses[f"Gateway:{gw}"].listeners if ls.name == name)


def cond(ls, type_: str) -> tuple[str, str]:
    c = next(c for c in ls.conditions if c.type == type_)
    return c.status, c.reason


def test_each_listener_serves_its_certificate_for_its_hostname(ca):
    shop, wild, other = ca.issue("shop.test"), ca.issue("*.api.test"), ca.issue("any.test")
    result = compiled(
        gateway(https("shop", "shop.test", "shop"), https("api", "*.api.test", "api"), https("any", None, "any")),
        tls_secret("infra", "shop", shop), tls_secret("infra", "api", wild), tls_secret("infra", "any", other),
    )
    assert result.certificates["shop.test"].cert_pem == shop.cert_pem
    assert result.certificates["*.api.test"].cert_pem == wild.cert_pem
    assert result.certificates["*"].cert_pem == other.cert_pem  # no hostname: every other name
    assert result.statuses["Gateway:infra/gw"].state == "Ready"


def test_the_default_certificate_flag_wins_over_a_listener_without_hostname(ca):
    listener_cert, flag = ca.issue("any.test"), ca.issue("fallback.test")
    result = compiled(gateway(https("any", None, "any")), tls_secret("infra", "any", listener_cert),
                      tls_secret("infra", "fallback", flag), default=("infra", "fallback"))
    assert result.certificates["*"].cert_pem == flag.cert_pem


def test_a_broken_secret_is_the_listeners_invalid_certificate_ref(ca):
    result = compiled(
        gateway(https("shop", "shop.test", "shop"), https("ok", "ok.test", "ok")),
        tls_secret("infra", "shop", mismatched(ca.issue("shop.test"))), tls_secret("infra", "ok", ca.issue("ok.test")),
    )
    bad, ok = listener(result, "shop"), listener(result, "ok")
    assert cond(bad, "ResolvedRefs") == ("False", "InvalidCertificateRef")
    assert cond(bad, "Programmed") == ("False", "Invalid")
    assert cond(ok, "ResolvedRefs") == ("True", "ResolvedRefs")
    st = result.statuses["Gateway:infra/gw"]
    assert st.state == "Error" and "listener shop" in st.message


def test_another_namespace_needs_a_grant(ca):
    secret = tls_secret("certs", "shop", ca.issue("shop.test"))
    result = compiled(gateway(https("shop", "shop.test", "shop", namespace="certs")), secret)
    assert "shop.test" not in result.certificates
    assert cond(listener(result, "shop"), "ResolvedRefs") == ("False", "RefNotPermitted")
    grant = {"apiVersion": f"{GROUP}/v1beta1", "kind": "ReferenceGrant",
             "metadata": {"name": "g", "namespace": "certs"},
             "spec": {"from": [{"group": GROUP, "kind": "Gateway", "namespace": "infra"}],
                      "to": [{"group": "", "kind": "Secret"}]}}
    result = compiled(gateway(https("shop", "shop.test", "shop", namespace="certs")), secret, grant)
    assert "shop.test" in result.certificates
    assert cond(listener(result, "shop"), "ResolvedRefs") == ("True", "ResolvedRefs")


def test_the_older_gateway_keeps_a_host_the_newer_overlaps(ca):
    first, second = ca.issue("shop.test", cn="first"), ca.issue("shop.test", cn="second")
    result = compiled(
        gateway(https("shop", "shop.test", "a"), name="old", created="2024-01-01T00:00:00Z"),
        gateway(https("shop", "shop.test", "b"), name="new", created="2024-02-01T00:00:00Z"),
        tls_secret("infra", "a", first), tls_secret("infra", "b", second),
    )
    assert result.certificates["shop.test"].cert_pem == first.cert_pem
    assert cond(listener(result, "shop", "infra/new"), "OverlappingTLSConfig") == ("True", "OverlappingCertificates")
    assert not any(c.type == "OverlappingTLSConfig" for c in listener(result, "shop", "infra/old").conditions)
