"""Throw-away credentials for the auth scenarios: an API key, an RS256 key pair and a token.

Generated fresh for every run, never printed, and only written into the run's
temp folder (the Secret manifests and the wrk script that sends them).
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

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
