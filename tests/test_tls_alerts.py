"""A refused TLS handshake says why on the wire: a fatal alert record, then the close.

A ClientHello offering only TLS 1.0/1.1 gets ``protocol_version`` (70; RFC 8446
and RFC 5246 E.1); a name with no certificate and no default certificate gets
``unrecognized_name`` (112; RFC 6066 section 3). Raw sockets on loopback: the
hello is built by the ssl module through a memory BIO, and the test reads the
bytes that come back, on the asyncio loop and on uvloop (the one the gateway
runs on): both transports used to close after 0 bytes.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
import warnings

import pytest
import uvloop

from gateway.config import Limits
from gateway.tls import CertificateStore
from tlsharness import CA, start_tls_proxy, tls_client, tls_port

NAME = "api.example.com"
ALERT = 21  # TLS record content type
FATAL = 2
PROTOCOL_VERSION = 70
UNRECOGNIZED_NAME = 112

RUNNERS = pytest.mark.parametrize("run", [asyncio.run, uvloop.run], ids=["asyncio", "uvloop"])


def client_hello(server_name: str | None, versions: tuple[ssl.TLSVersion, ssl.TLSVersion] | None = None) -> bytes:
    """The first flight of a client offering ``versions`` (min, max): the ClientHello record."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if versions is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # TLS 1.0/1.1 on purpose
            ctx.set_ciphers("DEFAULT:@SECLEVEL=0")  # else OpenSSL will not offer them at all
            ctx.minimum_version, ctx.maximum_version = versions
    outgoing = ssl.MemoryBIO()
    tls = ctx.wrap_bio(ssl.MemoryBIO(), outgoing, server_hostname=server_name)
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    hello = outgoing.read()
    assert hello[0] == 22 and hello[5] == 1, "not a ClientHello record"
    return hello


async def first_record(port: int, hello: bytes) -> tuple[bytes, bool]:
    """Send ``hello`` on a raw socket; the first TLS record back (b"" on close) and whether
    the server then closes once the client half-closes (as clients do after a fatal alert)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(hello)
        try:
            head = await asyncio.wait_for(reader.readexactly(5), 5)
            record = head + await asyncio.wait_for(reader.readexactly(int.from_bytes(head[3:5], "big")), 5)
        except asyncio.IncompleteReadError as e:
            return e.partial, True
        writer.transport.write_eof()
        try:
            rest = await asyncio.wait_for(reader.read(), 5)
        except asyncio.TimeoutError:
            return record, False
        return record, rest == b""
    finally:
        writer.close()


def assert_alert(record: bytes, description: int) -> None:
    assert record, "connection closed after 0 bytes: no alert"
    assert record[0] == ALERT, f"not an alert record: {record[:16]!r}"
    assert record[5:7] == bytes([FATAL, description]), f"alert {record[5:7]!r}, wanted fatal {description}"


async def _proxy(default: bool = False):
    ca = CA()
    store = CertificateStore()
    certs = {NAME: ca.issue(NAME, cn="api").bundle()}
    if default:
        certs["*"] = ca.issue("default.test", cn="default").bundle()
    store.update(certs)
    # A long handshake timeout: the close seen must come from the client's EOF, not from it.
    return ca, await start_tls_proxy(None, store, limits=Limits(header_timeout=60.0))


@RUNNERS
@pytest.mark.parametrize("old", ["TLSv1", "TLSv1_1"])
def test_a_hello_offering_only_tls10_or_tls11_gets_protocol_version(run, old):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        versions = (ssl.TLSVersion.TLSv1, getattr(ssl.TLSVersion, old))

    async def scenario():
        _, server = await _proxy()
        try:
            record, closed = await first_record(tls_port(server), client_hello(NAME, versions))
            assert_alert(record, PROTOCOL_VERSION)
            assert closed, "the server kept the refused connection open after the client's EOF"
        finally:
            await server.close()

    run(scenario())


@RUNNERS
@pytest.mark.parametrize("sni", ["unknown.example", None], ids=["unknown", "no-sni"])
def test_an_unknown_name_without_a_default_certificate_gets_unrecognized_name(run, sni):
    async def scenario():
        ca, server = await _proxy()
        try:
            record, closed = await first_record(tls_port(server), client_hello(sni))
            assert_alert(record, UNRECOGNIZED_NAME)
            assert closed
            # The listener goes on serving the names it has a certificate for.
            async with tls_client(server, NAME, ca.client_context()) as c:
                assert c.cn == "api"
        finally:
            await server.close()

    run(scenario())


@RUNNERS
def test_a_client_that_ignores_the_alert_is_cut_by_its_next_bytes(run):
    async def scenario():
        _, server = await _proxy()
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", tls_port(server))
            writer.write(client_hello("unknown.example"))
            head = await asyncio.wait_for(reader.readexactly(7), 5)
            assert_alert(head, UNRECOGNIZED_NAME)
            writer.write(b"\x16\x03\x03\x00\x01\x00")  # anything more: the refusal stands, the server closes
            assert await asyncio.wait_for(reader.read(), 5) == b""
            writer.close()
        finally:
            await server.close()

    run(scenario())


@RUNNERS
def test_an_unknown_name_with_a_default_certificate_is_served_the_default(run):
    async def scenario():
        ca, server = await _proxy(default=True)
        try:
            async with tls_client(server, "unknown.example", ca.client_context(check_hostname=False)) as c:
                assert c.cn == "default"
        finally:
            await server.close()

    run(scenario())


def test_the_blocking_ssl_module_sends_the_same_alerts():
    """Control: a blocking ssl server socket sends these alerts, so the bytes asserted above are OpenSSL's."""
    store = CertificateStore()
    store.update({NAME: CA().issue(NAME).bundle()})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        old = client_hello(NAME, (ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1))
    for hello, description in ((old, PROTOCOL_VERSION), (client_hello("unknown.example"), UNRECOGNIZED_NAME)):
        a, b = socket.socketpair()
        with a, b:
            b.sendall(hello)
            a.settimeout(5)
            with store.server_context.wrap_socket(a, server_side=True, do_handshake_on_connect=False) as server:
                with pytest.raises(ssl.SSLError):
                    server.do_handshake()
            b.settimeout(5)
            deadline = time.monotonic() + 5
            data = b""
            while len(data) < 7 and time.monotonic() < deadline:
                data += b.recv(64)
            assert_alert(data, description)
