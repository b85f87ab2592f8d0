"""What every authenticator shares: the request it reads, the result it returns.

For each request on a route whose policy has an authenticator, the proxy
(gateway/policies.py, for the exchange) calls ``authenticator.authenticate_raw``
with the raw header pairs; ``authenticate(AuthRequest)`` is the same decision
on a decoded request (tests, tools).
The answer is an ``AuthResult`` directly whenever no I/O or slow hashing is
needed (API keys, cached Basic credentials, JWTs signed by known keys), and an
awaitable of one otherwise (a bcrypt verify in the hashing pool, a JWKS fetch).
Testing ``type(res) is AuthResult`` tells the two apart at no cost.

Results that do not depend on the request (missing, invalid, forbidden,
unavailable, and each API-key consumer's "allowed") are built once, when the
authenticator is built, so the common paths allocate nothing.

Neighbours: apikey.py, basic.py, bearer.py (JWT) implement schemes; jwks.py
holds key sets; controller/authbuild.py builds authenticators from specs and
Secrets. Nothing here logs a credential.
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Generic, Mapping, TypeVar
from urllib.parse import unquote_plus

from gateway.errors import SecretContentError  # noqa: F401 - the auth schemes import it from here

SCHEME_APIKEY = "APIKey"
SCHEME_BASIC = "Basic"
SCHEME_JWT = "JWT"
SCHEMES = (SCHEME_APIKEY, SCHEME_BASIC, SCHEME_JWT)

# AuthResult.outcome values: the ``outcome`` label of crdgate_auth_decisions_total.
ALLOWED = "allowed"
MISSING = "missing"
INVALID = "invalid"
FORBIDDEN = "forbidden"
ERROR = "error"

REALM = "crdgate"
DEFAULT_CONSUMER_HEADER = "X-Consumer"


class AuthRequest:
    """The parts of a request authentication reads.

    ``headers`` maps lower-case names to values (the first value of a repeated
    header is enough: credentials headers are not lists); ``query`` is the raw
    query string without "?"; ``path`` is the normalised path.
    """

    __slots__ = ("headers", "query", "path")

    def __init__(self, headers: Mapping[str, str], query: str = "", path: str = "/"):
        self.headers = headers
        self.query = query
        self.path = path


@dataclass(frozen=True, slots=True)
class AuthResult:
    """One decision.

    On ``ok`` the proxy removes ``Authenticator.strip_headers`` from the request
    (it already accounts for keepCredentials), sets
    ``Authenticator.consumer_header: consumer`` when ``consumer`` is not None,
    adds ``forward_headers`` (forwarded JWT claims, values already free of
    CR/LF), and drops the query parameter ``strip_query_param`` if set: the
    configured one, whichever of header and query carried the credential
    (None under keepCredentials or without a query parameter). Otherwise it answers ``status`` with
    ``WWW-Authenticate: www_authenticate`` when set and a body made of
    ``message`` only — which never says which part of the credentials was wrong.

    ``upstream_headers`` is what the proxy adds upstream, already encoded:
    ``(consumer_header, consumer)`` first when there is a consumer, then the
    forwarded claims. ``allowed`` computes it once, when the result is built
    (per consumer for API keys and Basic, per verified token for JWT), so the
    request path encodes nothing. None means "not computed": the proxy then
    derives it from ``consumer`` and ``forward_headers``.
    """

    ok: bool
    status: int
    consumer: str | None = None
    www_authenticate: str | None = None
    forward_headers: tuple[tuple[str, str], ...] = ()
    outcome: str = ALLOWED
    strip_query_param: str | None = None
    message: str = ""
    upstream_headers: tuple[tuple[bytes, bytes], ...] | None = field(default=None, compare=False, repr=False)


def allowed(
    consumer: str | None,
    forward_headers: tuple[tuple[str, str], ...] = (),
    strip_query_param: str | None = None,
    consumer_header: bytes | None = None,
) -> AuthResult:
    """An admission; with ``consumer_header`` its upstream headers are encoded now."""
    upstream = upstream_headers(consumer_header, consumer, forward_headers) if consumer_header is not None else None
    return AuthResult(True, 200, consumer, None, forward_headers, ALLOWED, strip_query_param, "", upstream)


def upstream_headers(
    consumer_header: bytes, consumer: str | None, forward_headers: tuple[tuple[str, str], ...] = ()
) -> tuple[tuple[bytes, bytes], ...]:
    """The (name, value) byte pairs an admitted request carries upstream."""
    out: list[tuple[bytes, bytes]] = []
    if consumer is not None:
        out.append((consumer_header, consumer.encode("latin-1", "replace")))
    for name, value in forward_headers:
        out.append((name.encode("latin-1") if isinstance(name, str) else name,
                    value.encode("latin-1", "replace") if isinstance(value, str) else value))
    return tuple(out)


def denied(outcome: str, challenge: str | None) -> AuthResult:
    """A refusal: 401 for missing/invalid, 403 for forbidden, 503 for error."""
    if outcome == FORBIDDEN:
        return AuthResult(False, 403, None, challenge, (), FORBIDDEN, None, "forbidden")
    if outcome == ERROR:
        return AuthResult(False, 503, None, None, (), ERROR, None, "auth unavailable")
    return AuthResult(False, 401, None, challenge, (), outcome, None, "unauthorized")


class AuthMemo:
    """What the last request on one client connection presented, and its result.

    A keep-alive client sends the same key with every request; a scheme whose
    decision depends on nothing but the presented credential (API keys) can
    then answer from the memo instead of hashing the key again. The proxy
    keeps one per connection and passes it to ``authenticate_raw``. A scheme
    must compare a presented credential with ``credential`` in constant time
    (``hmac.compare_digest``) and only trust the memo when ``authenticator``
    is itself: a rotated Secret builds a new authenticator, so the memo of the
    old one never answers for the new one.
    """

    __slots__ = ("authenticator", "credential", "result")

    def __init__(self) -> None:
        self.authenticator: Authenticator | None = None
        self.credential = b""
        self.result: AuthResult | None = None


class Authenticator:
    """Base of every scheme. Instances are immutable in configuration and shared
    across routing tables; their caches are the only state they keep."""

    scheme: str = ""
    # Lower-case names the proxy removes from the client's request before
    # forwarding: the credentials header (unless keepCredentials) and every
    # header this authenticator itself sets (so a client can never forge the
    # consumer or a claim header).
    strip_headers: tuple[bytes, ...] = ()
    consumer_header: bytes = b"x-consumer"

    def authenticate(self, req: AuthRequest) -> AuthResult | Awaitable[AuthResult]:
        raise NotImplementedError

    def authenticate_raw(
        self, headers: list[tuple[bytes, bytes]], query: str = "", path: str = "/", memo: AuthMemo | None = None
    ) -> AuthResult | Awaitable[AuthResult]:
        """What the proxy calls: the request's header pairs as received (raw
        names, any case), the raw query, the normalised path and the client
        connection's ``AuthMemo``. The same decision as ``authenticate`` on the
        equivalent ``AuthRequest``; the schemes override it to read just the
        header they need instead of decoding every header into a dict."""
        return self.authenticate(AuthRequest(headers_dict(headers), query, path))

    def describe(self) -> dict[str, Any]:
        """A credential-free summary for the routes view and `crdgate validate`."""
        return {"type": self.scheme}


class UnavailableAuthenticator(Authenticator):
    """Stands in when the configured credentials cannot be loaded (a missing or
    malformed Secret, no default for ``authRequired``): the route stays visible
    and answers 503 "auth unavailable" — it fails closed, never open."""

    def __init__(self, scheme: str, reason: str):
        self.scheme = scheme or "none"
        self.reason = reason  # the status reason, e.g. SecretNotFound; never a secret
        self._result = denied(ERROR, None)

    def authenticate(self, req: AuthRequest) -> AuthResult:
        return self._result

    def authenticate_raw(
        self, headers: list[tuple[bytes, bytes]], query: str = "", path: str = "/", memo: AuthMemo | None = None
    ) -> AuthResult:
        return self._result

    def describe(self) -> dict[str, Any]:
        return {"type": self.scheme, "unavailable": self.reason}


# -- helpers shared by the schemes ----------------------------------------------


def headers_dict(headers: list[tuple[bytes, bytes]]) -> dict[str, str]:
    """Raw header pairs -> lower-case name -> value (latin-1), repeated
    headers joined with ", ": what the proxy's header view shows."""
    d: dict[str, str] = {}
    for name, value in headers:
        k = name.decode("latin-1").lower()
        v = value.decode("latin-1")
        d[k] = d[k] + ", " + v if k in d else v
    return d


def header_value(headers: list[tuple[bytes, bytes]], lname: bytes) -> str | None:
    """The value of one header, as ``headers_dict(headers).get(name)`` would
    give it, without decoding the others. ``lname``: the lower-case name."""
    found = None
    n = len(lname)
    for name, value in headers:
        if len(name) == n and name.lower() == lname:
            found = value if found is None else found + b", " + value
    return None if found is None else found.decode("latin-1")


def sanitize_header_value(value: Any, limit: int = 4096) -> str:
    """A header value from untrusted data (a JWT claim): no CR, LF or other
    control characters, so it can never split or smuggle headers; bounded."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, (list, tuple)):
        text = ",".join(sanitize_header_value(v, limit) for v in value)
    elif isinstance(value, dict):
        text = json.dumps(value, separators=(",", ":"), sort_keys=True)
    else:
        text = str(value)
    if not text.isprintable():  # CR, LF, TAB, NUL, DEL and friends
        text = "".join(ch if ch.isprintable() else " " for ch in text)
    return text[:limit].strip()


def query_value(query: str, name: str) -> str | None:
    """The first value of query parameter ``name`` in a raw query string."""
    if not query:
        return None
    for part in query.split("&"):
        key, _, value = part.partition("=")
        if key != name and ("%" in key or "+" in key):
            key = unquote_plus(key)
        if key == name:
            return unquote_plus(value)
    return None


def without_query_param(query: str, name: str) -> str:
    """``query`` less every occurrence of parameter ``name``, the parameter
    ``query_value`` reads: also when its name is percent- or plus-encoded
    (``api%5Fkey``), which a backend decodes to the same name. The other
    parameters keep their order and spelling."""
    if not query or (name not in query and "%" not in query and "+" not in query):
        return query  # no part can be, or decode to, ``name``
    kept = []
    for part in query.split("&"):
        key = part.partition("=")[0]
        if key != name and ("%" in key or "+" in key):
            key = unquote_plus(key)
        if key != name:
            kept.append(part)
    return "&".join(kept)


def header_name_ok(name: str) -> bool:
    """RFC 9110 token characters only."""
    return bool(name) and all(c in _TCHAR for c in name)


_TCHAR = frozenset("!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")

K = TypeVar("K")
V = TypeVar("V")


class TTLCache(Generic[K, V]):
    """A bounded LRU whose entries expire: verified-credential caches.

    Only ever touched from the event loop thread. ``clock`` is injectable so
    tests can move time without sleeping.
    """

    __slots__ = ("_data", "max_entries", "ttl", "clock")

    def __init__(self, max_entries: int, ttl: float, clock: Callable[[], float] = time.monotonic):
        self._data: OrderedDict[K, tuple[float, V]] = OrderedDict()
        self.max_entries = max_entries
        self.ttl = ttl
        self.clock = clock

    def get(self, key: K) -> V | None:
        item = self._data.get(key)
        if item is None:
            return None
        expires, value = item
        if expires <= self.clock():
            del self._data[key]
            return None
        self._data.move_to_end(key)
        return value

    def put(self, key: K, value: V, ttl: float | None = None) -> None:
        self._data[key] = (self.clock() + (self.ttl if ttl is None else ttl), value)
        self._data.move_to_end(key)
        while len(self._data) > self.max_entries:
            self._data.popitem(last=False)

    def __len__(self) -> int:
        return len(self._data)

    def __reduce__(self):
        # A cache sent to another process (a table handed to a proxy worker,
        # crdgate/workers.py) arrives empty: what this process verified stays here.
        return (TTLCache, (self.max_entries, self.ttl, self.clock))
