"""A routing table as plain JSON: the admin ``/routes`` view and ``crdgate routes``.

Reads only ``gateway.routing`` types, so the data plane's admin server
(gateway/admin.py) can use it; the offline report (crdgate/report.py) renders
its text table from the same rows, so both views always agree.

Credentials never appear: authenticators describe themselves through their
credential-free ``describe()``, and values of header modifiers whose name
suggests a credential are replaced by ``<redacted>``.
"""

from __future__ import annotations

from typing import Any

from gateway.routing import (
    NO_POLICY,
    BackendRef,
    EndpointSet,
    HeaderModifier,
    Route,
    RouteTable,
    StringMatch,
    Timeouts,
)

REDACTED = "<redacted>"
_SENSITIVE = ("authorization", "cookie", "token", "secret", "password", "api-key", "apikey")
_DEFAULT_TIMEOUTS = Timeouts()


def _sensitive(name: str) -> bool:
    n = name.lower()
    return any(s in n for s in _SENSITIVE)


def _match(m: StringMatch) -> dict:
    return {"name": m.name, "value": m.value, "type": "RegularExpression" if m.regex is not None else "Exact"}


def _backend(ref: BackendRef, endpoints: EndpointSet | None) -> dict:
    if endpoints is None:
        return {"backend": ref.key, "weight": ref.weight, "state": "Unknown", "endpoints": 0}
    return {
        "backend": ref.key,
        "weight": ref.weight,
        "state": endpoints.state,
        "endpoints": len(endpoints.endpoints),
        # One protocol per backend: a Service port's appProtocol, a url backend's protocol.
        "protocol": "HTTP/2" if endpoints.endpoints and endpoints.endpoints[0].http2 else "HTTP/1.1",
    }


def _headers(mod: HeaderModifier) -> dict:
    def pairs(items):
        return [{"name": n, "value": REDACTED if _sensitive(n) else v} for n, v in items]

    out: dict[str, Any] = {}
    if mod.set:
        out["set"] = pairs(mod.set)
    if mod.add:
        out["add"] = pairs(mod.add)
    if mod.remove:
        out["remove"] = list(mod.remove)
    return out


def _not_none(**fields) -> dict:
    return {k: v for k, v in fields.items() if v is not None}


def _auth(auth: Any) -> dict:
    describe = getattr(auth, "describe", None)
    if callable(describe):
        return dict(describe())
    return {"type": getattr(auth, "scheme", None) or type(auth).__name__}


def policy_to_json(route: Route, table: RouteTable) -> dict:
    """The route's policies that differ from the defaults (``timeouts`` always)."""
    p = route.policy
    t = p.timeouts
    out: dict[str, Any] = {
        "timeouts": _not_none(
            request=t.request,
            backendRequest=t.backend_request,
            connect=t.connect if t.connect != _DEFAULT_TIMEOUTS.connect else None,
        )
    }
    if p is NO_POLICY:
        return out
    if p.auth is not None:
        out["auth"] = _auth(p.auth)
    if p.rate_limit is not None:
        rl = p.rate_limit
        out["rateLimit"] = _not_none(
            requestsPerMinute=rl.requests_per_minute, burst=rl.burst, key=rl.key, keyHeader=rl.key_header, scope=rl.scope
        )
    if p.rewrite is not None:
        rw = p.rewrite
        out["rewrite"] = _not_none(
            type=rw.path_type,
            replacePrefixMatch=rw.replace_prefix_match,
            replaceFullPath=rw.replace_full_path,
            hostname=rw.hostname,
        )
    if p.redirect is not None:
        rd = p.redirect
        out["redirect"] = _not_none(
            scheme=rd.scheme,
            hostname=rd.hostname,
            port=rd.port,
            type=rd.path_type,
            replacePrefixMatch=rd.replace_prefix_match,
            replaceFullPath=rd.replace_full_path,
            statusCode=rd.status_code,
        )
    if p.request_headers is not None:
        out["requestHeaders"] = _headers(p.request_headers)
    if p.response_headers is not None:
        out["responseHeaders"] = _headers(p.response_headers)
    if p.retries.attempts > 1:
        r = p.retries
        out["retries"] = {
            "attempts": r.attempts,
            "statusCodes": sorted(r.status_codes),
            "onConnectFailure": r.on_connect_failure,
            "backoff": r.backoff,
            "nonIdempotent": r.non_idempotent,
        }
    if p.cors is not None:
        c = p.cors
        out["cors"] = _not_none(
            allowOrigins=list(c.allow_origins),
            allowMethods=list(c.allow_methods) or None,
            allowHeaders=list(c.allow_headers) or None,
            exposeHeaders=list(c.expose_headers) or None,
            allowCredentials=c.allow_credentials or None,
            maxAge=c.max_age,
        )
    if p.max_body_bytes is not None:
        out["maxBodyBytes"] = p.max_body_bytes
    if p.load_balancer != NO_POLICY.load_balancer:
        out["loadBalancer"] = p.load_balancer
    if p.mirror is not None:
        out["mirror"] = {
            "backend": _backend(p.mirror.backend, table.endpoints.get(p.mirror.backend.key)),
            "percent": p.mirror.percent,
        }
    if p.https_redirect:
        out["httpsRedirect"] = True
    return out


def route_to_json(route: Route, table: RouteTable, priority: int | None) -> dict:
    """One route; ``priority`` is its 1-based place in match order (None: the fallback)."""
    return {
        "priority": priority,
        "fallback": priority is None,
        "kind": route.kind,
        "name": route.name,
        "rule": route.rule,
        "hosts": list(route.hosts),
        "wildcardSingleLabel": route.wildcard_single_label,
        "methods": sorted(route.methods) if route.methods is not None else None,
        "path": route.path,
        "pathType": route.path_type,
        "headers": [_match(m) for m in route.headers],
        "queryParams": [_match(m) for m in route.query],
        "backends": [_backend(b, table.endpoints.get(b.key)) for b in route.backends],
        "policies": policy_to_json(route, table),
        "created": route.created,
    }


def table_to_json(table: RouteTable) -> list[dict]:
    """Every route in match order, then the fallback (an Ingress defaultBackend) if any."""
    rows = [route_to_json(r, table, i) for i, r in enumerate(table.routes, 1)]
    if table.fallback is not None:
        rows.append(route_to_json(table.fallback, table, None))
    return rows
