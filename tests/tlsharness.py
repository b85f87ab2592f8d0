"""Loopback TLS machinery for tests: a test CA, certificates, TLS Secrets, TLS clients.

Certificates are generated per test run with ``cryptography`` (EC P-256: fast).
The proxy side is a real ``gateway.server.Server`` with a TLS listener and a
``gateway.tls.CertificateStore``; clients are asyncio streams with their own
ssl contexts, so what a test sees is what a real client would.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import ipaddress
import ssl
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gateway.config import GatewayConfig, Limits
from gateway.routing import RouteTable
from gateway.server import Server
from gateway.tls import CertBundle, CertificateStore
from proxyharness import Response, read_response


def _key():
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


@dataclass
class Issued:
    cert_pem: bytes
    key_pem: bytes
    cn: str

    def bundle(self, source: str = "test") -> CertBundle:
        return CertBundle(self.cert_pem, self.key_pem, source=source)


class CA:
    """A throwaway certificate authority."""

    def __init__(self, name: str = "crdgate test CA"):
        self.key = _key()
        self.name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = dt.datetime.now(dt.timezone.utc)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(self.name)
            .issuer_name(self.name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.pem = self.cert.public_bytes(serialization.Encoding.PEM)

    def issue(self, *names: str, cn: str | None = None, key=None, valid: tuple | None = None) -> Issued:
        """A server certificate for DNS names (and IP addresses) ``names``; ``valid``: (from, until)."""
        key = key or _key()
        cn = cn or names[0]
        now = dt.datetime.now(dt.timezone.utc)
        start, end = valid or (now - dt.timedelta(minutes=5), now + dt.timedelta(days=1))
        sans = []
        for n in names:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(n)))
            except ValueError:
                sans.append(x509.DNSName(n))
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .issuer_name(self.name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        return Issued(cert.public_bytes(serialization.Encoding.PEM), _pem_key(key), cn)

    def client_context(self, check_hostname: bool = True) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cadata=self.pem.decode())
        ctx.check_hostname = check_hostname
        return ctx


def mismatched(issued: Issued) -> Issued:
    """The same certificate with somebody else's key."""
    return Issued(issued.cert_pem, _pem_key(_key()), issued.cn)


def tls_secret(namespace: str, name: str, issued: Issued | None = None, crt: bytes | None = None,
               key: bytes | None = None) -> dict:
    """A kubernetes.io/tls Secret as the API serves it (base64 data)."""
    crt = crt if crt is not None else issued.cert_pem
    key = key if key is not None else issued.key_pem
    return {
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
        "metadata": {"name": name, "namespace": namespace},
        "data": {"tls.crt": base64.b64encode(crt).decode(), "tls.key": base64.b64encode(key).decode()},
    }


def peer_cn(ssl_object) -> str:
    """The common name of the certificate the server presented."""
    der = ssl_object.getpeercert(binary_form=True)
    cert = x509.load_der_x509_certificate(der)
    return cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value


async def start_tls_proxy(tbl: RouteTable | None, store: CertificateStore, limits: Limits | None = None,
                          **cfg) -> Server:
    """A Server with a plain and a TLS listener on 127.0.0.1 (ports: addresses / tls_addresses)."""
    config = GatewayConfig(listen=("127.0.0.1", 0), listen_tls=("127.0.0.1", 0), access_log=False,
                           limits=limits or Limits(), **cfg)
    server = Server(config, certificates=store)
    if tbl is not None:
        server.swap(tbl)
    await server.start()
    return server


def tls_port(server: Server) -> int:
    return server.tls_addresses[0][1]


class TLSClient:
    """One TLS connection to the proxy: SNI ``server_hostname``, raw HTTP/1.1 on top."""

    def __init__(self, port: int, server_hostname: str | None, ctx: ssl.SSLContext):
        self.port = port
        self.server_hostname = server_hostname
        self.ctx = ctx
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def __aenter__(self) -> "TLSClient":
        self.reader, self.writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", self.port, ssl=self.ctx, server_hostname=self.server_hostname),
            5,
        )
        return self

    async def __aexit__(self, *exc) -> None:
        self.writer.close()
        try:
            await asyncio.wait_for(self.writer.wait_closed(), 5)
        except (ConnectionError, OSError, asyncio.TimeoutError, ssl.SSLError):
            pass

    @property
    def ssl_object(self):
        return self.writer.get_extra_info("ssl_object")

    @property
    def cn(self) -> str:
        return peer_cn(self.ssl_object)

    async def request(self, method: str = "GET", path: str = "/", host: str | None = None,
                      headers: dict | None = None, body: bytes = b"") -> Response:
        h = {"Host": host or self.server_hostname or "127.0.0.1"}
        h.update(headers or {})
        if body:
            h["Content-Length"] = str(len(body))
        head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in h.items()) + "\r\n"
        self.writer.write(head.encode("latin-1") + body)
        await self.writer.drain()
        return await asyncio.wait_for(read_response(self.reader, method == "HEAD"), 5)


def tls_client(server: Server, server_hostname: str | None, ctx: ssl.SSLContext) -> TLSClient:
    return TLSClient(tls_port(server), server_hostname, ctx)
