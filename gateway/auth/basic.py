"""HTTP Basic authentication (RFC 7617) against an htpasswd file from a Secret.

Accepted hashes: bcrypt (``$2y$``, ``$2b$``, ``$2a$``, via the bcrypt package),
SHA-crypt (``$5$``, ``$6$``), Apache MD5 (``$apr1$``, htpasswd's old default)
and ``{SHA}`` (the last two only because existing files carry them; both are
weak). Slow hashes are verified in a small thread pool — bcrypt releases the
GIL, and a 100 ms verify on the event loop would stall every other request —
and the outcome is cached briefly under SHA-256(user ":" password), so plain
passwords are never kept and a client that sends the same credentials on each
request pays for one verify per minute, not one per request.

An unknown user costs the same as a wrong password: the presented password is
verified against a real hash of the file and the answer thrown away.

Built by controller/authbuild.py; called by gateway/exchange.py (see base.py).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import logging
import os
import re
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Awaitable, Callable, Iterable, Mapping

import bcrypt

with warnings.catch_warnings():
    # passlib probes the stdlib crypt module (deprecated, gone in Python 3.13);
    # without it passlib uses its own implementation. We never import crypt.
    warnings.simplefilter("ignore", DeprecationWarning)
    from passlib.hash import apr_md5_crypt, sha256_crypt, sha512_crypt

from .base import (
    DEFAULT_CONSUMER_HEADER,
    ERROR,
    FORBIDDEN,
    INVALID,
    MISSING,
    REALM,
    SCHEME_BASIC,
    AuthRequest,
    AuthMemo,
    AuthResult,
    Authenticator,
    SecretContentError,
    TTLCache,
    allowed,
    denied,
    header_value,
)

log = logging.getLogger("crdgate.auth")

CACHE_TTL = 60.0
CACHE_SIZE = 10_000
# Verifications queued or running in the pool, process-wide. Past this the
# gateway answers 503 instead of letting a credential-stuffing burst queue
# minutes of bcrypt work (and memory) behind it.
MAX_PENDING = 256

_BCRYPT = re.compile(r"\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}")
_PASSLIB = {"$5$": ("sha256-crypt", sha256_crypt), "$6$": ("sha512-crypt", sha512_crypt), "$apr1$": ("apr1", apr_md5_crypt)}


@dataclass(frozen=True, slots=True)
class PasswordHash:
    """One htpasswd entry's hash and how to check a password against it."""

    kind: str  # bcrypt | sha256-crypt | sha512-crypt | apr1 | sha1
    value: str
    slow: bool  # verify in the hashing pool, not on the event loop

    def verify(self, password: bytes) -> bool:
        try:
            if self.kind == "bcrypt":
                # bcrypt only ever reads 72 bytes; htpasswd truncated when it
                # hashed, and bcrypt>=5 refuses longer input instead.
                return bcrypt.checkpw(password[:72], self.value.encode("ascii"))
            if self.kind == "sha1":
                digest = base64.b64encode(hashlib.sha1(password).digest())
                return hmac.compare_digest(digest, self.value[5:].encode("ascii"))
            return _PASSLIB_BY_KIND[self.kind].verify(password, self.value)
        except (ValueError, TypeError):  # over-long or non-UTF-8 input for passlib
            return False


_PASSLIB_BY_KIND = {kind: handler for kind, handler in _PASSLIB.values()}


def parse_hash(text: str, where: str) -> PasswordHash:
    if text.startswith("$2"):
        if not _BCRYPT.fullmatch(text):
            raise SecretContentError(f"{where}: malformed bcrypt hash")
        return PasswordHash("bcrypt", text, True)
    for prefix, (kind, handler) in _PASSLIB.items():
        if text.startswith(prefix):
            try:
                handler.from_string(text)
            except ValueError:
                raise SecretContentError(f"{where}: malformed {kind} hash") from None
            return PasswordHash(kind, text, True)
    if text.startswith("{SHA}"):
        try:
            raw = base64.b64decode(text[5:], validate=True)
        except binascii.Error:
            raw = b""
        if len(raw) != 20:
            raise SecretContentError(f"{where}: malformed {{SHA}} hash")
        return PasswordHash("sha1", text, False)
    raise SecretContentError(
        f"{where}: unsupported password hash (use bcrypt: htpasswd -B, or $5$/$6$ SHA-crypt; plain text and DES crypt are refused)"
    )


def parse_htpasswd(text: str, source: str = "htpasswd") -> dict[str, PasswordHash]:
    """``user:hash`` lines -> user -> hash, in file order. Blank lines and
    ``#`` comments are skipped. Errors name the line, never its content."""
    users: dict[str, PasswordHash] = {}
    for n, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{source} line {n}"
        user, sep, hashed = line.partition(":")
        if not sep or not user or not hashed:
            raise SecretContentError(f"{where}: expected user:hash")
        if user in users:
            raise SecretContentError(f"{where}: user {user!r} appears twice")
        users[user] = parse_hash(hashed.strip(), where)
    if not users:
        raise SecretContentError(f"{source}: no users")
    return users


_pool: ThreadPoolExecutor | None = None
_pending_total = 0


def hash_pool() -> ThreadPoolExecutor:
    """Password hashing gets its own few threads so a burst of logins cannot
    starve the loop's default executor (DNS lookups run there)."""
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=max(2, min(4, os.cpu_count() or 2)), thread_name_prefix="crdgate-hash")
    return _pool


class BasicAuthenticator(Authenticator):
    scheme = SCHEME_BASIC

    def __init__(
        self,
        users: Mapping[str, PasswordHash],
        *,
        allowed_consumers: Iterable[str] | None = None,
        keep_credentials: bool = False,
        consumer_header: str = DEFAULT_CONSUMER_HEADER,
        cache_ttl: float = CACHE_TTL,
        cache_size: int = CACHE_SIZE,
        clock: Callable[[], float] = time.monotonic,
    ):
        if not users:
            raise SecretContentError("no users")
        self.users = dict(users)
        # The hash an unknown user's password is checked against: the first
        # entry, so the cost matches a real user's wrong password.
        self._dummy = next(iter(self.users.values()))
        self.allowed_consumers = frozenset(allowed_consumers) if allowed_consumers else None
        self.keep_credentials = keep_credentials
        self.consumer_header = consumer_header.lower().encode("latin-1")
        strip = [self.consumer_header]
        if not keep_credentials:
            strip.append(b"authorization")
        self.strip_headers = tuple(strip)
        self.challenge = f'Basic realm="{REALM}", charset="UTF-8"'
        self._missing = denied(MISSING, self.challenge)
        self._invalid = denied(INVALID, self.challenge)
        self._forbidden = denied(FORBIDDEN, None)
        self._busy = denied(ERROR, None)
        self._allowed = {
            u: (allowed(u, consumer_header=self.consumer_header) if self.allowed_consumers is None or u in self.allowed_consumers else self._forbidden)
            for u in self.users
        }
        self.cache: TTLCache[bytes, AuthResult] = TTLCache(cache_size, cache_ttl, clock)
        self._inflight: dict[bytes, asyncio.Future[bool]] = {}

    def authenticate(self, req: AuthRequest) -> AuthResult | Awaitable[AuthResult]:
        return self._authenticate(req.headers.get("authorization"))

    def authenticate_raw(
        self, headers: list[tuple[bytes, bytes]], query: str = "", path: str = "/", memo: AuthMemo | None = None
    ) -> AuthResult | Awaitable[AuthResult]:
        return self._authenticate(header_value(headers, b"authorization"))

    def __getstate__(self) -> dict:
        # Checks in flight are futures of this process's loop: another process
        # (a proxy worker receiving the table) starts with none.
        return {**self.__dict__, "_inflight": {}}

    def _authenticate(self, value: str | None) -> AuthResult | Awaitable[AuthResult]:
        if not value:
            return self._missing
        scheme, _, encoded = value.strip().partition(" ")
        if scheme.lower() != "basic":
            return self._missing
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True)
        except (binascii.Error, ValueError):
            return self._invalid
        user_raw, sep, password = decoded.partition(b":")
        if not sep:
            return self._invalid
        key = hashlib.sha256(decoded).digest()  # = SHA-256(user ":" password)
        hit = self.cache.get(key)
        if hit is not None:
            return hit
        try:
            user = user_raw.decode("utf-8")
        except UnicodeDecodeError:
            user = None
        entry = self.users.get(user) if user is not None else None
        known = entry is not None
        if entry is None:
            entry = self._dummy
        if not entry.slow:
            result = self._decide(user, known, entry.verify(password))
            self.cache.put(key, result)
            return result
        return self._verify_in_pool(key, user, known, entry, password)

    def _decide(self, user: str | None, known: bool, ok: bool) -> AuthResult:
        if not (known and ok):
            return self._invalid
        return self._allowed[user]  # type: ignore[index]

    async def _verify_in_pool(self, key: bytes, user: str | None, known: bool, entry: PasswordHash, password: bytes) -> AuthResult:
        global _pending_total
        fut = self._inflight.get(key)
        if fut is None:
            if _pending_total >= MAX_PENDING:
                return self._busy
            _pending_total += 1
            fut = asyncio.get_running_loop().run_in_executor(hash_pool(), entry.verify, password)
            self._inflight[key] = fut
            # The bookkeeping rides on the future, not on this coroutine: the
            # first waiter may be cancelled (client gone) while others wait.
            fut.add_done_callback(partial(self._verified, key, user, known))
        try:
            ok = await asyncio.shield(fut)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("password verification failed unexpectedly")
            return self._busy
        return self._decide(user, known, ok)

    def _verified(self, key: bytes, user: str | None, known: bool, fut: asyncio.Future[bool]) -> None:
        global _pending_total
        _pending_total -= 1
        self._inflight.pop(key, None)
        if not fut.cancelled() and fut.exception() is None:
            self.cache.put(key, self._decide(user, known, fut.result()))

    def describe(self) -> dict:
        out = {"type": self.scheme, "users": len(self.users)}
        if self.allowed_consumers is not None:
            out["allowedConsumers"] = sorted(self.allowed_consumers)
        return out
