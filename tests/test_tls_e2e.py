"""End to end: `crdgate run --manifests DIR --listen-tls` serving an Ingress's spec.tls Secret.

The folder holds a kubernetes.io/tls Secret (stringData, as people write them),
an Ingress naming it, and a default certificate. Editing the Secret's file
rotates the certificate; a broken edit is logged with the Ingress and the
previous certificate keeps serving.
"""

from __future__ import annotations

import asyncio
import ssl
import time

import pytest

from gatewayproc import GatewayProcess, endpoint_manifests
from proxyharness import free_port, read_response, request, start_backend
from tlsharness import CA, mismatched, peer_cn


def secret_yaml(ns: str, name: str, issued) -> str:
    def block(pem: bytes) -> str:
        return "\n".join("    " + line for line in pem.decode().strip().splitlines())

    return f"""apiVersion: v1
kind: Secret
type: kubernetes.io/tls
metadata: {{name: {name}, namespace: {ns}}}
stringData:
  tls.crt: |
{block(issued.cert_pem)}
  tls.key: |
{block(issued.key_pem)}
"""


INGRESS = """
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: web, namespace: shop}
spec:
  ingressClassName: crdgate
  tls:
    - hosts: [shop.test]
      secretName: shop-tls
  rules:
    - host: shop.test
      http:
        paths:
          - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}
"""


async def fetch(port: int, sni: str, ctx: ssl.SSLContext, host: str | None = None):
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname=sni), 5)
    try:
        cn = peer_cn(writer.get_extra_info("ssl_object"))
        writer.write(f"GET /hello HTTP/1.1\r\nHost: {host or sni}\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        return cn, await asyncio.wait_for(read_response(reader), 5)
    finally:
        writer.close()


async def eventually_cn(port, ctx, want: str, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    cn = ""
    while time.monotonic() < deadline:
        cn, _ = await fetch(port, "shop.test", ctx)
        if cn == want:
            return cn
        await asyncio.sleep(0.1)
    return cn


@pytest.fixture
async def world(tmp_path):
    ca = CA()
    backend = await start_backend("web")
    (tmp_path / "services.yaml").write_text(endpoint_manifests("shop", "web", backend.port))
    (tmp_path / "ingress.yaml").write_text(INGRESS)
    (tmp_path / "shop-tls.yaml").write_text(secret_yaml("shop", "shop-tls", ca.issue("shop.test", cn="shop-v1")))
    (tmp_path / "fallback.yaml").write_text(secret_yaml("infra", "fallback", ca.issue("fallback.test", cn="fallback")))
    tls_port = free_port()
    gw = GatewayProcess(tmp_path, "--listen-tls", f"127.0.0.1:{tls_port}", "--default-certificate", "infra/fallback")
    try:
        await asyncio.get_running_loop().run_in_executor(None, gw.wait_ready)
        yield ca, gw, tls_port, tmp_path, backend
    finally:
        gw.close()
        await backend.runner.cleanup()


async def test_tls_from_manifests_serves_rotates_and_survives_a_bad_secret(world):
    ca, gw, port, folder, backend = world
    ctx = ca.client_context()

    cn, r = await fetch(port, "shop.test", ctx)
    assert cn == "shop-v1"
    assert r.status == 200
    assert r.json()["headers"]["x-forwarded-proto"] == "https"
    # Unknown names get the default certificate (and no 421: it is bound to no name).
    loose = ca.client_context(check_hostname=False)
    cn, r = await fetch(port, "other.test", loose, host="shop.test")
    assert cn == "fallback" and r.status == 200
    # The SNI chose shop.test's certificate: another Host on that connection is misdirected.
    _, r = await fetch(port, "shop.test", ctx, host="other.test")
    assert r.status == 421

    # Rotation: edit the Secret's file; new connections get the new certificate.
    (folder / "shop-tls.yaml").write_text(secret_yaml("shop", "shop-tls", ca.issue("shop.test", cn="shop-v2")))
    assert await eventually_cn(port, ctx, "shop-v2") == "shop-v2"

    # A broken edit (key of another certificate): logged with the Ingress; the previous one keeps serving.
    broken = mismatched(ca.issue("shop.test", cn="shop-broken"))
    (folder / "shop-tls.yaml").write_text(secret_yaml("shop", "shop-tls", broken))
    await asyncio.to_thread(gw.wait_log, "InvalidCertificate")
    logs = gw.logs()
    assert "InvalidCertificate" in logs and "shop/web" in logs, logs
    assert "PRIVATE KEY" not in logs
    cn, r = await fetch(port, "shop.test", ctx)
    assert cn == "shop-v2" and r.status == 200
    # The plain listener routes the same Ingress, and says so upstream.
    r = await request(gw.port, "GET", "/hello", host="shop.test")
    assert r.status == 200 and r.json()["headers"]["x-forwarded-proto"] == "http"
