"""End to end: a Gateway's HTTPS listeners (tls mode Terminate) served on ``--listen-tls``, one
certificate per listener hostname chosen by SNI, from ``crdgate run --manifests DIR``; a
certificate in another namespace only with a ReferenceGrant there."""

from __future__ import annotations

import asyncio

import pytest
from gatewayproc import GatewayProcess, endpoint_manifests
from proxyharness import free_port, start_backend
from test_tls_e2e import fetch, secret_yaml
from tlsharness import CA

from polling import eventually

GATEWAY = """
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: crdgate}
spec: {controllerName: crdgate.io/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: infra}
spec:
  gatewayClassName: crdgate
  listeners:
  - name: shop
    port: 443
    protocol: HTTPS
    hostname: shop.test
    tls: {mode: Terminate, certificateRefs: [{name: shop-tls}]}
    allowedRoutes: {namespaces: {from: All}}
  - name: api
    port: 443
    protocol: HTTPS
    hostname: "*.api.test"
    tls: {mode: Terminate, certificateRefs: [{name: api-tls, namespace: certs}]}
    allowedRoutes: {namespaces: {from: All}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: shop}
spec:
  parentRefs: [{name: gw, namespace: infra}]
  hostnames: [shop.test, v1.api.test]
  rules:
  - backendRefs: [{name: web, port: 80}]
"""

GRANT = """
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {name: gateways, namespace: certs}
spec:
  from: [{group: gateway.networking.k8s.io, kind: Gateway, namespace: infra}]
  to: [{group: "", kind: Secret}]
"""


@pytest.fixture
async def world(tmp_path):
    ca = CA()
    backend = await start_backend("web")
    (tmp_path / "services.yaml").write_text(endpoint_manifests("shop", "web", backend.port))
    (tmp_path / "gateway.yaml").write_text(GATEWAY)
    (tmp_path / "shop-tls.yaml").write_text(secret_yaml("infra", "shop-tls", ca.issue("shop.test", cn="shop")))
    (tmp_path / "api-tls.yaml").write_text(secret_yaml("certs", "api-tls", ca.issue("*.api.test", cn="api")))
    (tmp_path / "fallback.yaml").write_text(secret_yaml("infra", "fallback", ca.issue("fallback.test", cn="fallback")))
    tls_port = free_port()
    gw = GatewayProcess(tmp_path, "--listen-tls", f"127.0.0.1:{tls_port}", "--default-certificate", "infra/fallback")
    try:
        await asyncio.get_running_loop().run_in_executor(None, gw.wait_ready)
        yield ca, gw, tls_port, tmp_path
    finally:
        gw.close()
        await backend.runner.cleanup()


async def test_https_listeners_serve_their_certificates_by_sni(world):
    ca, gw, port, folder = world
    ctx = ca.client_context()
    cn, r = await fetch(port, "shop.test", ctx)
    assert (cn, r.status) == ("shop", 200)

    # The api listener's Secret is in another namespace with no grant: not served, and said so.
    loose = ca.client_context(check_hostname=False)
    cn, _ = await fetch(port, "v1.api.test", loose)
    assert cn == "fallback"
    await asyncio.to_thread(gw.wait_log, "RefNotPermitted")

    # A ReferenceGrant in the Secret's namespace: the listener's certificate is served.
    (folder / "grant.yaml").write_text(GRANT)

    async def api_cert():
        cn, r = await fetch(port, "v1.api.test", loose)
        return cn == "api" and r.status == 200

    await eventually(api_cert, what="the api listener's certificate once granted")
    cn, r = await fetch(port, "v1.api.test", ctx)  # and it verifies for the name
    assert (cn, r.status) == ("api", 200)
