"""API keys: one key per consumer, from a header or (when configured) a query parameter.

The keys come from a Secret whose data key names the consumer and whose value
is the key, either as is or stored hashed as ``sha256:<hex>``. At build time
every key becomes its SHA-256 digest, and each digest maps to that consumer's
precomputed result (``allowed``, or ``forbidden`` when the consumer is not in
``allowedConsumers``), so a request costs one hash and one dict lookup, and a
keep-alive connection presenting the key it presented last costs one
constant-time comparison with it (see ``AuthMemo``).

Built by controller/authbuild.py; called by gateway/exchange.py (see base.py).
"""

from __future__ import annotations

import hashlib
from hmac import compare_digest
from typing import Iterable, Mapping

from .base import (
    DEFAULT_CONSUMER_HEADER,
    FORBIDDEN,
    INVALID,
    MISSING,
    REALM,
    SCHEME_APIKEY,
    AuthRequest,
    AuthMemo,
    AuthResult,
    Authenticator,
    SecretContentError,
    allowed,
    denied,
    header_value,
    query_value,
)

_sha256 = hashlib.sha256

DEFAULT_HEADER = "X-API-Key"
HASH_PREFIX = "sha256:"


def key_digest(stored: str, consumer: str) -> bytes:
    """The SHA-256 digest a presented key must hash to, from a Secret value."""
    value = stored.strip()  # `echo key | base64` leaves a newline nobody meant
    if value[: len(HASH_PREFIX)].lower() == HASH_PREFIX:
        hexdigest = value[len(HASH_PREFIX) :]
        try:
            digest = bytes.fromhex(hexdigest)
        except ValueError:
            digest = b""
        if len(digest) != 32:
            raise SecretContentError(f"key of consumer {consumer!r}: 'sha256:' must be followed by 64 hex digits")
        return digest
    if not value:
        raise SecretContentError(f"key of consumer {consumer!r} is empty")
    return hashlib.sha256(value.encode("utf-8")).digest()


class APIKeyAuthenticator(Authenticator):
    scheme = SCHEME_APIKEY

    def __init__(
        self,
        keys: Mapping[str, str],
        *,
        header: str = DEFAULT_HEADER,
        query_param: str | None = None,
        allowed_consumers: Iterable[str] | None = None,
        keep_credentials: bool = False,
        consumer_header: str = DEFAULT_CONSUMER_HEADER,
    ):
        if not keys:
            raise SecretContentError("no keys: add one data entry per consumer (name: key)")
        self.header = header
        self._header = header.lower()
        self._header_bytes = self._header.encode("latin-1")
        self.query_param = query_param or None
        self.allowed_consumers = frozenset(allowed_consumers) if allowed_consumers else None
        self.keep_credentials = keep_credentials
        self.consumer_header = consumer_header.lower().encode("latin-1")
        strip = [self.consumer_header]
        if not keep_credentials:
            strip.append(self._header.encode("latin-1"))
        self.strip_headers = tuple(strip)

        challenge = f'APIKey realm="{REALM}", header="{header}"'
        if self.query_param:
            challenge += f', query="{self.query_param}"'
        self.challenge = challenge
        self._missing = denied(MISSING, challenge)
        self._invalid = denied(INVALID, challenge)
        forbidden = denied(FORBIDDEN, None)
        # The query parameter is removed before forwarding whenever it is
        # configured, whichever of header and query carried the key: a request
        # may carry both, and the backend must see neither.
        strip_query = None if keep_credentials else self.query_param

        # digest -> the consumer's result. A dict lookup keyed by the digest of
        # the presented key is safe against timing attacks: how long the lookup
        # takes depends on the digest, and knowing bits of SHA-256(k) for a valid
        # k does not help anyone find k (preimage resistance). Comparing the raw
        # key against each stored key would leak a prefix and which consumer
        # came close.
        by_digest: dict[bytes, AuthResult] = {}
        owner: dict[bytes, str] = {}
        for consumer in sorted(keys):
            digest = key_digest(keys[consumer], consumer)
            if digest in owner:
                raise SecretContentError(f"consumers {owner[digest]!r} and {consumer!r} have the same key")
            owner[digest] = consumer
            if self.allowed_consumers is not None and consumer not in self.allowed_consumers:
                by_digest[digest] = forbidden
            else:
                by_digest[digest] = allowed(consumer, (), strip_query, self.consumer_header)
        self._by_digest = by_digest
        self.consumers = tuple(sorted(keys))

    def authenticate(self, req: AuthRequest) -> AuthResult:
        return self._decide(req.headers.get(self._header), req.query)

    def authenticate_raw(
        self, headers: list[tuple[bytes, bytes]], query: str = "", path: str = "/", memo: AuthMemo | None = None
    ) -> AuthResult:
        # header_value, inlined: this runs on every request of the route.
        lname = self._header_bytes
        n = len(lname)
        found = None
        for name, value in headers:
            if len(name) == n and name.lower() == lname:
                found = value if found is None else found + b", " + value
        if found:  # a non-empty header wins over the query
            # The key this connection presented last (keep-alive clients send the
            # same one every time): compared in constant time, no hash needed.
            if memo is not None and memo.authenticator is self and compare_digest(found, memo.credential):
                return memo.result
            digest = _sha256(found.decode("latin-1").strip().encode("utf-8", "surrogateescape")).digest()
            hit = self._by_digest.get(digest)
            if hit is None:
                return self._invalid
            if memo is not None:  # only known keys: a wrong one is hashed every time
                memo.authenticator = self
                memo.credential = found
                memo.result = hit
            return hit
        return self._decide(None if found is None else found.decode("latin-1"), query)

    def _decide(self, presented: str | None, query: str) -> AuthResult:
        if not presented and self.query_param is not None:
            presented = query_value(query, self.query_param)
        if not presented:
            return self._missing
        found = self._by_digest.get(_sha256(presented.strip().encode("utf-8", "surrogateescape")).digest())
        return self._invalid if found is None else found

    def describe(self) -> dict:
        out = {"type": self.scheme, "header": self.header, "consumers": len(self.consumers)}
        if self.query_param:
            out["queryParam"] = self.query_param
        if self.allowed_consumers is not None:
            out["allowedConsumers"] = sorted(self.allowed_consumers)
        return out

