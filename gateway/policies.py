"""Per-route policies as the proxy applies them, each a small function.

Order (documented in the README): redirects and CORS preflights are answered
first, then authentication, then rate limiting (so a consumer-keyed limit sees
the authenticated consumer), then the request is rewritten and forwarded.
Authenticators (gateway/auth) and the RateLimiter (gateway/ratelimit) return a
plain result when they can decide at once and an awaitable only when they need
I/O; the exchange (gateway/exchange.py) handles both.

Every function here takes the request as a ``RequestView`` (gateway/request.py),
never the exchange itself: what a policy may read and write is that type's fields.
"""

from __future__ import annotations

from gateway import metrics
from gateway.auth.base import AuthMemo, header_value, upstream_headers, without_query_param
from gateway.ratelimit import OUTCOME_ALLOWED, Decision
from gateway.request import RequestView
from gateway.routing import PATH_EXACT, PATH_REGEX, CorsPolicy, HeaderModifier, Redirect, Rewrite, Route, RoutePolicy
from gateway.syntax import valid_field_value

DEFAULT_PORTS = {"http": 80, "https": 443}


# -- answered by the gateway ------------------------------------------------------


def early_answer(ex: RequestView, pol: RoutePolicy):
    """(status, message, extra headers, body) when the gateway answers itself."""
    if pol.https_redirect and ex.client.scheme != "https" and not _forwarded_https(ex):
        return _redirect_answer(ex, Redirect(scheme="https", status_code=301 if ex.method in ("GET", "HEAD") else 308))
    if pol.redirect is not None:
        return _redirect_answer(ex, pol.redirect)
    if pol.cors is not None and ex.method == "OPTIONS":
        hv = ex.header_view
        origin = hv.get("origin")
        if origin is not None and hv.get("access-control-request-method") is not None:
            return _preflight(pol.cors, origin, hv)
    return None


def preflight_route(table, matched: Route | None, host: str, path: str, hv, query: str) -> Route | None:
    """The route that answers an OPTIONS request: ``matched`` (what OPTIONS
    itself matched, None on 404/405) unless the request is a CORS preflight
    (Origin and Access-Control-Request-Method) and the request it announces
    would reach a route with CORS whose methods leave OPTIONS out: that route's
    CORS policy answers the preflight (see ``early_answer``). Without this a
    route with ``methods: [GET, POST]`` answers its own preflights 405, or a
    broader route takes them. A route that lists OPTIONS takes every OPTIONS
    request, preflights included; a preflight for a route without CORS keeps
    what OPTIONS matched."""
    if matched is not None and matched.methods is not None and "OPTIONS" in matched.methods:
        return matched
    announced_method = hv.get("access-control-request-method")
    if announced_method is None or hv.get("origin") is None:
        return matched
    announced = table.match(announced_method.strip(), host, path, hv, query).route
    if (announced is not None and announced.policy.cors is not None
            and announced.methods is not None and "OPTIONS" not in announced.methods):
        return announced
    return matched


def _forwarded_https(ex: RequestView) -> bool:
    """A trusted proxy in front terminated TLS already: redirecting would loop."""
    if not ex.client.trusted:
        return False
    proto = ex.header_view.get("x-forwarded-proto")
    return proto is not None and proto.split(",")[0].strip().lower() == "https"


def replaced_path(route: Route, path: str, path_type: str | None, prefix: str | None, full: str | None) -> str:
    """Gateway API path modifiers: ReplaceFullPath and ReplacePrefixMatch."""
    if path_type == "ReplaceFullPath" and full is not None:
        return full
    if path_type == "ReplacePrefixMatch" and prefix is not None:
        if route.path_type == PATH_REGEX:
            return prefix  # the compiler refuses this; keep a defined answer anyway
        matched = route.path if route.path_type == PATH_EXACT else route.prefix_key
        rest = path[len(matched):] if route.path_type != PATH_EXACT else ""
        new = prefix.rstrip("/") + rest
        return new if new.startswith("/") else "/" + new
    return path


def _redirect_answer(ex: RequestView, r: Redirect):
    host_header = ex.host.decode("latin-1")
    req_host, _, req_port = host_header.rpartition(":") if host_header.count(":") == 1 else (host_header, "", "")
    scheme = r.scheme or ex.client.scheme
    host = r.hostname or req_host
    if r.port is not None:
        port = r.port
    elif r.scheme and r.scheme != ex.client.scheme:
        port = None  # a scheme change implies its well-known port
    else:
        port = int(req_port) if req_port.isdigit() else None
    path = replaced_path(ex.route, ex.path, r.path_type, r.replace_prefix_match, r.replace_full_path)
    location = f"{scheme}://{host}"
    if port is not None and port != DEFAULT_PORTS.get(scheme):
        location += f":{port}"
    location += path
    if ex.query:
        location += "?" + ex.query
    return r.status_code, "redirect", [(b"location", location.encode("latin-1"))], b""


def origin_allowed(cors: CorsPolicy, origin: str) -> bool:
    for allowed in cors.allow_origins:
        if allowed == "*" or allowed == origin:
            return True
        if "*" in allowed:
            head, _, tail = allowed.partition("*")
            if origin.startswith(head) and origin.endswith(tail) and len(origin) > len(head) + len(tail):
                middle = origin[len(head): len(origin) - len(tail)]
                if "/" not in middle and ":" not in middle:
                    return True
    return False


def _preflight(cors: CorsPolicy, origin: str, hv):
    if not origin_allowed(cors, origin):
        return 403, "CORS origin not allowed", [(b"vary", b"Origin")], None
    method = hv.get("access-control-request-method", "")
    if cors.allow_methods and "*" not in cors.allow_methods and method not in cors.allow_methods:
        return 403, "CORS method not allowed", [(b"vary", b"Origin")], None
    extra = [
        (b"access-control-allow-origin", _allow_origin_value(cors, origin)),
        (b"access-control-allow-methods", ", ".join(cors.allow_methods or (method,)).encode("latin-1")),
        (b"vary", b"Origin"),
    ]
    req_headers = hv.get("access-control-request-headers")
    if cors.allow_headers:
        value = req_headers if "*" in cors.allow_headers and req_headers else ", ".join(cors.allow_headers)
        extra.append((b"access-control-allow-headers", value.encode("latin-1")))
    if cors.allow_credentials:
        extra.append((b"access-control-allow-credentials", b"true"))
    if cors.max_age is not None:
        extra.append((b"access-control-max-age", b"%d" % cors.max_age))
    return 204, "preflight", extra, b""


def _allow_origin_value(cors: CorsPolicy, origin: str) -> bytes:
    # With credentials, "*" is not allowed by browsers: echo the origin instead.
    if "*" in cors.allow_origins and not cors.allow_credentials:
        return b"*"
    return origin.encode("latin-1")


def cors_response_headers(ex: RequestView, cors: CorsPolicy, parts: list) -> None:
    origin = ex.header_view.get("origin") if ex.header_view is not None else None
    if origin is None or not origin_allowed(cors, origin):
        return
    parts += (b"access-control-allow-origin: ", _allow_origin_value(cors, origin), b"\r\nvary: Origin\r\n")
    if cors.allow_credentials:
        parts.append(b"access-control-allow-credentials: true\r\n")
    if cors.expose_headers:
        parts += (b"access-control-expose-headers: ", ", ".join(cors.expose_headers).encode("latin-1"), b"\r\n")


def cors_fields(ex: RequestView, cors: CorsPolicy) -> list:
    """The same fields as ``cors_response_headers``, as (name, value) pairs (HTTP/2 heads)."""
    origin = ex.header_view.get("origin") if ex.header_view is not None else None
    if origin is None or not origin_allowed(cors, origin):
        return []
    fields = [(b"access-control-allow-origin", _allow_origin_value(cors, origin)), (b"vary", b"Origin")]
    if cors.allow_credentials:
        fields.append((b"access-control-allow-credentials", b"true"))
    if cors.expose_headers:
        fields.append((b"access-control-expose-headers", ", ".join(cors.expose_headers).encode("latin-1")))
    return fields


# -- authentication -------------------------------------------------------------------
#
# These run on every request of a route with auth or a rate limit, so they stay
# lean: authenticators read the raw header pairs (no header dict is built),
# results carry their upstream headers already encoded (AuthResult.upstream_headers),
# decision counters are plain dict updates (metrics.DecisionCounter), and the
# RateLimit-Policy value is computed once per policy (ratelimit._Plan).

_AUTH_COUNTS = metrics.AUTH_DECISIONS.counts
_RL_COUNTS = metrics.RATELIMIT_DECISIONS.counts


def authenticate(ex: RequestView, auth):
    """Ask the route's authenticator, with the client connection's memo of its last credential."""
    client = ex.client
    memo = client.auth_memo
    if memo is None:
        memo = client.auth_memo = AuthMemo()
    return auth.authenticate_raw(ex.headers, ex.query, ex.path, memo)


def apply_auth(ex: RequestView, auth, result) -> bool:
    """Record the outcome; answer 401/403/503 and return False when refused."""
    route = ex.route
    key = (route.name, auth.scheme, result.outcome)
    counts = _AUTH_COUNTS
    counts[key] = counts.get(key, 0) + 1
    if result.ok:
        ex.consumer = result.consumer
        upstream = result.upstream_headers
        if upstream is None:  # a result built without its headers: encode them now
            upstream = upstream_headers(auth.consumer_header, result.consumer, result.forward_headers)
        ex.auth_headers = upstream
        if result.strip_query_param:
            ex.query = without_query_param(ex.query, result.strip_query_param)
        return True
    extra = []
    if result.www_authenticate:
        extra.append((b"www-authenticate", result.www_authenticate.encode("latin-1")))
    ex.respond(result.status, result.message or "unauthorized", extra=extra)
    return False


# -- rate limiting -------------------------------------------------------------------


def client_address(ex: RequestView) -> str:
    """The client's address: the peer, or from X-Forwarded-For when the peer is trusted."""
    client = ex.client
    if not client.trusted:
        return client.peer
    xff = header_value(ex.headers, b"x-forwarded-for")
    if not xff:
        return client.peer
    import ipaddress

    nets = ex.server.trusted_proxies
    # Walk from the nearest hop back; the first address we do not trust is the client.
    for hop in reversed([h.strip() for h in xff.split(",") if h.strip()]):
        try:
            addr = ipaddress.ip_address(hop)
        except ValueError:
            return hop
        if not any(addr in n for n in nets):
            return hop
    return client.peer


def rate_limit_key(ex: RequestView, rl) -> str:
    key = rl.key
    if key == "ClientAddress":  # the default: checked first
        return "addr:" + client_address(ex)
    if key == "Route":
        return "route"
    if key == "Consumer":
        return "consumer:" + ex.consumer if ex.consumer else "addr:" + client_address(ex)
    if key == "Header":
        name = rl.key_header or ""
        value = header_value(ex.headers, name.lower().encode("latin-1", "replace"))
        return "header:" + value if value is not None else "header-missing"
    return "addr:" + client_address(ex)


def rate_limit(ex: RequestView, rl):
    """Count this request against ``rl``: True to go on, False when answered (429), or a
    future of the Decision for a Global limit (then ``apply_rate_limit`` follows)."""
    client = ex.client
    if rl.key == "ClientAddress" and not client.trusted:  # the default, and the common case
        key = client.addr_key  # the same string object each time: its hash is kept
        if key is None:
            key = client.addr_key = "addr:" + client.peer
    else:
        key = rate_limit_key(ex, rl)
    limiter = client.limiter
    name = ex.route.name
    got = limiter.admit(name, rl, key, client.ratelimit_headers)
    if got.__class__ is list:  # a Local admission, with the fields to answer with
        counted = (name, rl.scope, OUTCOME_ALLOWED)
        counts = _RL_COUNTS
        counts[counted] = counts.get(counted, 0) + 1
        if got:
            extra = ex.extra_resp_headers
            ex.extra_resp_headers = got if not extra else extra + got
        return True
    if got.__class__ is not Decision:
        return got
    return apply_rate_limit(ex, rl, got)


def apply_rate_limit(ex: RequestView, rl, decision) -> bool:
    key = (ex.route.name, rl.scope, decision.outcome)
    counts = _RL_COUNTS
    counts[key] = counts.get(key, 0) + 1
    server = ex.server
    if decision.allowed:
        if server.ratelimit_headers:
            headers = server.limiter.headers(rl, decision)  # a fresh list
            extra = ex.extra_resp_headers
            ex.extra_resp_headers = headers if not extra else extra + headers
        return True
    headers = server.limiter.headers(rl, decision)
    if not any(n == b"retry-after" for n, _ in headers):
        headers.append((b"retry-after", b"%d" % max(1, int(decision.retry_after + 0.999))))
    ex.respond(429, "rate limit exceeded", extra=headers)
    return False


# -- rewrites and header modifiers -------------------------------------------------------


def rewrite(route: Route, rw: Rewrite, path: str) -> tuple[str, str | None]:
    return replaced_path(route, path, rw.path_type, rw.replace_prefix_match, rw.replace_full_path), rw.hostname


def unsafe_modifier(mod: HeaderModifier) -> bool:
    """Whether a header modifier would write CR, LF or NUL (refused at compile time, and
    checked again before writing: gateway/syntax.py)."""
    for name, value in mod.set + mod.add:
        if not valid_field_value(name) or not valid_field_value(value):
            return True
    return False


def modify_headers(mod: HeaderModifier, headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """Set, then add, then remove (Gateway API HTTPHeaderFilter)."""
    out = headers
    if mod.set:
        names = {n.lower().encode("latin-1") for n, _ in mod.set}
        out = [(n, v) for n, v in out if n.lower() not in names]
        out += [(n.encode("latin-1"), v.encode("latin-1")) for n, v in mod.set]
    if mod.add:
        out = out + [(n.encode("latin-1"), v.encode("latin-1")) for n, v in mod.add]
    if mod.remove:
        drop = {n.encode("latin-1") for n in mod.remove}
        out = [(n, v) for n, v in out if n.lower() not in drop]
    return out


def modify_request_headers(ex: RequestView, pol: RoutePolicy, headers: list[tuple[bytes, bytes]], drop=None,
                           backend_mod=None):
    """The client's fields less those its Connection header lists (``drop``),
    then authentication's changes, then the route's modifiers, then the chosen
    backendRef's (Gateway API per-backend filters)."""
    if drop:
        headers = [h for h in headers if h[0].lower() not in drop]
    auth = pol.auth
    if auth is not None:
        # strip_headers holds the credential header (unless keepCredentials), the
        # consumer header and every forwarded-claim header: a client can never
        # claim an identity or a claim of its own. auth_headers (set by
        # apply_auth) is the consumer header and the forwarded claims, encoded.
        strip = auth.strip_headers
        headers = [h for h in headers if h[0].lower() not in strip]
        headers += ex.auth_headers
    if pol.request_headers is not None:
        headers = modify_headers(pol.request_headers, headers)
    if backend_mod is not None:
        headers = modify_headers(backend_mod, headers)
    return headers



# -- mirroring ---------------------------------------------------------------------------

_MIRROR_SKIP = frozenset((b"host", b"content-length", b"transfer-encoding", b"connection", b"keep-alive",
                          b"expect", b"te", b"trailer", b"upgrade", b"proxy-connection"))


def mirror(ex: RequestView) -> None:
    """Copy a finished request to the mirror backend: fire and forget.

    Runs after the client's response is complete, so it can never delay or alter
    it. Requests whose body was too large to keep (see exchange.REPLAY_LIMIT) are not
    mirrored. Failures are counted as upstream errors of the route, reason
    ``mirror``.
    """
    import asyncio
    import random

    m = ex.route.policy.mirror
    if m is None or ex.replay is None or not ex.req_done or random.random() * 100.0 >= m.percent:
        return
    table = ex.table
    eset = table.endpoints.get(m.backend.key) if table is not None else None
    if eset is None or not eset.endpoints:
        return
    ep = eset.endpoints[random.randrange(len(eset.endpoints))]
    target = ex.path + ("?" + ex.query if ex.query else "")  # the query as forwarded: credentials removed
    auth = ex.route.policy.auth
    # Like the upstream, the mirror never sees the client's credentials (unless
    # keepCredentials) nor a consumer or claim header the client made up.
    skip = _MIRROR_SKIP if auth is None else _MIRROR_SKIP.union(auth.strip_headers)
    headers = [(n, v) for n, v in ex.headers if n.lower() not in skip]
    headers += ex.auth_headers
    body = b"".join(ex.replay)
    head = [ex.method.encode(), b" ", target.encode(), b" HTTP/1.1\r\nhost: ", ex.host, b"\r\n"]
    for n, v in headers:
        head += (n, b": ", v, b"\r\n")
    head.append(b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body))
    data = b"".join(head) + body
    stats, route = ex.server.stats, ex.route.name

    async def send() -> None:
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(ep.host, ep.port), 2.0)
            writer.write(data)
            await asyncio.wait_for(reader.read(65536), 5.0)  # read the status line and drop the rest
            writer.close()
        except (OSError, asyncio.TimeoutError):
            stats.upstream_error(route, "mirror")

    asyncio.ensure_future(send())
