"""JWT bearer tokens (RFC 7519, presented as in RFC 6750) verified with PyJWT.

The token's header picks a key (by ``kid``, or every key when it has none);
PyJWT then verifies the signature with that key's own algorithm list (see
jwks.py for why this defeats algorithm confusion) and checks ``exp``/``nbf``
with the configured leeway, the issuer, the audiences and the required claims.
The consumer is a claim (``sub`` by default); chosen claims are forwarded
upstream as headers with CR/LF and other control characters removed.

Keys come from a Secret, a JWKS URL, or both (the Secret's are tried first).
The token comes from ``Authorization: Bearer``, or another configured header,
else from a configured query parameter.

A verified token is remembered until it expires (at most a minute), so a
client that repeats its token costs a dict lookup, not a signature check. The
cache is keyed by the token itself (tokens longer than ``CACHE_KEY_MAX``
characters by their SHA-256, so a huge token costs little memory); only
verified tokens get in, so a flood of forged ones can neither fill it nor push
good ones out. Refusals are not cached.

Synchronous unless keys must be fetched: the first request on a JWKS URL, or
a ``kid`` the cached set does not know (refetched at most once per floor).

Built by controller/authbuild.py; called by gateway/exchange.py (see base.py).
"""

from __future__ import annotations

import hashlib
import time
from typing import Awaitable, Iterable, Mapping

import jwt

from .base import (
    DEFAULT_CONSUMER_HEADER,
    ERROR,
    FORBIDDEN,
    INVALID,
    MISSING,
    REALM,
    SCHEME_JWT,
    AuthRequest,
    AuthMemo,
    AuthResult,
    Authenticator,
    SecretContentError,
    TTLCache,
    allowed,
    denied,
    header_value,
    query_value,
    sanitize_header_value,
)
from .jwks import KeyEntry, KeySet, RemoteJWKS

CACHE_TTL = 60.0
CACHE_SIZE = 10_000
MAX_TOKEN_BYTES = 16_384
CACHE_KEY_MAX = 4096  # longer tokens are cached under their SHA-256


class JWTAuthenticator(Authenticator):
    scheme = SCHEME_JWT

    def __init__(
        self,
        keys: KeySet | RemoteJWKS | None = None,
        *,
        remote: RemoteJWKS | None = None,
        issuer: str | None = None,
        audiences: Iterable[str] = (),
        leeway: float = 0.0,
        required_claims: Iterable[str] = (),
        forward_claims: Mapping[str, str] | None = None,
        algorithms: Iterable[str] | None = None,
        allowed_consumers: Iterable[str] | None = None,
        keep_credentials: bool = False,
        consumer_header: str = DEFAULT_CONSUMER_HEADER,
        consumer_claim: str = "sub",
        header: str = "Authorization",
        query_param: str | None = None,
        cache_ttl: float = CACHE_TTL,
        cache_size: int = CACHE_SIZE,
    ):
        # Keys from a Secret (``static``), from a JWKS URL (``remote``), or both:
        # a token whose key the Secret holds never waits for the URL.
        if isinstance(keys, RemoteJWKS):
            keys, remote = None, keys
        if keys is None and remote is None:
            raise SecretContentError("no verification keys")
        self.remote = remote
        self.static = keys
        self.algorithms = frozenset(algorithms) if algorithms else None
        if self.static is not None and self.algorithms is not None:
            narrowed = [
                KeyEntry(e.kid, e.key, tuple(a for a in e.algorithms if a in self.algorithms)) for e in self.static.entries
            ]
            narrowed = [e for e in narrowed if e.algorithms]
            if not narrowed and self.remote is None:
                raise SecretContentError(f"no key fits jwt.algorithms {sorted(self.algorithms)}")
            self.static = KeySet(narrowed) if narrowed else None
        self.issuer = issuer or None
        self.audiences = tuple(audiences)
        self.leeway = float(leeway)
        self.required_claims = tuple(required_claims)
        self.forward_claims = tuple((forward_claims or {}).items())  # (claim, header)
        self.allowed_consumers = frozenset(allowed_consumers) if allowed_consumers else None
        self.keep_credentials = keep_credentials
        self.consumer_header = consumer_header.lower().encode("latin-1")
        self.consumer_claim = consumer_claim
        # The token comes in ``header`` (Authorization: "Bearer <token>"; any
        # other header: the token alone or "Bearer <token>"), else in the query
        # parameter when one is configured (RFC 6750 2.3; for clients such as
        # browsers' WebSockets that cannot set headers).
        self.header = header
        self._header = header.lower()
        self._header_bytes = self._header.encode("latin-1")
        self.query_param = query_param or None
        self._strip_query = None if keep_credentials else self.query_param
        strip = [self.consumer_header] + [h.lower().encode("latin-1") for _, h in self.forward_claims]
        if not keep_credentials:
            strip.append(self._header.encode("latin-1"))
        self.strip_headers = tuple(dict.fromkeys(strip))
        self._options = {
            "verify_aud": bool(self.audiences),
            "require": list(self.required_claims),
            "enforce_minimum_key_length": True,
        }
        # Keys: the token (str), or a long token's SHA-256 (bytes). Where the
        # token came from does not change the result (see _decide).
        self.cache: TTLCache[str | bytes, AuthResult] = TTLCache(cache_size, cache_ttl)

        challenge = f'Bearer realm="{REALM}"'
        self._missing = denied(MISSING, challenge)
        self._invalid = denied(INVALID, challenge + ', error="invalid_token"')
        self._forbidden = denied(FORBIDDEN, challenge + ', error="insufficient_scope"')
        self._unavailable = denied(ERROR, None)

    # -- per request ------------------------------------------------------------

    def _token(self, value: str | None, query: str) -> str | None:
        """The presented token or None, from the configured header's value and the raw query."""
        if value:
            value = value.strip()
            scheme, sep, rest = value.partition(" ")
            if scheme.lower() == "bearer":
                return rest.strip() or None
            if self._header == "authorization" or sep:
                return None  # another scheme (Basic, ...): no bearer token here
            return value
        if self.query_param is not None:
            return query_value(query, self.query_param) or None
        return None

    def authenticate(self, req: AuthRequest) -> AuthResult | Awaitable[AuthResult]:
        return self._authenticate(req.headers.get(self._header), req.query)

    def authenticate_raw(
        self, headers: list[tuple[bytes, bytes]], query: str = "", path: str = "/", memo: AuthMemo | None = None
    ) -> AuthResult | Awaitable[AuthResult]:
        return self._authenticate(header_value(headers, self._header_bytes), query)

    def _authenticate(self, value: str | None, query: str) -> AuthResult | Awaitable[AuthResult]:
        token = self._token(value, query)
        if token is None:
            return self._missing
        if len(token) > MAX_TOKEN_BYTES:
            return self._invalid
        cache_key: str | bytes = (
            token if len(token) <= CACHE_KEY_MAX else hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()
        )
        hit = self.cache.get(cache_key)
        if hit is not None:
            return hit
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            return self._invalid
        alg = header.get("alg")
        kid = header.get("kid")
        if not isinstance(alg, str) or (kid is not None and not isinstance(kid, str)):
            return self._invalid
        if self.algorithms is not None and alg not in self.algorithms:
            return self._invalid
        static = self.static
        remote = self.remote
        own: tuple[KeyEntry, ...] = ()
        if static is not None:
            own = static.candidates(kid, alg)
            if remote is None or (kid is not None and (own or static.knows(kid))):
                return self._verify(token, own, cache_key)
        keys = remote.current()  # type: ignore[union-attr]
        if keys is None:
            if own:  # the URL has not answered yet, but the Secret's keys may do
                return self._verify(token, own, cache_key)
            return self._verify_after_fetch(token, kid, alg, cache_key)
        candidates = own + keys.candidates(kid, alg)
        if not candidates and kid is not None and not keys.knows(kid) and remote.may_fetch():  # type: ignore[union-attr]
            return self._verify_after_fetch(token, kid, alg, cache_key)
        return self._verify(token, candidates, cache_key)

    async def _verify_after_fetch(self, token: str, kid: str | None, alg: str, cache_key: str | bytes) -> AuthResult:
        keys = await self.remote.refresh()  # type: ignore[union-attr]
        if keys is None:
            return self._unavailable  # never had keys: we cannot judge, so refuse
        return self._verify(token, keys.candidates(kid, alg), cache_key)

    def _verify(self, token: str, candidates: tuple[KeyEntry, ...], cache_key: str | bytes) -> AuthResult:
        claims = None
        for entry in candidates:
            try:
                claims = jwt.decode(
                    token,
                    entry.key,
                    # The key's own list, never the token's alg (RFC 8725 2.1).
                    algorithms=entry.algorithms,
                    audience=self.audiences or None,
                    issuer=self.issuer,
                    leeway=self.leeway,
                    options=self._options,
                )
                break
            except jwt.InvalidSignatureError:
                continue  # a token without kid: try the next key
            except jwt.InvalidTokenError:
                return self._invalid  # claims, encoding: another key would not help
        if claims is None:
            return self._invalid
        result = self._decide(claims)
        ttl = self.cache.ttl
        exp = claims.get("exp")
        if isinstance(exp, (int, float)):
            ttl = min(ttl, exp + self.leeway - time.time())
        if ttl > 0:
            self.cache.put(cache_key, result, ttl)
        return result

    def _decide(self, claims: dict) -> AuthResult:
        raw = claims.get(self.consumer_claim)
        consumer = sanitize_header_value(raw, 256) if raw is not None and not isinstance(raw, (dict, list)) else None
        if self.allowed_consumers is not None and consumer not in self.allowed_consumers:
            return self._forbidden
        fwd: list[tuple[str, str]] = []
        for claim, header in self.forward_claims:
            value = _claim(claims, claim)
            if value is not None:
                text = sanitize_header_value(value)
                if text:
                    fwd.append((header, text))
        # The query parameter goes whichever of header and query carried the token.
        return allowed(consumer or None, tuple(fwd), self._strip_query, self.consumer_header)

    def describe(self) -> dict:
        out: dict = {"type": self.scheme}
        if self.remote is not None:
            out["jwksURL"] = self.remote.url
        if self.static is not None:
            out["keys"] = len(self.static)
        if self._header != "authorization":
            out["header"] = self.header
        if self.query_param:
            out["queryParam"] = self.query_param
        if self.issuer:
            out["issuer"] = self.issuer
        if self.audiences:
            out["audiences"] = list(self.audiences)
        if self.allowed_consumers is not None:
            out["allowedConsumers"] = sorted(self.allowed_consumers)
        return out


def _claim(claims: dict, name: str):
    """A claim by name, or by a dotted path into nested objects
    (``realm_access.roles``) when no top-level claim has that name."""
    if name in claims:
        return claims[name]
    value = claims
    for part in name.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value
