"""JWT verification keys: a fixed set from a Secret, or a JWKS fetched from a URL.

Every key carries the algorithms its own type allows (RSA: RS*/PS*, EC: the
one ES* of its curve, OKP: EdDSA, a shared secret: HS*), narrowed by the JWK's
``alg`` when it names one. The verifier only ever passes a key its own list,
so a token cannot choose how its key is read: an HS256 token "signed" with an
RSA public key as the HMAC secret finds no key that allows HS256, and ``none``
is in no list at all (RFC 8725 2.1).

``RemoteJWKS`` fetches with aiohttp and keeps the last good set: a refresh
happens in the background once the set is older than its TTL, and on a token
whose ``kid`` is unknown, but never more often than the refresh floor, so a
flood of made-up kids cannot turn into a flood of fetches. A failed fetch
keeps the previous keys (it is logged); an IdP that removes a key is seen at
the next successful fetch.

Used by bearer.py; built by controller/authbuild.py.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import aiohttp
import jwt
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_der_public_key,
    load_pem_public_key,
)

from .base import SecretContentError

log = logging.getLogger("crdgate.auth")

RSA_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
HMAC_ALGORITHMS = ("HS256", "HS384", "HS512")
_EC_ALGORITHMS = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512", "secp256k1": "ES256K"}
ASYMMETRIC_ALGORITHMS = frozenset(RSA_ALGORITHMS + tuple(_EC_ALGORITHMS.values()) + ("EdDSA",))
ALL_ALGORITHMS = ASYMMETRIC_ALGORITHMS | frozenset(HMAC_ALGORITHMS)
MIN_RSA_BITS = 2048
MIN_HMAC_BYTES = 32  # RFC 7518 3.2: at least the hash size for HS256

JWKS_TTL = 300.0
REFRESH_FLOOR = 10.0  # the default of --jwks-refresh-floor
FETCH_TIMEOUT = 5.0
MAX_JWKS_BYTES = 1 << 20


def algorithms_for_key(key: Any) -> tuple[str, ...]:
    """The algorithms a key's type allows; () for keys too weak to trust."""
    if isinstance(key, (bytes, bytearray)):
        return HMAC_ALGORITHMS if len(key) >= MIN_HMAC_BYTES else ()
    if isinstance(key, rsa.RSAPublicKey):
        return RSA_ALGORITHMS if key.key_size >= MIN_RSA_BITS else ()
    if isinstance(key, ec.EllipticCurvePublicKey):
        alg = _EC_ALGORITHMS.get(key.curve.name)
        return (alg,) if alg else ()
    if isinstance(key, (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey)):
        return ("EdDSA",)
    return ()


def _public(key: Any) -> Any:
    """A private key put where a public one belongs still verifies: keep its public half."""
    if isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey, ed25519.Ed25519PrivateKey, ed448.Ed448PrivateKey)):
        return key.public_key()
    return key


@dataclass(frozen=True, slots=True)
class KeyEntry:
    kid: str | None
    key: Any  # a cryptography public key, or bytes for HMAC
    algorithms: tuple[str, ...]

    def __reduce__(self):
        # cryptography's key objects do not pickle: a key sent to a proxy worker
        # (crdgate/workers.py hands it the table) travels as DER.
        if isinstance(self.key, bytes):
            return (KeyEntry, (self.kid, self.key, self.algorithms))
        der = self.key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
        return (_entry_from_der, (self.kid, der, self.algorithms))


def _entry_from_der(kid: str | None, der: bytes, algorithms: tuple[str, ...]) -> KeyEntry:
    return KeyEntry(kid, load_der_public_key(der), algorithms)


class KeySet:
    """Keys by ``kid``, plus all of them in order for tokens without one."""

    __slots__ = ("entries", "by_kid")

    def __init__(self, entries: Iterable[KeyEntry]):
        self.entries = tuple(entries)
        self.by_kid = {e.kid: e for e in self.entries if e.kid is not None}

    def candidates(self, kid: str | None, alg: str) -> tuple[KeyEntry, ...]:
        """Keys that may verify a token with this header."""
        if kid is not None:
            e = self.by_kid.get(kid)
            return (e,) if e is not None and alg in e.algorithms else ()
        return tuple(e for e in self.entries if alg in e.algorithms)

    def knows(self, kid: str) -> bool:
        return kid in self.by_kid

    def algorithms(self) -> frozenset[str]:
        return frozenset(a for e in self.entries for a in e.algorithms)

    def __len__(self) -> int:
        return len(self.entries)


def parse_jwks(document: str | bytes, *, allow_symmetric: bool = True, source: str = "jwks") -> KeySet:
    """A JWKS JSON document -> KeySet. Keys for encryption (``use: enc``), of
    unsupported types, or too weak are skipped; none left is an error."""
    try:
        data = json.loads(document)
    except (ValueError, UnicodeDecodeError) as e:
        raise SecretContentError(f"{source}: not valid JSON ({e.__class__.__name__})") from None
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
        raise SecretContentError(f'{source}: expected a JWKS document {{"keys": [...]}}')
    entries: list[KeyEntry] = []
    skipped: list[str] = []
    for i, jwk_data in enumerate(data["keys"]):
        label = f"keys[{i}]"
        if not isinstance(jwk_data, dict):
            skipped.append(f"{label}: not an object")
            continue
        if jwk_data.get("use", "sig") != "sig":
            continue
        if jwk_data.get("kty") == "oct" and not allow_symmetric:
            skipped.append(f"{label}: symmetric keys are not accepted from a URL")
            continue
        try:
            key = _public(jwt.PyJWK(jwk_data).key)
        except (jwt.exceptions.PyJWKError, jwt.exceptions.InvalidKeyError, ValueError, TypeError, KeyError) as e:
            skipped.append(f"{label}: {e.__class__.__name__}")
            continue
        algs = algorithms_for_key(key)
        declared = jwk_data.get("alg")
        if declared is not None:
            algs = tuple(a for a in algs if a == declared)
        if not algs:
            skipped.append(f"{label}: key type, size or alg not accepted")
            continue
        kid = jwk_data.get("kid")
        entries.append(KeyEntry(kid if isinstance(kid, str) else None, key, algs))
    if not entries:
        why = "; ".join(skipped) if skipped else "no signing keys"
        raise SecretContentError(f"{source}: no usable key ({why})")
    return KeySet(entries)


def parse_pem(pem: bytes, source: str = "publicKey") -> KeySet:
    """A PEM public key or certificate -> a one-key KeySet."""
    try:
        if b"-----BEGIN CERTIFICATE-----" in pem:
            key = x509.load_pem_x509_certificate(pem).public_key()
        else:
            key = load_pem_public_key(pem)
    except ValueError:
        raise SecretContentError(f"{source}: not a PEM public key or certificate") from None
    algs = algorithms_for_key(key)
    if not algs:
        raise SecretContentError(f"{source}: key type or size not accepted (RSA >= {MIN_RSA_BITS} bits, EC P-256/384/521, Ed25519/Ed448)")
    return KeySet([KeyEntry(None, key, algs)])


def hmac_keyset(secret: bytes, source: str = "secret") -> KeySet:
    secret = secret.strip()
    if len(secret) < MIN_HMAC_BYTES:
        raise SecretContentError(f"{source}: an HMAC secret needs at least {MIN_HMAC_BYTES} bytes")
    return KeySet([KeyEntry(None, bytes(secret), HMAC_ALGORITHMS)])


class RemoteJWKS:
    """A JWKS URL, its last good KeySet, and when it may be fetched again.

    Shared by every authenticator that names the same URL (authbuild keeps one
    per URL), so their keys and fetch budget are shared too. Touched only from
    the event loop thread.
    """

    def __init__(
        self,
        url: str,
        *,
        ttl: float = JWKS_TTL,
        refresh_floor: float = REFRESH_FLOOR,  # --jwks-refresh-floor, through controller/authbuild.py
        timeout: float = FETCH_TIMEOUT,
        max_bytes: int = MAX_JWKS_BYTES,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.url = url
        self.ttl = ttl
        self.refresh_floor = refresh_floor
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.clock = clock
        self.keys: KeySet | None = None
        self.fetched_at = -math.inf  # last success
        self.attempted_at = -math.inf  # last try, success or not
        self.fetches = 0
        self.last_error: str | None = None
        self._inflight: asyncio.Task[KeySet | None] | None = None

    def __getstate__(self) -> dict:
        # A fetch in flight is a task of this process's loop: a proxy worker that
        # receives the table (crdgate/workers.py) starts without one.
        return {**self.__dict__, "_inflight": None}

    def may_fetch(self) -> bool:
        return self._inflight is not None or self.clock() - self.attempted_at >= self.refresh_floor

    def current(self) -> KeySet | None:
        """The keys to use now; starts a background fetch when there are none
        yet or they are stale (callers that cannot wait use what is here)."""
        if self._inflight is None:
            now = self.clock()
            if now - self.fetched_at >= self.ttl and now - self.attempted_at >= self.refresh_floor:
                try:
                    self._start()
                except RuntimeError:  # no running loop (a synchronous caller): next time
                    pass
        return self.keys

    async def refresh(self) -> KeySet | None:
        """Fetch now if the floor allows (joining a fetch already running);
        otherwise the keys as they are."""
        task = self._inflight
        if task is None:
            if self.clock() - self.attempted_at < self.refresh_floor:
                return self.keys
            task = self._start()
        # shield: one waiter's cancellation must not cancel everyone's fetch
        return await asyncio.shield(task)

    def _start(self) -> asyncio.Task[KeySet | None]:
        loop = asyncio.get_running_loop()
        self.attempted_at = self.clock()
        self.fetches += 1
        self._inflight = loop.create_task(self._fetch())
        return self._inflight

    async def _fetch(self) -> KeySet | None:
        try:
            body = await self._download()
            keys = parse_jwks(body, allow_symmetric=False, source=f"JWKS {self.url}")
        except Exception as e:  # a background task's boundary: log, keep the old keys
            self.last_error = f"{e.__class__.__name__}: {e}"
            log.warning("JWKS %s: fetch failed, keeping %s key(s): %s", self.url, len(self.keys or ()), self.last_error)
            return self.keys
        finally:
            self._inflight = None
        self.keys = keys
        self.fetched_at = self.clock()
        self.last_error = None
        return keys

    async def _download(self) -> bytes:
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        headers = {"Accept": "application/jwk-set+json, application/json"}
        # One short-lived session per fetch: fetches are rare (the floor and the
        # TTL see to that) and nothing is left open between them.
        async with aiohttp.ClientSession(timeout=timeout) as session:
            async with session.get(self.url, headers=headers) as resp:
                if resp.status != 200:
                    raise ValueError(f"HTTP {resp.status}")
                chunks: list[bytes] = []
                size = 0
                async for chunk in resp.content.iter_chunked(65536):
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise ValueError(f"document larger than {self.max_bytes} bytes")
                    chunks.append(chunk)
                return b"".join(chunks)
