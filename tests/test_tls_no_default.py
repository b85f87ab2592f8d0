"""No certificate for the name and no default: the handshake fails at once, and the listener lives on.

The SNI callback answers ``unrecognized_name``; the client sees that alert as
an SSL error (the bytes on the wire: tests/test_tls_alerts.py). It is refused
at once, never left hanging.
"""

from __future__ import annotations

import asyncio
import ssl

import pytest

from gateway.tls import CertificateStore
from polling import eventually
from tlsharness import CA, start_tls_proxy, tls_client, tls_port


async def test_unknown_name_fails_the_handshake_with_unrecognized_name():
    ca = CA()
    store = CertificateStore()
    store.update({"api.example.com": ca.issue("api.example.com", cn="api").bundle()})
    server = await start_tls_proxy(None, store)
    try:
        loose = ca.client_context(check_hostname=False)
        for sni in ("other.test", None):
            with pytest.raises((ssl.SSLError, ConnectionError)):
                async with tls_client(server, sni, loose):  # bounded by a 5 s wait_for
                    pass
        # Nothing half-open is left behind on the server side.
        await eventually(lambda: not server.connections, 5, "the refused connections to be gone")
        # The listener still serves the names it has a certificate for.
        async with tls_client(server, "api.example.com", ca.client_context()) as c:
            assert c.cn == "api"
            assert (await c.request("GET", "/")).status == 503  # no table yet: the proxy itself answered
    finally:
        await server.close()


async def test_no_certificates_at_all_still_answers_with_an_alert_not_a_hang():
    server = await start_tls_proxy(None, CertificateStore())
    try:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        with pytest.raises((ssl.SSLError, ConnectionError)):
            await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", tls_port(server), ssl=ctx, server_hostname="x.test"), 5
            )
    finally:
        await server.close()
