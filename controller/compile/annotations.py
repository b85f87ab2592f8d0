"""Ingress annotations ``crdgate.io/*`` -> the RoutePolicy of the Ingress's routes.

An Ingress has no fields for crdgate's route policies, so users write them as
annotations. This module reads every policy annotation except authentication
(``crdgate.io/auth-*`` is controller/authbuild.py's, via ``build_ingress_auth``)
and returns a ``gateway.routing.RoutePolicy`` without ``auth``; the compiler
(controller/compile/ingress.py) adds the authenticator and gives the result to
every route of the Ingress, its ``defaultBackend`` included.

The rules are the APIEndpoint fields' rules: values are turned into the shape
of the matching spec field, validated with the same models
(controller/models.py) and built into policies by the same builders
(controller/compile/policies.py), durations with controller/durations.py (through the
models), and a rate limit with ``gateway.ratelimit.policy_error``. Messages
name the annotation: ``metadata.annotations[crdgate.io/retry-attempts]: must be
an integer 1..10, got 'x'``.

Fail closed: any invalid value, and any ``crdgate.io/`` annotation that is not
known here or to authbuild, raises ``AnnotationError`` and the compiler leaves
the Ingress out (a typo must not make a route serve without its rate limit or
auth). Annotations under other prefixes are ignored.

Value syntax (the README's Ingress annotation table):

- lists (``*-remove``, ``retry-status-codes``, ``cors-*`` lists): comma-separated;
- ``*-headers-set`` / ``*-headers-add``: a JSON object ``{"X-A": "1"}`` (header
  values may hold commas; JSON leaves no doubt where a value ends); ``add``
  also takes a list of values for one name ``{"X-A": ["1", "2"]}``;
- booleans ``true`` | ``false``; durations ``500ms``, ``15s``, ``1m`` (``0s``
  turns a timeout off); enums as in the CRD, any case;
- ``rewrite-prefix`` replaces each path's own matched prefix; on an ``Exact``
  path the whole path is the matched prefix, so the upstream path becomes the
  value (without a trailing slash, as for a prefix). The APIEndpoint field
  refuses ReplacePrefixMatch on Exact paths; here that would forbid mixing
  Exact and Prefix paths in one Ingress, and the meaning is not in doubt.
- an empty value is an error, not "unset": remove the annotation instead.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable, Iterator, Mapping
from functools import lru_cache
from typing import Any, get_args

from pydantic import BaseModel, TypeAdapter, ValidationError

from controller import authbuild
from controller import models as m
import controller.compile.policies as policies
from gateway.errors import AnnotationError
from gateway.ratelimit import policy_error
from gateway.routing import (
    NO_POLICY,
    CorsPolicy,
    HeaderModifier,
    RateLimitPolicy,
    RetryPolicy,
    Rewrite,
    RoutePolicy,
    Timeouts,
)

PREFIX = "crdgate.io/"

REWRITE_PREFIX = "crdgate.io/rewrite-prefix"
REWRITE_HOST = "crdgate.io/rewrite-host"
REQUEST_HEADERS_SET = "crdgate.io/request-headers-set"
REQUEST_HEADERS_ADD = "crdgate.io/request-headers-add"
REQUEST_HEADERS_REMOVE = "crdgate.io/request-headers-remove"
RESPONSE_HEADERS_SET = "crdgate.io/response-headers-set"
RESPONSE_HEADERS_ADD = "crdgate.io/response-headers-add"
RESPONSE_HEADERS_REMOVE = "crdgate.io/response-headers-remove"
TIMEOUT_REQUEST = "crdgate.io/timeout-request"
TIMEOUT_BACKEND_REQUEST = "crdgate.io/timeout-backend-request"
RETRY_ATTEMPTS = "crdgate.io/retry-attempts"
RETRY_STATUS_CODES = "crdgate.io/retry-status-codes"
RETRY_ON_CONNECT_FAILURE = "crdgate.io/retry-on-connect-failure"
RETRY_BACKOFF = "crdgate.io/retry-backoff"
RETRY_NON_IDEMPOTENT = "crdgate.io/retry-non-idempotent"
LOAD_BALANCER = "crdgate.io/load-balancer"
MAX_BODY_BYTES = "crdgate.io/max-body-bytes"
CORS_ALLOW_ORIGINS = "crdgate.io/cors-allow-origins"
CORS_ALLOW_METHODS = "crdgate.io/cors-allow-methods"
CORS_ALLOW_HEADERS = "crdgate.io/cors-allow-headers"
CORS_EXPOSE_HEADERS = "crdgate.io/cors-expose-headers"
CORS_ALLOW_CREDENTIALS = "crdgate.io/cors-allow-credentials"
CORS_MAX_AGE = "crdgate.io/cors-max-age"
RATE_LIMIT_RPM = "crdgate.io/rate-limit-rpm"
RATE_LIMIT_BURST = "crdgate.io/rate-limit-burst"
RATE_LIMIT_KEY = "crdgate.io/rate-limit-key"
RATE_LIMIT_KEY_HEADER = "crdgate.io/rate-limit-key-header"
RATE_LIMIT_SCOPE = "crdgate.io/rate-limit-scope"

# spec field (camelCase, as models name it in errors) -> annotation, per group.
_REWRITE = {"path": REWRITE_PREFIX, "hostname": REWRITE_HOST}
_TIMEOUTS = {"request": TIMEOUT_REQUEST, "backendRequest": TIMEOUT_BACKEND_REQUEST}
_RETRIES = {
    "attempts": RETRY_ATTEMPTS,
    "statusCodes": RETRY_STATUS_CODES,
    "onConnectFailure": RETRY_ON_CONNECT_FAILURE,
    "backoff": RETRY_BACKOFF,
    "nonIdempotent": RETRY_NON_IDEMPOTENT,
}
_CORS = {
    "allowOrigins": CORS_ALLOW_ORIGINS,
    "allowMethods": CORS_ALLOW_METHODS,
    "allowHeaders": CORS_ALLOW_HEADERS,
    "exposeHeaders": CORS_EXPOSE_HEADERS,
    "allowCredentials": CORS_ALLOW_CREDENTIALS,
    "maxAge": CORS_MAX_AGE,
}
_RATE_LIMIT = {
    "requestsPerMinute": RATE_LIMIT_RPM,
    "burst": RATE_LIMIT_BURST,
    "key": RATE_LIMIT_KEY,
    "keyHeader": RATE_LIMIT_KEY_HEADER,
    "scope": RATE_LIMIT_SCOPE,
}

SSL_REDIRECT = PREFIX + "ssl-redirect"  # httpsRedirect: plain HTTP gets 301/308 to https

ANNOTATIONS = (
    REWRITE_PREFIX, REWRITE_HOST,
    REQUEST_HEADERS_SET, REQUEST_HEADERS_ADD, REQUEST_HEADERS_REMOVE,
    RESPONSE_HEADERS_SET, RESPONSE_HEADERS_ADD, RESPONSE_HEADERS_REMOVE,
    TIMEOUT_REQUEST, TIMEOUT_BACKEND_REQUEST,
    RETRY_ATTEMPTS, RETRY_STATUS_CODES, RETRY_ON_CONNECT_FAILURE, RETRY_BACKOFF, RETRY_NON_IDEMPOTENT,
    LOAD_BALANCER, MAX_BODY_BYTES,
    CORS_ALLOW_ORIGINS, CORS_ALLOW_METHODS, CORS_ALLOW_HEADERS, CORS_EXPOSE_HEADERS,
    CORS_ALLOW_CREDENTIALS, CORS_MAX_AGE,
    RATE_LIMIT_RPM, RATE_LIMIT_BURST, RATE_LIMIT_KEY, RATE_LIMIT_KEY_HEADER, RATE_LIMIT_SCOPE,
    SSL_REDIRECT,
)  # fmt: skip
_ORDER = {a: i for i, a in enumerate(ANNOTATIONS)}  # problems in this order; unknown annotations first
# Everything under crdgate.io/ that an Ingress may carry.
KNOWN = frozenset(ANNOTATIONS) | frozenset(authbuild.ANNOTATIONS)

_LOAD_BALANCERS = get_args(m.APIEndpointSpec.model_fields["load_balancer"].annotation)
_RATE_LIMIT_KEYS = get_args(m.RateLimitSpec.model_fields["key"].annotation)
_RATE_LIMIT_SCOPES = get_args(m.RateLimitSpec.model_fields["scope"].annotation)
_INTEGER = re.compile(r"[+-]?[0-9]+")
_HEADER_NAME = TypeAdapter(m.Token)


def ingress_policy(annotations: Mapping[str, str] | None, *, has_auth: bool = False) -> RoutePolicy:
    """The RoutePolicy (``auth`` unset) that an Ingress's annotations ask for.

    ``NO_POLICY`` itself when no policy annotation is set, so plain Ingresses
    keep the proxy's fast path. ``has_auth``: whether the Ingress has
    authentication (a Consumer-keyed rate limit needs it). Raises
    ``AnnotationError`` naming every invalid or unknown annotation.
    """
    if not annotations:
        return NO_POLICY
    ours = tuple(sorted((k, v) for k, v in annotations.items() if k.startswith(PREFIX)))
    if not ours:
        return NO_POLICY
    # Ingresses are compiled on every recompile: parse each distinct set once.
    hashable = all(isinstance(v, (str, int, float, bool)) for _, v in ours)
    policy, problems = (_parse if hashable else _parse.__wrapped__)(ours, has_auth)
    if problems:
        raise AnnotationError(problems)
    return policy


@lru_cache(maxsize=4096)
def _parse(items: tuple[tuple[str, str], ...], has_auth: bool) -> tuple[RoutePolicy, tuple[tuple[str, str], ...]]:
    r = _Reader(dict(items))
    for name, _ in items:
        if name not in KNOWN:
            close = difflib.get_close_matches(name, sorted(KNOWN), n=1)
            r.fail(name, "unknown crdgate.io annotation" + (f" (did you mean {close[0]}?)" if close else ""))
    policy = RoutePolicy(
        rate_limit=_rate_limit(r, has_auth),
        rewrite=_rewrite(r),
        request_headers=_headers(r, REQUEST_HEADERS_SET, REQUEST_HEADERS_ADD, REQUEST_HEADERS_REMOVE),
        response_headers=_headers(r, RESPONSE_HEADERS_SET, RESPONSE_HEADERS_ADD, RESPONSE_HEADERS_REMOVE),
        timeouts=_timeouts(r),
        retries=_retries(r),
        cors=_cors(r),
        max_body_bytes=r.integer(MAX_BODY_BYTES, *_bounds(m.APIEndpointSpec, "max_body_bytes")),
        load_balancer=_load_balancer(r),
        https_redirect=bool(r.boolean(SSL_REDIRECT)),
    )
    if r.problems:
        return NO_POLICY, tuple(sorted(r.problems.items(), key=lambda p: _ORDER.get(p[0], -1)))
    return (NO_POLICY if policy == NO_POLICY else policy), ()


# -- reading values ---------------------------------------------------------------------


def _bounds(model: type[BaseModel], field: str) -> tuple[int | None, int | None]:
    """A model field's ge/le: the annotation's limits are the spec field's."""
    lo = hi = None
    for c in model.model_fields[field].metadata:
        lo = getattr(c, "ge", lo)
        hi = getattr(c, "le", hi)
    return lo, hi


class _Reader:
    """Turns annotation text into spec-shaped values, collecting problems.

    A getter returns None for an absent or invalid annotation; the first
    problem per annotation is kept."""

    def __init__(self, values: Mapping[str, str]):
        self.values = values
        self.problems: dict[str, str] = {}

    def fail(self, name: str, message: str) -> None:
        self.problems.setdefault(name, message)

    def ok(self, *names: str) -> bool:
        """None of these annotations has a problem (so their group can be built)."""
        return not any(n in self.problems for n in names)

    def present(self, *names: str) -> bool:
        return any(n in self.values for n in names)

    def text(self, name: str) -> str | None:
        raw = self.values.get(name)
        if raw is None:
            return None
        if not isinstance(raw, str):  # the file source may hand over an unquoted YAML scalar
            self.fail(name, f"must be a string (quote it in YAML), got {raw!r}")
            return None
        v = raw.strip()
        if not v:
            self.fail(name, "must not be empty; remove the annotation to leave it unset")
            return None
        return v

    def integer(self, name: str, lo: int | None = None, hi: int | None = None) -> int | None:
        v = self.text(name)
        if v is None:
            return None
        n = int(v) if _INTEGER.fullmatch(v) else None
        if n is None or (lo is not None and n < lo) or (hi is not None and n > hi):
            if lo is not None and hi is not None:
                want = f"an integer {lo}..{hi}"
            elif lo is not None:
                want = f"an integer >= {lo}"
            else:
                want = "an integer"
            self.fail(name, f"must be {want}, got {v!r}")
            return None
        return n

    def boolean(self, name: str) -> bool | None:
        v = self.text(name)
        if v is None:
            return None
        if v.lower() not in ("true", "false"):
            self.fail(name, f"must be true or false, got {v!r}")
            return None
        return v.lower() == "true"

    def choice(self, name: str, choices: tuple[str, ...]) -> str | None:
        """An enum value in its CRD spelling (any case is accepted); other text is
        returned as written, for the caller's validator to refuse with its message."""
        v = self.text(name)
        if v is None:
            return None
        return {c.lower(): c for c in choices}.get(v.lower(), v)

    def csv(self, name: str) -> list[str] | None:
        v = self.text(name)
        if v is None:
            return None
        items = [p.strip() for p in v.split(",")]
        if not all(items):
            self.fail(name, f"expected a comma-separated list without empty items, got {v!r}")
            return None
        return items

    def header_object(self, name: str, lists: bool) -> list[tuple[str, str]] | None:
        """(name, value) pairs from a JSON object, in order; a list value repeats the name."""
        v = self.text(name)
        if v is None:
            return None
        want = '{"Header-Name": "value"' + (', "Other": ["v1", "v2"]}' if lists else "}")
        try:
            pairs = json.loads(v, object_pairs_hook=_Pairs)
        except ValueError as e:
            self.fail(name, f"expected a JSON object like {want}: {e}")
            return None
        if not isinstance(pairs, _Pairs) or not pairs:
            self.fail(name, f"expected a non-empty JSON object like {want}, got {v!r}")
            return None
        names = [k for k, _ in pairs]
        dup = next((k for k in names if names.count(k) > 1), None)
        if dup is not None:
            # json.loads would silently keep only the last value.
            self.fail(name, f"header {dup!r} appears twice" + ("; give it a list of values" if lists else ""))
            return None
        out: list[tuple[str, str]] = []
        for k, val in pairs:
            values = val if lists and type(val) is list and val else [val]
            if not all(isinstance(x, str) for x in values):
                kind = "a string or a non-empty list of strings" if lists else "a string"
                shown = json.dumps(dict(val) if isinstance(val, _Pairs) else val)
                self.fail(name, f"header {k!r}: the value must be {kind}, got {shown}")
                return None
            out.extend((k, x) for x in values)
        return out

    def validate(self, model: type[BaseModel], raw: Mapping[str, Any], fields: Mapping[str, str]) -> Any:
        """``model`` validated from ``raw``, or None with its errors filed under the annotations."""
        try:
            return model.model_validate(raw)
        except ValidationError as e:
            for field, index, message, cross in _errors(e):
                name = fields.get(field) or next(iter(fields.values()))
                named = _name_fields(message, fields) if cross else message
                if named == message:  # about this annotation's own value: show it
                    named += self._got(name, raw.get(field), index, message)
                self.fail(name, named)
            return None

    def _got(self, name: str, value: Any, index: int | None, message: str) -> str:
        if index is not None and isinstance(value, list) and index < len(value):
            value = value[index]
        if isinstance(value, list) and any(isinstance(x, str) and x in message for x in value):
            return ""
        if not isinstance(value, (str, int)):
            value = self.values.get(name)  # a nested or list value: show what was written
        if value is None or (isinstance(value, str) and value in message):
            return ""
        return f", got {value!r}"


class _Pairs(list):
    """A JSON object as its (key, value) pairs: duplicates stay visible."""


def _errors(e: ValidationError) -> Iterator[tuple[str, int | None, str, bool]]:
    """(top-level field, list index or None, message, cross-field?) per error."""
    for err in e.errors(include_url=False):
        loc = list(err["loc"])
        cause = (err.get("ctx") or {}).get("error")
        if isinstance(cause, m.SpecError):
            for field, message in cause.problems:
                parts = loc + ([p for p in field.split(".") if p] if field else [])
                yield (str(parts[0]) if parts else ""), None, message, True
            continue
        field = str(loc[0]) if loc else ""
        index = loc[1] if len(loc) > 1 and isinstance(loc[1], int) else None
        if err["type"] == "missing":
            message = "required"
        elif isinstance(cause, ValueError):
            message = str(cause)
        else:
            message = err["msg"]
        yield field, index, message, False


_QUOTED = re.compile(r"""('(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")""")


def _name_fields(message: str, fields: Mapping[str, str]) -> str:
    """A cross-field message speaks of spec fields; say the annotations instead
    (one pass, longest name first, never inside a quoted value)."""
    words = re.compile(r"\b(" + "|".join(sorted(map(re.escape, fields), key=len, reverse=True)) + r")\b")
    parts = _QUOTED.split(message)
    return "".join(p if i % 2 else words.sub(lambda mo: fields[mo.group(1)], p) for i, p in enumerate(parts))


def _require(r: _Reader, required: str, group: tuple[str, ...], what: str) -> bool:
    """Whether the group is set; files a problem when it is set without ``required``."""
    if not r.present(*group):
        return False
    if required not in r.values:
        others = next(n for n in group if n in r.values)
        r.fail(others, f"needs {required} (required when any {what} annotation is set)")
        return False
    return True


# -- one builder per RoutePolicy part -------------------------------------------------


def _rewrite(r: _Reader) -> Rewrite | None:
    prefix, host = r.text(REWRITE_PREFIX), r.text(REWRITE_HOST)
    if prefix is None and host is None:
        return None
    raw: dict[str, Any] = {}
    if prefix is not None:
        raw["path"] = {"type": "ReplacePrefixMatch", "replacePrefixMatch": prefix}
    if host is not None:
        raw["hostname"] = host
    spec = r.validate(m.RewriteSpec, raw, _REWRITE)
    if spec is None or not r.ok(*_REWRITE.values()):
        return None
    return policies.rewrite(spec)


def _headers(r: _Reader, set_name: str, add_name: str, remove_name: str) -> HeaderModifier | None:
    to_set = r.header_object(set_name, lists=False)
    to_add = r.header_object(add_name, lists=True)
    to_remove = r.csv(remove_name)
    for name, pairs in ((set_name, to_set), (add_name, to_add)):
        for header, value in pairs or ():
            _check(r, name, header, m.HeaderValueSpec.model_validate, {"name": header, "value": value})
    for header in to_remove or ():
        _check(r, remove_name, header, _HEADER_NAME.validate_python, header)
    if not r.ok(set_name, add_name, remove_name) or not (to_set or to_add or to_remove):
        return None
    # Every entry passed the spec's own validators above: this cannot fail.
    spec = m.HeaderModifierSpec.model_validate({
        "set": [{"name": k, "value": v} for k, v in to_set or ()],
        "add": [{"name": k, "value": v} for k, v in to_add or ()],
        "remove": list(to_remove or ()),
    })
    return policies.header_modifier(spec)


def _check(r: _Reader, name: str, header: str, validate: Callable[[Any], Any], value: Any) -> None:
    """One header entry through the spec's own validator (names are tokens; values have no CR, LF, NUL)."""
    try:
        validate(value)
    except ValidationError as e:
        r.fail(name, f"header {header!r}: " + "; ".join(msg for _, _, msg, _ in _errors(e)))


def _timeouts(r: _Reader) -> Timeouts:
    request, backend = r.text(TIMEOUT_REQUEST), r.text(TIMEOUT_BACKEND_REQUEST)
    default = NO_POLICY.timeouts
    raw = {k: v for k, v in (("request", request), ("backendRequest", backend)) if v is not None}
    if not raw:
        return default
    spec = r.validate(m.TimeoutsSpec, raw, _TIMEOUTS)
    if spec is None or not r.ok(*_TIMEOUTS.values()):
        return default
    return policies.timeouts(spec)  # as for the APIEndpoint field


def _retries(r: _Reader) -> RetryPolicy:
    default = NO_POLICY.retries
    raw: dict[str, Any] = {}
    attempts = r.integer(RETRY_ATTEMPTS, *_bounds(m.RetriesSpec, "attempts"))
    codes = r.csv(RETRY_STATUS_CODES)
    if codes is not None:
        bad = next((c for c in codes if not _INTEGER.fullmatch(c)), None)
        if bad is not None:
            r.fail(RETRY_STATUS_CODES, f"expected comma-separated status codes, got {bad!r}")
        else:
            raw["statusCodes"] = [int(c) for c in codes]
    for field, value in (
        ("attempts", attempts),
        ("onConnectFailure", r.boolean(RETRY_ON_CONNECT_FAILURE)),
        ("backoff", r.text(RETRY_BACKOFF)),
        ("nonIdempotent", r.boolean(RETRY_NON_IDEMPOTENT)),
    ):
        if value is not None:
            raw[field] = value
    if not raw:
        return default
    spec = r.validate(m.RetriesSpec, raw, _RETRIES)
    if spec is None or not r.ok(*_RETRIES.values()):
        return default
    return policies.retries(spec)


def _cors(r: _Reader) -> CorsPolicy | None:
    values = {
        "allowOrigins": r.csv(CORS_ALLOW_ORIGINS),
        "allowMethods": r.csv(CORS_ALLOW_METHODS),
        "allowHeaders": r.csv(CORS_ALLOW_HEADERS),
        "exposeHeaders": r.csv(CORS_EXPOSE_HEADERS),
        "allowCredentials": r.boolean(CORS_ALLOW_CREDENTIALS),
        "maxAge": r.integer(CORS_MAX_AGE, *_bounds(m.CorsSpec, "max_age")),
    }
    if not _require(r, CORS_ALLOW_ORIGINS, tuple(_CORS.values()), "crdgate.io/cors-*") or not values["allowOrigins"]:
        return None
    spec = r.validate(m.CorsSpec, {k: v for k, v in values.items() if v is not None}, _CORS)
    if spec is None or not r.ok(*_CORS.values()):
        return None
    return policies.cors(spec)


def _load_balancer(r: _Reader) -> str:
    lb = r.choice(LOAD_BALANCER, _LOAD_BALANCERS)
    if lb is not None and lb not in _LOAD_BALANCERS:
        r.fail(LOAD_BALANCER, f"must be one of {', '.join(_LOAD_BALANCERS)}, got {lb!r}")
    return lb if lb in _LOAD_BALANCERS else NO_POLICY.load_balancer


def _rate_limit(r: _Reader, has_auth: bool) -> RateLimitPolicy | None:
    rpm = r.integer(RATE_LIMIT_RPM)
    burst = r.integer(RATE_LIMIT_BURST)
    key = r.choice(RATE_LIMIT_KEY, _RATE_LIMIT_KEYS)
    key_header = r.text(RATE_LIMIT_KEY_HEADER)
    scope = r.choice(RATE_LIMIT_SCOPE, _RATE_LIMIT_SCOPES)
    group = tuple(_RATE_LIMIT.values())
    if not _require(r, RATE_LIMIT_RPM, group, "crdgate.io/rate-limit-*") or not r.ok(*group):
        return None
    assert rpm is not None
    defaults = RateLimitPolicy(requests_per_minute=1)
    policy = RateLimitPolicy(
        requests_per_minute=rpm,
        burst=defaults.burst if burst is None else burst,
        key=key or defaults.key,
        key_header=key_header,
        scope=scope or defaults.scope,
    )
    # The data plane's own check first, for its messages; then the spec model,
    # for what it checks besides (a header name that is a token, keyHeader only with Header).
    error = policy_error(policy)
    if error is not None:
        for field in sorted(_RATE_LIMIT, key=len, reverse=True):
            error = error.replace(f"rateLimit.{field}", _RATE_LIMIT[field])
        name = max((a for a in group if error.startswith(a)), key=len, default=RATE_LIMIT_RPM)
        r.fail(name, error[len(name) :].strip())
        return None
    raw = {"requestsPerMinute": rpm, "burst": policy.burst, "key": policy.key, "scope": policy.scope}
    if key_header is not None:
        raw["keyHeader"] = key_header
    spec = r.validate(m.RateLimitSpec, raw, _RATE_LIMIT)
    if spec is None:
        return None
    if policy.key == "Consumer" and not has_auth:
        needs = f"Consumer needs authentication ({authbuild.A_TYPE} or {authbuild.A_REQUIRED}) to know the consumer"
        r.fail(RATE_LIMIT_KEY, needs)
        return None
    return policies.rate_limit(spec)
