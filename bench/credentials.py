"""Throw-away credentials: an API key, an RS256 key pair and a token, a self-signed TLS certificate.

Generated fresh for every run, never printed, and only written into the run's
temp folder (the Secret manifests and the wrk script that sends them).
"""

from __future__ import annotations

import datetime
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

CONSUMER = "bench-client"


def api_key() -> str:
    return secrets.token_urlsafe(24)


@dataclass(frozen=True)
class JwtMaterial:
    public_pem: str
    token: str


def jwt_material(lifetime_s: int = 86_400) -> JwtMaterial:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    now = int(time.time())
    token = jwt.encode({"sub": CONSUMER, "iat": now, "exp": now + lifetime_s}, key, algorithm="RS256")
    return JwtMaterial(public_pem, token)


@dataclass(frozen=True)
class TlsMaterial:
    cert_file: str  # PEM files for nginx
    key_file: str
    cert_pem: bytes  # the same, for a kubernetes.io/tls Secret
    key_pem: bytes


def tls_certificate(folder, host: str = "bench.local") -> TlsMaterial:
    """A self-signed ECDSA certificate for ``host``, valid a day, written into ``folder`` (key 0600)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tls.crt").write_bytes(cert_pem)
    key_file = folder / "tls.key"
    key_file.touch(mode=0o600)
    key_file.write_bytes(key_pem)
    os.chmod(key_file, 0o600)
    return TlsMaterial(str(folder / "tls.crt"), str(key_file), cert_pem, key_pem)
