"""TLS 1.2 and 1.3 only, forward-secret AEAD suites only."""

from __future__ import annotations

import asyncio
import ssl

import pytest

from gateway.tls import CertificateStore
from tlsharness import CA, start_tls_proxy, tls_client

NAME = "api.example.com"


def _old_client(ca: CA, version: ssl.TLSVersion) -> ssl.SSLContext:
    ctx = ca.client_context()
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")  # let this client really offer the old protocol
    ctx.minimum_version = ssl.TLSVersion.TLSv1
    ctx.maximum_version = version
    return ctx


async def _control_server_accepts(ca: CA, tmp_path, version: ssl.TLSVersion) -> bool:
    """Whether this machine's OpenSSL can speak ``version`` at all (else the refusal proves nothing)."""
    issued = ca.issue(NAME)
    (tmp_path / "c.crt").write_bytes(issued.cert_pem)
    (tmp_path / "c.key").write_bytes(issued.key_pem)
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    sctx.minimum_version = ssl.TLSVersion.TLSv1
    sctx.load_cert_chain(tmp_path / "c.crt", tmp_path / "c.key")
    srv = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0, ssl=sctx)
    port = srv.sockets[0].getsockname()[1]
    try:
        _, w = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port, ssl=_old_client(ca, version), server_hostname=NAME), 5)
        w.close()
        return True
    except (ssl.SSLError, ConnectionError, asyncio.TimeoutError):
        return False
    finally:
        srv.close()


@pytest.fixture
async def proxy():
    ca = CA()
    store = CertificateStore()
    store.update({NAME: ca.issue(NAME).bundle()})
    server = await start_tls_proxy(None, store)
    yield ca, server
    await server.close()


async def test_tls11_is_refused(proxy, tmp_path):
    ca, server = proxy
    if not await _control_server_accepts(ca, tmp_path, ssl.TLSVersion.TLSv1_1):
        pytest.skip("this OpenSSL cannot speak TLS 1.1 even to a permissive server")
    with pytest.raises((ssl.SSLError, ConnectionError)):
        async with tls_client(server, NAME, _old_client(ca, ssl.TLSVersion.TLSv1_1)):
            pass


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
async def test_tls12_and_tls13_are_served(proxy, version):
    ca, server = proxy
    ctx = ca.client_context()
    ctx.minimum_version = ctx.maximum_version = version
    async with tls_client(server, NAME, ctx) as c:
        assert c.ssl_object.version() == {"TLSv1_2": "TLSv1.2", "TLSv1_3": "TLSv1.3"}[version.name]
        assert (await c.request("GET", "/")).status == 503  # no table: answered by the proxy over TLS


async def test_tls12_suites_are_forward_secret_aead(proxy):
    ca, server = proxy
    cbc = ca.client_context()
    cbc.maximum_version = ssl.TLSVersion.TLSv1_2
    cbc.set_ciphers("ECDHE-ECDSA-AES128-SHA")  # forward secret but CBC: not offered by the gateway
    with pytest.raises((ssl.SSLError, ConnectionError)):
        async with tls_client(server, NAME, cbc):
            pass
    gcm = ca.client_context()
    gcm.maximum_version = ssl.TLSVersion.TLSv1_2
    gcm.set_ciphers("ECDHE-ECDSA-AES128-GCM-SHA256")
    async with tls_client(server, NAME, gcm) as c:
        assert c.ssl_object.cipher()[0] == "ECDHE-ECDSA-AES128-GCM-SHA256"
