"""Route policies built from the validated spec models, once per kind of policy.

Neighbours: an APIEndpoint's fields (apiendpoint.py) and an Ingress's
``crdgate.io/`` annotations (controller/compile/annotations.py, which shapes them into
the same spec models first) both come here, so that one field means the same
policy whichever way it was written. The results are the data plane's types
(gateway/routing.py). Routes mostly share a handful of settings: each distinct
one is built once (the caches below), so equal settings share one object.
"""

from __future__ import annotations

from functools import lru_cache

from controller import models as m
from gateway.routing import (
    CorsPolicy,
    HeaderModifier,
    RateLimitPolicy,
    Redirect,
    RetryPolicy,
    Rewrite,
    Timeouts,
)

DEFAULT_TIMEOUTS = Timeouts()
DEFAULT_RETRIES = RetryPolicy()

_timeouts = lru_cache(maxsize=1024)(lambda request, backend: Timeouts(request=request, backend_request=backend))
_retries = lru_cache(maxsize=1024)(
    lambda attempts, codes, on_connect, backoff, non_idem: RetryPolicy(
        attempts=attempts, status_codes=codes, on_connect_failure=on_connect, backoff=backoff, non_idempotent=non_idem
    )
)
_rate_limit = lru_cache(maxsize=1024)(
    lambda rpm, burst, key, key_header, scope: RateLimitPolicy(
        requests_per_minute=rpm, burst=burst, key=key, key_header=key_header, scope=scope
    )
)


def header_modifier(spec: m.HeaderModifierSpec | None) -> HeaderModifier | None:
    """None when nothing is set (the proxy skips the step)."""
    if spec is None or not (spec.set or spec.add or spec.remove):
        return None
    return HeaderModifier(
        set=tuple((h.name, h.value) for h in spec.set),
        add=tuple((h.name, h.value) for h in spec.add),
        remove=tuple(n.lower() for n in spec.remove),
    )


def rewrite(spec: m.RewriteSpec | None) -> Rewrite | None:
    if spec is None:
        return None
    p = spec.path
    return Rewrite(
        path_type=p.type if p else None,
        replace_prefix_match=p.replace_prefix_match if p else None,
        replace_full_path=p.replace_full_path if p else None,
        hostname=spec.hostname.lower() if spec.hostname else None,
    )


def redirect(spec: m.RedirectSpec | None) -> Redirect | None:
    if spec is None:
        return None
    p = spec.path
    return Redirect(
        scheme=spec.scheme,
        hostname=spec.hostname.lower() if spec.hostname else None,
        port=spec.port,
        path_type=p.type if p else None,
        replace_prefix_match=p.replace_prefix_match if p else None,
        replace_full_path=p.replace_full_path if p else None,
        status_code=spec.status_code,
    )


def timeouts(spec: m.TimeoutsSpec | None) -> Timeouts:
    """``0s`` turns a limit off; no request timeout keeps the default."""
    if spec is None:
        return DEFAULT_TIMEOUTS
    request = DEFAULT_TIMEOUTS.request if spec.request is None else (spec.request or None)
    return _timeouts(request, spec.backend_request or None)


def retries(spec: m.RetriesSpec | None) -> RetryPolicy:
    if spec is None:
        return DEFAULT_RETRIES
    return _retries(
        spec.attempts,
        frozenset(spec.status_codes) if spec.status_codes is not None else DEFAULT_RETRIES.status_codes,
        spec.on_connect_failure,
        spec.backoff if spec.backoff is not None else DEFAULT_RETRIES.backoff,
        spec.non_idempotent,
    )


def cors(spec: m.CorsSpec | None) -> CorsPolicy | None:
    if spec is None:
        return None
    return CorsPolicy(
        allow_origins=tuple(spec.allow_origins),
        allow_methods=tuple(x.upper() for x in spec.allow_methods),
        allow_headers=tuple(spec.allow_headers),
        expose_headers=tuple(spec.expose_headers),
        allow_credentials=spec.allow_credentials,
        max_age=spec.max_age,
    )


def rate_limit(spec: m.RateLimitSpec | None) -> RateLimitPolicy | None:
    if spec is None:
        return None
    key_header = spec.key_header.lower() if spec.key_header else None
    return _rate_limit(spec.requests_per_minute, spec.burst, spec.key, key_header, spec.scope)
