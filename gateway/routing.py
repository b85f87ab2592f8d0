"""The routing table: immutable routes, precompiled for matching.

Ground floor of the data plane: this module imports nothing of ours. The
controller's compiler (controller/compile.py) builds a RouteTable; the proxy
(gateway/http.py) reads ``table = server.table`` once per request and calls
``table.match``. A table is never mutated after it is built, so a reference swap
publishes it and requests in flight finish on the table they started with.

Lookup is a hash by host (exact, then wildcard suffixes longest first, then the
any-host group), then per host group a hash by exact path, then the request
path's element prefixes from longest to shortest, then the group's regexes.
Its cost follows the depth of the request path, not the number of routes.

Endpoints live beside the routes (``RouteTable.endpoints``) so that endpoint
churn makes a new table with ``with_endpoints`` without recompiling any route.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Mapping
from urllib.parse import parse_qsl

PATH_EXACT = "Exact"
PATH_PREFIX = "Prefix"
PATH_REGEX = "RegularExpression"

# EndpointSet.state values and the status each one answers with.
ENDPOINTS_OK = "Ready"
ENDPOINTS_NONE_READY = "NoReadyEndpoints"  # 503
ENDPOINTS_NOT_FOUND = "BackendNotFound"  # 500


@dataclass(frozen=True, slots=True)
class StringMatch:
    """A header or query-parameter match: exact value, or a full-match regex."""

    name: str  # header names are lower-case; query names as written
    value: str
    regex: re.Pattern[str] | None = None

    def matches(self, actual: str | None) -> bool:
        if actual is None:
            return False
        if self.regex is not None:
            return self.regex.fullmatch(actual) is not None
        return actual == self.value


@dataclass(frozen=True, slots=True)
class Endpoint:
    host: str
    port: int
    tls: bool = False  # https upstream (url backends with https://)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class EndpointSet:
    """The ready addresses of one backend (a Service port, or a URL)."""

    key: str  # "ns/name:port" for a Service port, the URL for a url backend
    endpoints: tuple[Endpoint, ...] = ()
    state: str = ENDPOINTS_OK
    host_header: str | None = None  # url backends send their own Host unless told otherwise


@dataclass(frozen=True, slots=True)
class BackendRef:
    key: str  # key into RouteTable.endpoints
    weight: int = 1


# -- per-route policies (plain settings; the proxy applies them) ---------------


@dataclass(frozen=True, slots=True)
class Rewrite:
    """Gateway API URLRewrite: ReplacePrefixMatch / ReplaceFullPath and hostname."""

    path_type: str | None = None  # "ReplacePrefixMatch" | "ReplaceFullPath" | None
    replace_prefix_match: str | None = None
    replace_full_path: str | None = None
    hostname: str | None = None


@dataclass(frozen=True, slots=True)
class HeaderModifier:
    """Applied in this order: set, add, remove. Names in ``remove`` are lower-case."""

    set: tuple[tuple[str, str], ...] = ()
    add: tuple[tuple[str, str], ...] = ()
    remove: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Redirect:
    scheme: str | None = None
    hostname: str | None = None
    port: int | None = None
    path_type: str | None = None  # "ReplacePrefixMatch" | "ReplaceFullPath" | None
    replace_prefix_match: str | None = None
    replace_full_path: str | None = None
    status_code: int = 302


@dataclass(frozen=True, slots=True)
class Timeouts:
    request: float | None = 30.0  # whole request, seconds; None = no limit
    backend_request: float | None = None  # one upstream try; None = request's
    connect: float = 5.0


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = 1  # total tries, 1 = no retry
    status_codes: frozenset[int] = frozenset({502, 503, 504})
    on_connect_failure: bool = True
    backoff: float = 0.025  # seconds, doubled per retry
    non_idempotent: bool = False


@dataclass(frozen=True, slots=True)
class CorsPolicy:
    allow_origins: tuple[str, ...] = ()  # "*" or exact origins or "https://*.example.com"
    allow_methods: tuple[str, ...] = ()
    allow_headers: tuple[str, ...] = ()
    expose_headers: tuple[str, ...] = ()
    allow_credentials: bool = False
    max_age: int | None = None


@dataclass(frozen=True, slots=True)
class RateLimitPolicy:
    requests_per_minute: int
    burst: int = 0
    key: str = "ClientAddress"  # ClientAddress | Consumer | Header | Route
    key_header: str | None = None  # lower-case header name when key == "Header"
    scope: str = "Local"  # Local | Global


@dataclass(frozen=True, slots=True)
class Mirror:
    backend: BackendRef
    percent: float = 100.0


@dataclass(frozen=True, slots=True)
class RoutePolicy:
    """Everything a route does besides matching. The empty default costs nothing."""

    auth: Any = None  # a gateway.auth authenticator, built by the compiler
    rate_limit: RateLimitPolicy | None = None
    rewrite: Rewrite | None = None
    request_headers: HeaderModifier | None = None
    response_headers: HeaderModifier | None = None
    redirect: Redirect | None = None
    timeouts: Timeouts = Timeouts()
    retries: RetryPolicy = RetryPolicy()
    cors: CorsPolicy | None = None
    max_body_bytes: int | None = None  # None: the gateway's --max-body-bytes
    load_balancer: str = "RoundRobin"  # RoundRobin | LeastRequest
    mirror: Mirror | None = None
    https_redirect: bool = False


NO_POLICY = RoutePolicy()


@dataclass(frozen=True, slots=True, eq=False)
class Route:
    """One compiled route: an APIEndpoint, or one path of an Ingress rule."""

    name: str  # "namespace/name" of the owning object: the metrics label
    kind: str  # "APIEndpoint" | "Ingress"
    path: str
    path_type: str = PATH_PREFIX
    hosts: tuple[str, ...] = ()  # () = any host; "*.suffix" wildcards
    methods: frozenset[str] | None = None  # None = any method
    headers: tuple[StringMatch, ...] = ()
    query: tuple[StringMatch, ...] = ()
    backends: tuple[BackendRef, ...] = ()
    policy: RoutePolicy = NO_POLICY
    created: str = ""  # creationTimestamp, RFC 3339; older wins ties
    # Ingress host wildcards cover exactly one label; APIEndpoint ones one or more.
    wildcard_single_label: bool = False
    regex: re.Pattern[str] | None = field(default=None, compare=False)
    rule: str = ""  # which part of the object, e.g. "rules[0].paths[1]"
    # True when the route has no policy beyond defaults: the proxy's fastest path.
    plain: bool = field(default=False, init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "plain", self.policy is NO_POLICY or self.policy == NO_POLICY)

    @property
    def prefix_key(self) -> str:
        """The prefix as stored in the table: no trailing slash, root is ''."""
        return self.path.rstrip("/")

    def precedence(self) -> tuple:
        """Tie-breakers after host and path (Gateway API order)."""
        return (
            0 if self.methods else 1,
            -len(self.headers),
            -len(self.query),
            self.created,
            self.name,
            self.rule,
        )


# -- matching ------------------------------------------------------------------


class MatchResult:
    """``route`` is set on a match; otherwise ``status`` is 404 or 405 (``allow``)."""

    __slots__ = ("route", "status", "allow")

    def __init__(self, route: Route | None, status: int = 200, allow: tuple[str, ...] = ()):
        self.route = route
        self.status = status
        self.allow = allow


NOT_FOUND = MatchResult(None, 404)
# Memoised match answers per table (see RouteTable.match).
MEMO_LIMIT = 8192


class _HostGroup:
    """The routes of one host key, indexed by path."""

    __slots__ = ("exact", "prefix", "regex", "max_depth")

    def __init__(self, routes: list[Route]):
        exact: dict[str, list[Route]] = {}
        prefix: dict[str, list[Route]] = {}
        regex: list[Route] = []
        for r in routes:
            if r.path_type == PATH_EXACT:
                exact.setdefault(r.path, []).append(r)
            elif r.path_type == PATH_REGEX:
                regex.append(r)
            else:
                prefix.setdefault(r.prefix_key, []).append(r)
        key = Route.precedence
        self.exact = {p: tuple(sorted(rs, key=key)) for p, rs in exact.items()}
        self.prefix = {p: tuple(sorted(rs, key=key)) for p, rs in prefix.items()}
        self.regex = tuple(sorted(regex, key=key))
        # No prefix is deeper than this many elements, so longer request paths
        # start their walk here instead of at their own length.
        self.max_depth = max((p.count("/") for p in self.prefix), default=0)

    def all_routes(self) -> list[Route]:
        out: list[Route] = []
        for p in sorted(self.exact, key=lambda s: (-len(s), s)):
            out.extend(self.exact[p])
        for p in sorted(self.prefix, key=lambda s: (-len(s), s)):
            out.extend(self.prefix[p])
        out.extend(self.regex)
        return out


def _parse_query(query: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in parse_qsl(query, keep_blank_values=True):
        out.setdefault(k, v)  # the first occurrence wins, as in Gateway API
    return out


class _Probe:
    """Per-request matching state: lazily parsed query, methods seen for 405."""

    __slots__ = ("method", "headers", "raw_query", "_query", "allow", "host_labels", "conditional")

    def __init__(self, method: str, headers: Mapping[str, str], raw_query: str, host_labels: int):
        self.method = method
        self.headers = headers
        self.raw_query = raw_query
        self._query: dict[str, str] | None = None
        self.allow: set[str] | None = None
        self.host_labels = host_labels
        self.conditional = False  # a candidate looked at headers or query: the answer is not cacheable

    def query(self) -> dict[str, str]:
        if self._query is None:
            self._query = _parse_query(self.raw_query)
        return self._query

    def first(self, candidates: tuple[Route, ...]) -> Route | None:
        for r in candidates:
            if r.wildcard_single_label and self.host_labels != 1:
                continue
            if r.headers:
                self.conditional = True
                hs = self.headers
                if not all(m.matches(hs.get(m.name)) for m in r.headers):
                    continue
            if r.query:
                self.conditional = True
                q = self.query()
                if not all(m.matches(q.get(m.name)) for m in r.query):
                    continue
            if r.methods is not None and self.method not in r.methods:
                if self.allow is None:
                    self.allow = set()
                self.allow.update(r.methods)
                continue
            return r
        return None


def _group_match(group: _HostGroup, path: str, probe: _Probe) -> Route | None:
    if group.exact:
        cands = group.exact.get(path)
        if cands is not None:
            r = probe.first(cands)
            if r is not None:
                return r
    prefix = group.prefix
    if prefix:
        key = path.rstrip("/")
        depth = key.count("/")
        # Element-wise prefixes: "/a/b/c" tries "/a/b/c", "/a/b", "/a", "".
        while depth > group.max_depth:
            key = key[: key.rfind("/")]
            depth -= 1
        while True:
            cands = prefix.get(key)
            if cands is not None:
                r = probe.first(cands)
                if r is not None:
                    return r
            if not key:
                break
            key = key[: key.rfind("/")]
    for r in group.regex:
        if r.regex is not None and r.regex.fullmatch(path) is not None:
            got = probe.first((r,))
            if got is not None:
                return got
    return None


def normalize_host(host: str) -> str:
    """Lower-case, without port and trailing dot; IPv6 literals keep brackets."""
    host = host.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        return host[: end + 1] if end != -1 else host
    colon = host.rfind(":")
    if colon != -1:
        host = host[:colon]
    return host.rstrip(".")


class RouteTable:
    """An immutable, precompiled set of routes plus the endpoints they use."""

    __slots__ = ("generation", "routes", "endpoints", "fallback", "_exact", "_wild", "_any", "_wild_lens", "_memo")

    def __init__(
        self,
        routes: tuple[Route, ...] | list[Route] = (),
        endpoints: Mapping[str, EndpointSet] | None = None,
        fallback: Route | None = None,
        generation: int = 0,
    ):
        self.generation = generation
        self.endpoints: Mapping[str, EndpointSet] = dict(endpoints or {})
        self.fallback = fallback  # an Ingress defaultBackend: used when nothing matches
        exact: dict[str, list[Route]] = {}
        wild: dict[str, list[Route]] = {}
        anyhost: list[Route] = []
        for r in routes:
            if not r.hosts:
                anyhost.append(r)
            for h in r.hosts:
                h = h.lower()
                if h.startswith("*."):
                    wild.setdefault(h[1:], []).append(r)  # key ".example.com"
                else:
                    exact.setdefault(h, []).append(r)
        self._exact = {h: _HostGroup(rs) for h, rs in exact.items()}
        self._wild = {s: _HostGroup(rs) for s, rs in wild.items()}
        self._wild_lens = sorted({s.count(".") for s in wild}, reverse=True)
        self._any = _HostGroup(anyhost) if anyhost else None
        self._memo: dict[tuple[str, str, str], MatchResult] = {}
        ordered: list[Route] = []
        seen: set[int] = set()
        for g in self._groups_in_order():
            for r in g.all_routes():
                if id(r) not in seen:
                    seen.add(id(r))
                    ordered.append(r)
        self.routes: tuple[Route, ...] = tuple(ordered)

    def _groups_in_order(self) -> list[_HostGroup]:
        groups = [self._exact[h] for h in sorted(self._exact)]
        groups += [self._wild[s] for s in sorted(self._wild, key=lambda s: (-len(s), s))]
        if self._any is not None:
            groups.append(self._any)
        return groups

    def with_endpoints(self, endpoints: Mapping[str, EndpointSet], generation: int) -> "RouteTable":
        """Same routes, new endpoints: the cheap update for endpoint churn."""
        t = object.__new__(RouteTable)
        t.generation = generation
        t.endpoints = dict(endpoints)
        t.fallback = self.fallback
        t._exact, t._wild, t._any, t._wild_lens = self._exact, self._wild, self._any, self._wild_lens
        t._memo = self._memo  # same routes, same answers
        t.routes = self.routes
        return t

    def __len__(self) -> int:
        return len(self.routes)

    def match(
        self,
        method: str,
        host: str,
        path: str,
        headers: Mapping[str, str] | None = None,
        query: str = "",
    ) -> MatchResult:
        """Find the route for a request whose path is already normalised.

        ``host`` may carry a port; ``headers`` maps lower-case names to values.
        Answers that depended only on method, host and path are memoised (the
        table never changes); the memo is bounded and starts over when full.
        """
        key = (method, host, path)
        hit = self._memo.get(key)
        if hit is not None:
            return hit
        result, cacheable = self._match(method, host, path, headers, query)
        if cacheable:
            memo = self._memo
            if len(memo) >= MEMO_LIMIT:
                memo.clear()
            memo[key] = result
        return result

    def _match(self, method, host, path, headers, query) -> tuple[MatchResult, bool]:
        host = normalize_host(host) if host else ""
        probe = _Probe(method, headers if headers is not None else {}, query, 0)
        g = self._exact.get(host) if self._exact else None
        if g is not None:
            r = _group_match(g, path, probe)
            if r is not None:
                return MatchResult(r), not probe.conditional
        if self._wild and host:
            labels = host.split(".")
            n = len(labels)
            for suffix_labels in self._wild_lens:
                if suffix_labels >= n:
                    continue
                suffix = "." + ".".join(labels[n - suffix_labels :])
                g = self._wild.get(suffix)
                if g is None:
                    continue
                probe.host_labels = n - suffix_labels
                r = _group_match(g, path, probe)
                if r is not None:
                    return MatchResult(r), not probe.conditional
        if self._any is not None:
            probe.host_labels = 0
            r = _group_match(self._any, path, probe)
            if r is not None:
                return MatchResult(r), not probe.conditional
        if probe.allow:
            return MatchResult(None, 405, tuple(sorted(probe.allow))), not probe.conditional
        if self.fallback is not None:
            return MatchResult(self.fallback), not probe.conditional
        return NOT_FOUND, not probe.conditional
