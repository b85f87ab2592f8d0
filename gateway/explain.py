"""Which route a request would reach on a table, and why: ``crdgate explain`` and the admin ``/explain``.

The route comes from ``RouteTable.trace`` (gateway/routing.py), which walks the
same host groups and path buckets as ``RouteTable.match`` in the same order;
the target is normalised by gateway/normalize.py and the rewrites computed by
gateway/policies.py, exactly as the proxy does. This module only says why:
for the winner, the precedence step that decided against the runner-up; for
every other route whose host and path matched, the check it failed or the step
it lost on; then the winner's policies in the order the proxy applies them, the
path and host the backend would see, and the backends with their endpoints.

Data plane only (the admin server uses it): objects that are not in the table
at all (errors from the compile) are added by the caller, which knows them.
Credentials never appear: policies come from gateway/tablejson.py (the
``/routes`` view, credential-free) and header or query values sent with the
request are not echoed.
"""

from __future__ import annotations

from typing import Any, Iterable

from gateway.errors import BadTarget, ExplainError
from gateway.normalize import normalize_target, valid_host
from gateway.policies import DEFAULT_PORTS, origin_allowed, preflight_route, replaced_path
from gateway.routing import PATH_EXACT, PATH_PREFIX, PATH_REGEX, Considered, Route, RouteTable, normalize_host
from gateway.tablejson import policy_to_json

# Order in which the proxy applies a route's policies (gateway/exchange.py,
# gateway/policies.py): answered early, then auth, then the rate limit, then
# the request as forwarded.
_POLICY_ORDER = (
    "httpsRedirect", "redirect", "cors", "maxBodyBytes", "auth", "rateLimit", "rewrite", "requestHeaders",
    "responseHeaders", "timeouts", "retries", "loadBalancer", "mirror",
)  # fmt: skip
_TCHAR = frozenset("!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
_RATE_KEYS = {
    "ClientAddress": "the client address",
    "Consumer": "the authenticated consumer (the client address when anonymous)",
    "Route": "one bucket for the whole route",
}


def parse_headers(pairs: Iterable[str]) -> dict[str, str]:
    """``Name: value`` strings to the lower-case map matching reads. The first of a
    repeated name wins, as for the proxy's header view."""
    out: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition(":")
        name = name.strip()
        if not sep or not name or any(c.isspace() for c in name):
            raise ExplainError(f"header {pair!r} is not of the form 'Name: value'")
        out.setdefault(name.lower(), value.strip())
    return out


def _target(url: str) -> bytes:
    try:
        raw = url.encode("ascii")
    except UnicodeEncodeError:
        raise ExplainError("the URL must be ASCII (percent-encode the rest)") from None
    if not raw:
        raise ExplainError("empty URL")
    return raw


def route_ref(r: Route) -> dict[str, Any]:
    ns, _, name = r.name.partition("/")
    return {"kind": r.kind, "namespace": ns, "name": name, "rule": r.rule, "path": r.path, "pathType": r.path_type,
            "hosts": list(r.hosts), "methods": sorted(r.methods) if r.methods is not None else None}


def _path_how(r: Route, path: str) -> str:
    if r.path_type == PATH_EXACT:
        return f"Exact path {r.path}"
    if r.path_type == PATH_REGEX:
        return f"regular expression {r.path}"
    return f"prefix {r.prefix_key or '/'}"


def _host_how(c: Considered) -> str:
    if c.host_match == "exact":
        return f"exact host {c.host_key}"
    if c.host_match == "wildcard":
        return f"wildcard host {c.host_key}"
    return "any host"


_PRECEDENCE_STEPS = (
    ("method", lambda w, lo: f"it lists the method and {lo.name} matches any method"),
    ("headers", lambda w, lo: f"more header matches ({len(w.headers)} against {len(lo.headers)})"),
    ("query", lambda w, lo: f"more query matches ({len(w.query)} against {len(lo.query)})"),
    ("creationTimestamp", lambda w, lo: f"older creationTimestamp ({w.created or 'unset'} against {lo.created or 'unset'})"),
    ("name", lambda w, lo: f"namespace/name {w.name} sorts before {lo.name}"),
    ("rule", lambda w, lo: f"rule {w.rule} comes before {lo.rule}"),
)


def deciding_step(winner: Considered, loser: Considered) -> tuple[str, str]:
    """The first precedence step (docs/apiendpoint.md#matching-precedence) on which
    ``winner`` beats ``loser``, both taking the request: (step, reason)."""
    w, lo = winner.route, loser.route
    if winner.host_match != loser.host_match:
        return "host", f"{_host_how(winner)} beats {_host_how(loser)}"
    if winner.host_key != loser.host_key:  # two wildcards: the longer suffix is tried first
        return "host", f"longer {_host_how(winner)} beats {loser.host_key}"
    if w.path_type != lo.path_type:
        return "path", f"{w.path_type} path beats {lo.path_type}"
    if w.path_type == PATH_PREFIX and w.prefix_key != lo.prefix_key:
        return "path", f"longest prefix: {w.prefix_key or '/'} beats {lo.prefix_key or '/'}"
    wp, lp = w.precedence(), lo.precedence()
    for i, (step, reason) in enumerate(_PRECEDENCE_STEPS):
        if wp[i] != lp[i]:
            return step, reason(w, lo)
    return "kind", f"{w.kind} comes before {lo.kind} for the same namespace/name"


def _candidate(c: Considered, path: str, outcome: str, step: str, reason: str) -> dict[str, Any]:
    return {**route_ref(c.route), "hostMatch": c.host_match, "hostKey": c.host_key,
            "pathMatch": _path_how(c.route, path), "outcome": outcome, "step": step, "reason": reason}


def _policies(route: Route, table: RouteTable) -> list[dict[str, Any]]:
    """The route's non-default policies in the order the proxy applies them."""
    found = policy_to_json(route, table)
    out = []
    for name in _POLICY_ORDER:
        if name not in found:
            continue
        entry = {"policy": name}
        value = found[name]
        entry.update(value if isinstance(value, dict) else {"value": value})
        if name == "auth":
            entry.setdefault("header", "authorization")  # Basic and default Bearer read Authorization
        if name == "rateLimit":
            key = value.get("key", "ClientAddress")
            entry["keyedBy"] = (f"the value of header {value.get('keyHeader')}" if key == "Header"
                                else _RATE_KEYS.get(key, key))
        out.append(entry)
    return out


def _redirect(route: Route, scheme: str, method: str, host: str, path: str) -> dict[str, Any] | None:
    """Where the gateway's own redirect points (gateway/policies.py ``_redirect_answer``).
    The request's query is kept by the proxy; it is not repeated here (it may hold a credential)."""
    pol = route.policy
    req_host, _, req_port = host.rpartition(":") if host.count(":") == 1 else (host, "", "")
    if pol.https_redirect and scheme != "https":
        to_scheme, to_host, port, new_path = "https", req_host, None, path
        status = 301 if method in ("GET", "HEAD") else 308
    elif pol.redirect is not None:
        r = pol.redirect
        to_scheme, to_host, status = r.scheme or scheme, r.hostname or req_host, r.status_code
        if r.port is not None:
            port = r.port
        elif r.scheme and r.scheme != scheme:
            port = None
        else:
            port = int(req_port) if req_port.isdigit() else None
        new_path = replaced_path(route, path, r.path_type, r.replace_prefix_match, r.replace_full_path)
    else:
        return None
    location = f"{to_scheme}://{to_host}"
    if port is not None and port != DEFAULT_PORTS.get(to_scheme):
        location += f":{port}"
    return {"statusCode": status, "location": location + new_path}


def _preflight(route: Route, headers: dict[str, str]) -> dict[str, Any]:
    """What the route's CORS policy answers a preflight (gateway/policies.py ``_preflight``)."""
    cors, origin = route.policy.cors, headers["origin"]
    method = headers["access-control-request-method"].strip()
    if not origin_allowed(cors, origin):
        status, why = 403, "CORS origin not allowed"
    elif cors.allow_methods and "*" not in cors.allow_methods and method not in cors.allow_methods:
        status, why = 403, "CORS method not allowed"
    else:
        status, why = 204, "preflight"
    return {"answeredBy": "gateway", "statusCode": status, "reason": why}


def _upstream(route: Route, table: RouteTable, host: str, path: str) -> dict[str, Any]:
    """The path and Host the backend receives, as ``Exchange._upstream_head`` builds them:
    a rewrite's hostname wins; otherwise a URL backend sends its own Host and any other
    backend the request's. Per backend when they differ."""
    rw = route.policy.rewrite
    new_path = path
    if rw is not None:
        new_path = replaced_path(route, path, rw.path_type, rw.replace_prefix_match, rw.replace_full_path)
    out: dict[str, Any] = {"path": new_path, "pathRewritten": new_path != path}
    if rw is not None and rw.hostname:
        out["host"], out["hostFrom"] = rw.hostname, "rewrite"
        return out
    hosts = set()
    for b in route.backends:
        s = table.endpoints.get(b.key)
        hosts.add((s.host_header, "backend URL") if s is not None and s.host_header else (host, "request"))
    if len(hosts) > 1:
        out["host"], out["hostFrom"] = None, "each backend (URL backends send their own)"
    else:
        out["host"], out["hostFrom"] = next(iter(hosts), (host, "request"))
    return out


def _backends(route: Route, table: RouteTable) -> list[dict[str, Any]]:
    total = sum(b.weight for b in route.backends)
    out = []
    for b in route.backends:
        s = table.endpoints.get(b.key)
        out.append({
            "backend": b.key,
            "weight": b.weight,
            "share": round(100.0 * b.weight / total, 2) if total else 0.0,
            "state": s.state if s is not None else "Unknown",
            "endpoints": [("https://" if e.tls else "") + e.address for e in s.endpoints] if s is not None else [],
        })
    return out


def explain(table: RouteTable, method: str, url: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    """The explanation of one request as plain JSON. ``url`` is an absolute URL
    (``http://host/path?q``) or a path with the host in ``headers["host"]``;
    ``headers`` maps lower-case names to values. Raises ExplainError for a
    request the proxy answers 400 before routing."""
    headers = dict(headers or {})
    method = method.strip().upper()  # methods are case-sensitive; people type "get"
    if not method or not all(c in _TCHAR for c in method):
        raise ExplainError(f"method {method!r} is not an HTTP method (a token, RFC 9110 9.1)")
    raw = _target(url)
    try:
        path, query, authority = normalize_target(raw)
    except BadTarget as e:
        raise ExplainError(f"the proxy answers 400: {e.reason}") from None
    if path == "*":
        raise ExplainError("the proxy answers 400: asterisk-form is not routed")
    scheme = "https" if url[:8].lower() == "https://" else "http"
    if authority is not None:
        if not valid_host(authority):
            raise ExplainError("the proxy answers 400: invalid authority in the URL")
        host = authority.decode("ascii")
        headers["host"] = host
    else:
        host = headers.get("host", "")
        if host and not valid_host(host.encode("latin-1", "replace")):
            raise ExplainError("the proxy answers 400: invalid Host header")
    raw_path = raw.split(b"?", 1)[0]
    if authority is not None:
        raw_path = raw_path[raw_path.find(b"//") + 2:]
        raw_path = raw_path[raw_path.find(b"/"):] if b"/" in raw_path else b"/"
    request: dict[str, Any] = {"method": method, "host": normalize_host(host) if host else "", "path": path,
                               "pathNormalized": raw_path.decode("ascii") != path}
    if request["pathNormalized"]:
        request["pathAsSent"] = raw_path.decode("ascii")

    result, steps = table.trace(method, host, path, headers, query)
    route = result.route
    preflight_by = None
    if method == "OPTIONS":
        answering = preflight_route(table, route, host, path, headers, query)
        if answering is not route:
            preflight_by, route = answering, answering

    winner = next((c for c in steps if c.route is route and c.rejected is None), None)
    candidates = []
    runner_up = None
    for c in steps:
        if c is winner:
            continue
        if c.rejected is not None:
            candidates.append(_candidate(c, path, "rejected", c.rejected, c.detail))
        elif winner is not None:
            step, reason = deciding_step(winner, c)
            runner_up = runner_up or (step, reason)
            candidates.append(_candidate(c, path, "lost", step, reason))
        else:  # a preflight went to another route: this one would have taken the OPTIONS itself
            candidates.append(_candidate(c, path, "lost", "preflight", "a CORS preflight is answered by the route it announces"))

    out: dict[str, Any] = {"request": request, "generation": table.generation}
    if route is None:
        out["status"] = result.status
        if result.status == 405:
            out["allow"] = list(result.allow)
            out["reason"] = "; ".join(
                f"path matched {c['namespace']}/{c['name']} but {c['reason']}" for c in candidates if c["step"] == "method"
            )
        else:
            out["reason"] = ("no route's host and path match" if not candidates
                             else "routes matched host and path but none took the request (see candidates)")
        out["route"] = None
    else:
        out["status"] = 200
        out["route"] = {**route_ref(route), "fallback": route is table.fallback}
        if preflight_by is not None:
            out["decidedBy"] = {"step": "preflight", "reason": (
                f"CORS preflight for {headers.get('access-control-request-method', '').strip()}: "
                "answered by the CORS policy of the route that request reaches")}
        elif route is table.fallback and winner is None:
            out["decidedBy"] = {"step": "defaultBackend", "reason": "no route matched: the Ingress defaultBackend takes it"}
        elif runner_up is not None:
            out["decidedBy"] = {"step": runner_up[0], "reason": runner_up[1]}
        else:
            out["decidedBy"] = {"step": "onlyMatch", "reason": (
                f"the only route taking the request ({_host_how(winner)}, {_path_how(route, path)})"
                if winner is not None else "the only route taking the request")}
        out["policies"] = _policies(route, table)
        redirect = _redirect(route, scheme, method, host, path)
        if redirect is not None:
            out["redirect"] = redirect  # answered by the gateway: no backend sees the request
        elif (method == "OPTIONS" and route.policy.cors is not None and "origin" in headers
              and "access-control-request-method" in headers):
            # gateway/policies.py early_answer: the route's CORS policy answers the preflight itself.
            out["preflight"] = _preflight(route, headers)
        else:
            out["upstream"] = _upstream(route, table, host, path)
            out["backends"] = _backends(route, table)
    out["candidates"] = candidates
    return out
