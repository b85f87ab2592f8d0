"""TLS termination: certificates by host pattern, chosen per handshake by SNI.

The controller (controller/certs.py) turns ``kubernetes.io/tls`` Secrets into
``CertBundle``s keyed by host pattern: an exact name, a ``*.suffix`` wildcard,
or ``*`` for the default certificate. crdgate/run.py hands every new set to
``CertificateStore.update``, which builds one ``ssl.SSLContext`` per certificate
and publishes an immutable index of them with one reference swap.

The TLS listener (gateway/server.py) uses ``CertificateStore.server_context``;
its ``sni_callback`` picks a context for each handshake: the exact host, then
wildcards from the longest suffix down, then the default; with none, the
handshake fails with the ``unrecognized_name`` alert. A hello offering only
TLS 1.0/1.1 gets OpenSSL's ``protocol_version`` alert. Both alerts reach the
client because the listener's SSL objects are ``AlertingSSLObject``s (asyncio
and uvloop would otherwise drop them). A connection keeps the
context it was given, so rotation never drops one. A bundle that does not load
(key and certificate do not match, not PEM) is logged and its pattern keeps
the certificate it had. gateway/http1.py reads ``bound_server_name`` for the 421
check. Nothing here imports the controller.
"""

from __future__ import annotations

import functools
import logging
import os
import ssl
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Mapping, NamedTuple

from gateway.errors import CertificateError

log = logging.getLogger("crdgate.tls")

DEFAULT_PATTERN = "*"  # the key of the default certificate in ``update``
MINIMUM_VERSION = ssl.TLSVersion.TLSv1_2
# TLS 1.2 suites: forward secrecy and AEAD only (Mozilla "intermediate" without
# the DHE suites). TLS 1.3 suites are OpenSSL's defaults, all of them modern.
CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"
ALPN = ("http/1.1",)
# What the TLS listener offers: HTTP/2 first, so a client that offers both gets it (gateway/h2server.py).
SERVER_ALPN = ("h2", "http/1.1")
# Python's ssl loads certificates only from files: keys go to a memory-backed
# folder when there is one, in a private directory, and are deleted at once.
_KEY_DIR = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
# The attribute the SNI callback leaves on an SSLObject whose name matched a
# host-bound certificate (read back with ``bound_server_name``).
_SNI_ATTR = "crdgate_server_name"


@dataclass(frozen=True, slots=True)
class CertBundle:
    """A certificate chain and its private key, PEM, as a Secret's tls.crt and tls.key hold them."""

    cert_pem: bytes = field(repr=False)
    key_pem: bytes = field(repr=False)
    source: str = ""  # where it came from, for logs: "Secret shop/shop-tls"


def _base_context() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = MINIMUM_VERSION
    ctx.set_ciphers(CIPHERS)
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE | ssl.OP_NO_RENEGOTIATION
    ctx.set_alpn_protocols(list(SERVER_ALPN))
    return ctx


def build_context(bundle: CertBundle) -> ssl.SSLContext:
    """A server context serving ``bundle``. CertificateError when it cannot load."""
    ctx = _base_context()
    with tempfile.TemporaryDirectory(prefix="crdgate-tls-", dir=_KEY_DIR) as folder:  # mode 0700
        cert_path = os.path.join(folder, "tls.crt")
        key_path = os.path.join(folder, "tls.key")
        for path, data in ((cert_path, bundle.cert_pem), (key_path, bundle.key_pem)):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
        try:
            ctx.load_cert_chain(cert_path, key_path, password=lambda: b"")
        except ssl.SSLError as e:
            reason = e.reason or str(e)
            if "KEY_VALUES_MISMATCH" in reason.upper():
                raise CertificateError("tls.key does not match the certificate in tls.crt") from None
            raise CertificateError(f"tls.crt/tls.key cannot be loaded ({reason})") from None
        except (OSError, ValueError) as e:
            raise CertificateError(f"tls.crt/tls.key cannot be loaded ({e})") from None
    return ctx


def validity_warning(bundle: CertBundle, now: datetime | None = None) -> str | None:
    """Why a loadable certificate may still be refused by clients (expired, not yet valid)."""
    from cryptography import x509  # only when a certificate loads: keeps it off every start-up

    try:
        cert = x509.load_pem_x509_certificate(bundle.cert_pem)
    except ValueError:
        return None  # OpenSSL loaded it; nothing more to say
    now = now or datetime.now(timezone.utc)
    if cert.not_valid_after_utc < now:
        return f"expired on {cert.not_valid_after_utc.isoformat()}"
    if cert.not_valid_before_utc > now:
        return f"not valid before {cert.not_valid_before_utc.isoformat()}"
    return None


def certificate_info(bundle: CertBundle) -> dict:
    """The public facts of a bundle's leaf certificate (names, issuer, validity), never the key."""
    return _certificate_facts(bundle.cert_pem)


# Keyed by the certificate alone, so no private key is kept alive by the cache;
# a dashboard asks every few seconds about the same few certificates.
@functools.lru_cache(maxsize=256)
def _certificate_facts(cert_pem: bytes) -> dict:
    from cryptography import x509

    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError as e:
        return {"error": f"tls.crt is not a PEM certificate ({e})"}
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        names = []
    return {
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
        "dnsNames": list(names),
        "notBefore": cert.not_valid_before_utc.isoformat(),
        "notAfter": cert.not_valid_after_utc.isoformat(),
        "notAfterUnix": cert.not_valid_after_utc.timestamp(),
    }


def bound_server_name(ssl_object) -> str | None:
    """The SNI name of a connection when it selected a host-bound certificate (not the default)."""
    return getattr(ssl_object, _SNI_ATTR, None) if ssl_object is not None else None


class AlertingSSLObject(ssl.SSLObject):
    """An SSLObject whose failed handshake still sends its alert to the client.

    asyncio's and uvloop's SSL transports close the connection as soon as
    ``do_handshake`` raises, without sending what OpenSSL left in the outgoing
    memory BIO (CPython gh-98078; uvloop's sslproto.pyx has the same code):
    the ``protocol_version`` or ``unrecognized_name`` alert never left, and the
    client saw 0 bytes and a closed socket instead of the reason. Neither
    transport can be patched from here, so the failure is reported one step
    late: the first time, "want read", on which both transports send the
    outgoing BIO (the alert); the next call (the client's next bytes) raises
    the real error. A client closes on a fatal alert (RFC 8446 6.2), and the
    transport closes on that EOF; one that stays is cut by the handshake
    timeout like any client that never finishes a handshake.
    """

    _refusal: ssl.SSLError | None = None

    def do_handshake(self) -> None:
        if self._refusal is not None:
            raise self._refusal
        try:
            super().do_handshake()
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError, ssl.SSLSyscallError):
            raise
        except ssl.SSLError as e:
            self._refusal = e
            raise ssl.SSLWantReadError("handshake refused; sending the alert first") from e


class _Index(NamedTuple):
    exact: Mapping[str, ssl.SSLContext]
    wildcard: Mapping[str, ssl.SSLContext]  # "*.example.com" kept as "example.com"
    default: ssl.SSLContext | None


class CertificateStore:
    """Every certificate the TLS listener serves, and the SNI choice between them."""

    def __init__(self) -> None:
        self._entries: dict[str, tuple[CertBundle, ssl.SSLContext]] = {}
        self._failed: dict[str, tuple[CertBundle, str]] = {}  # pattern -> the bundle that failed, why
        self._index = _Index({}, {}, None)
        self.server_context = _base_context()
        self.server_context.sni_callback = self._on_sni
        # The listener's SSL objects come from this context (the SNI callback
        # only swaps their context later): make them send their alerts.
        self.server_context.sslobject_class = AlertingSSLObject

    # -- publishing ------------------------------------------------------------------

    def update(self, certs: Mapping[str, CertBundle]) -> None:
        """Serve ``certs`` (host pattern -> bundle; ``*`` is the default certificate) from now on.

        Unchanged bundles keep their context; a bundle that fails to load leaves
        its pattern on the certificate it had (if any) and is logged once.
        """
        entries: dict[str, tuple[CertBundle, ssl.SSLContext]] = {}
        failed: dict[str, tuple[CertBundle, str]] = {}
        # One context per certificate, shared by every pattern that names it;
        # a bundle that failed is neither retried nor logged again.
        contexts: dict[CertBundle, ssl.SSLContext] = {b: c for b, c in self._entries.values()}
        bad: dict[CertBundle, str] = {b: why for b, why in self._failed.values()}
        for pattern, bundle in certs.items():
            pattern = pattern.lower().rstrip(".")
            old = self._entries.get(pattern)
            if old is not None and (old[0] is bundle or old[0] == bundle):
                entries[pattern] = old
                continue
            ctx = contexts.get(bundle)
            if ctx is None and bundle not in bad:
                try:
                    ctx = contexts[bundle] = build_context(bundle)
                except CertificateError as e:
                    bad[bundle] = str(e)
                    log.warning(
                        "TLS certificate for %s from %s not loaded: %s; %s", pattern, bundle.source or "?", e,
                        "the previous certificate keeps serving" if old else "no certificate for this host",
                    )
                else:
                    warning = validity_warning(bundle)
                    if warning:
                        log.warning("TLS certificate for %s from %s is %s", pattern, bundle.source or "?", warning)
            if ctx is not None:
                entries[pattern] = (bundle, ctx)
                continue
            failed[pattern] = (bundle, bad[bundle])
            if old is not None:
                entries[pattern] = old  # the previous certificate keeps serving
        exact: dict[str, ssl.SSLContext] = {}
        wildcard: dict[str, ssl.SSLContext] = {}
        default = None
        for pattern, (_, ctx) in entries.items():
            if pattern == DEFAULT_PATTERN:
                default = ctx
            elif pattern.startswith("*."):
                wildcard[pattern[2:]] = ctx
            else:
                exact[pattern] = ctx
        self._entries = entries
        self._failed = failed
        self._index = _Index(exact, wildcard, default)  # one swap: handshakes see old or new, never half

    @property
    def errors(self) -> dict[str, str]:
        """Patterns whose latest bundle did not load, and why."""
        return {p: why for p, (_, why) in self._failed.items()}

    def serving(self, pattern: str) -> CertBundle | None:
        """The bundle serving ``pattern`` now (``*`` for the default)."""
        entry = self._entries.get(pattern.lower())
        return entry[0] if entry is not None else None

    def __len__(self) -> int:
        return len(self._entries)

    def bundles(self) -> list[tuple[str, CertBundle]]:
        """(host pattern, bundle serving it), sorted by pattern: for the admin dashboard."""
        return sorted((p, b) for p, (b, _) in self._entries.items())

    # -- choosing ------------------------------------------------------------------------

    def select(self, server_name: str | None) -> tuple[ssl.SSLContext | None, bool]:
        """The context for an SNI name, and whether it is host-bound (False: the default)."""
        idx = self._index
        if server_name:
            name = server_name.lower().rstrip(".")
            ctx = idx.exact.get(name)
            if ctx is not None:
                return ctx, True
            if idx.wildcard:
                # "a.b.example.com" tries "b.example.com", then "example.com": longest wildcard first.
                dot = name.find(".")
                while dot != -1:
                    ctx = idx.wildcard.get(name[dot + 1 :])
                    if ctx is not None:
                        return ctx, True
                    dot = name.find(".", dot + 1)
        return idx.default, False

    def _on_sni(self, ssl_object, server_name, _context):
        try:
            ctx, bound = self.select(server_name)
            if ctx is None:
                return ssl.ALERT_DESCRIPTION_UNRECOGNIZED_NAME
            ssl_object.context = ctx
            if bound:
                setattr(ssl_object, _SNI_ATTR, server_name.lower().rstrip("."))
        except Exception:  # a bug must fail one handshake, not the listener
            log.exception("choosing a TLS certificate failed")
            return ssl.ALERT_DESCRIPTION_INTERNAL_ERROR
        return None


def upstream_context(ca_file: str | None = None, alpn: tuple[str, ...] = ("http/1.1",)) -> ssl.SSLContext:
    """The client context for https upstreams: system CAs plus ``ca_file``, hostname checked;
    ``alpn``: what it offers (HTTP/2 endpoints offer h2 first, gateway/h2upstream.py)."""
    ctx = ssl.create_default_context()
    if ca_file:
        ctx.load_verify_locations(cafile=ca_file)
    ctx.minimum_version = MINIMUM_VERSION
    ctx.set_alpn_protocols(list(alpn))
    return ctx
