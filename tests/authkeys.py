"""Keys, tokens and Secret objects for the auth tests (generated, never fixed)."""

from __future__ import annotations

import base64
import functools
import json
import time

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from gateway.auth import AuthRequest


@functools.cache
def rsa_key(n: int = 0) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@functools.cache
def ec_key(n: int = 0) -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@functools.cache
def ed_key(n: int = 0) -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


def public_pem(private) -> bytes:
    return private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def jwk(private, kid: str | None = None, alg: str | None = None) -> dict:
    if isinstance(private, rsa.RSAPrivateKey):
        d = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key()))
    elif isinstance(private, ec.EllipticCurvePrivateKey):
        d = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(private.public_key()))
    else:
        d = json.loads(jwt.algorithms.OKPAlgorithm.to_jwk(private.public_key()))
    if kid is not None:
        d["kid"] = kid
    if alg is not None:
        d["alg"] = alg
    return d


def jwks(*keys: dict) -> str:
    return json.dumps({"keys": list(keys)})


def token(key, alg: str = "RS256", kid: str | None = None, **claims) -> str:
    now = int(time.time())
    payload = {"sub": "alice", "iat": now, "exp": now + 300}
    payload.update(claims)
    payload = {k: v for k, v in payload.items() if v is not None}
    headers = {"kid": kid} if kid is not None else None
    return jwt.encode(payload, key, algorithm=alg, headers=headers)


def b64(data: str | bytes) -> str:
    if isinstance(data, str):
        data = data.encode()
    return base64.b64encode(data).decode()


def secret(name: str, namespace: str = "shop", data: dict | None = None, string_data: dict | None = None, **meta) -> dict:
    obj: dict = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": namespace, **meta}}
    if data is not None:
        obj["data"] = {k: b64(v) for k, v in data.items()}
    if string_data is not None:
        obj["stringData"] = dict(string_data)
    return obj


def request(headers: dict | None = None, query: str = "") -> AuthRequest:
    return AuthRequest({k.lower(): v for k, v in (headers or {}).items()}, query, "/")


def bearer(tok: str) -> AuthRequest:
    return request({"authorization": f"Bearer {tok}"})


def basic(user: str, password: str) -> AuthRequest:
    return request({"authorization": "Basic " + b64(f"{user}:{password}")})
