"""The routing table: immutable routes, precompiled for matching.

Ground floor of the data plane: this module imports nothing of ours. The
controller's compiler (controller/compile/) builds a RouteTable; the proxy
(gateway/exchange.py) reads ``table = server.table`` once per request and calls
``table.match``. A table is never mutated after it is built, so a reference swap
publishes it and requests in flight finish on the table they started with.

Lookup is a hash by host (exact, then wildcard suffixes longest first, then the
any-host group), then per host group a hash by exact path, then the request
path's element prefixes from longest to shortest, then the group's regexes.
Its cost follows the depth of the request path, not the number of routes.

Endpoints live beside the routes (``RouteTable.endpoints``) so that endpoint
churn makes a new table with ``with_endpoints`` without recompiling any route.
A table that differs from the previous one by a few routes is made with
``updated``: it rebuilds the host groups and path buckets those routes touch
and shares all the others, so its cost follows the change, not the table.

When the package is built, Cython compiles this module with the types in
routing.pxd (setup.py): the classes declared there become extension types the
proxy reads as structs. They are still frozen dataclasses, without
``slots=True`` (Cython's dataclass has no such option; its instances have no
``__dict__`` anyway), and their pxd fields follow the dataclass field order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping
from urllib.parse import parse_qsl

from gateway.regex import Regex
from gateway.routepolicy import CorsPolicy, HeaderModifier, Redirect, Rewrite  # re-exported: part of a table

PATH_EXACT = "Exact"
PATH_PREFIX = "Prefix"
PATH_REGEX = "RegularExpression"

# _PICKLING: the classes routing.pxd declares are rebuilt through their
# constructor when unpickled (``__reduce__``): compiled by Cython they get no
# pickling of their own (setup.py turns auto_pickle off), and a table travels
# pickled to the --workers proxy processes (gateway/tablewire.py). Derived
# fields (``plain``, ``answers_early``) are computed again by __post_init__.

# Gateway API: a request no HTTPRoute matches is 404, even when only its method
# differs; the methods of these routes never make a 405.
KIND_HTTPROUTE = "HTTPRoute"

# EndpointSet.state values and the status each one answers with.
ENDPOINTS_OK = "Ready"
ENDPOINTS_NONE_READY = "NoReadyEndpoints"  # 503
ENDPOINTS_NOT_FOUND = "BackendNotFound"  # 500


@dataclass(frozen=True, slots=True)
class StringMatch:
    """A header or query-parameter match: exact value, or a full-match regex."""

    name: str  # header names are lower-case; query names as written
    value: str
    regex: Regex | None = None

    def matches(self, actual: str | None) -> bool:
        if actual is None:
            return False
        if self.regex is not None:
            return self.regex.fullmatch(actual)
        return actual == self.value


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int
    tls: bool = False  # https upstream (url backends with https://)
    # Speak HTTP/2: with prior knowledge in cleartext (h2c), by ALPN over TLS
    # (gateway/h2upstream.py). From a Service port's appProtocol or a url
    # backend's ``protocol``.
    http2: bool = False

    def __reduce__(self):  # see _PICKLING
        return (Endpoint, (self.host, self.port, self.tls, self.http2))

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class EndpointSet:
    """The ready addresses of one backend (a Service port, or a URL)."""

    key: str  # "ns/name:port" for a Service port, the URL for a url backend
    endpoints: tuple[Endpoint, ...] = ()
    state: str = ENDPOINTS_OK
    host_header: str | None = None  # url backends send their own Host unless told otherwise

    def __reduce__(self):  # see _PICKLING
        return (EndpointSet, (self.key, self.endpoints, self.state, self.host_header))


@dataclass(frozen=True)
class BackendRef:
    key: str  # key into RouteTable.endpoints
    weight: int = 1
    # Gateway API per-backendRef filters: HeaderModifiers applied after the rule's
    # when this backend is the one picked (None: nothing to do).
    request_headers: Any = None
    response_headers: Any = None

    def __reduce__(self):  # see _PICKLING
        return (BackendRef, (self.key, self.weight, self.request_headers, self.response_headers))


# -- per-route policies (plain settings; the proxy applies them) ---------------


@dataclass(frozen=True)
class Timeouts:
    request: float | None = 30.0  # whole request, seconds; None = no limit
    backend_request: float | None = None  # one upstream try; None = request's
    connect: float = 5.0

    def __reduce__(self):  # see _PICKLING
        return (Timeouts, (self.request, self.backend_request, self.connect))


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 1  # total tries, 1 = no retry
    status_codes: frozenset[int] = frozenset({502, 503, 504})
    on_connect_failure: bool = True
    backoff: float = 0.025  # seconds, doubled per retry
    non_idempotent: bool = False

    def __reduce__(self):  # see _PICKLING
        return (RetryPolicy,
                (self.attempts, self.status_codes, self.on_connect_failure, self.backoff, self.non_idempotent))


@dataclass(frozen=True)
class RateLimitPolicy:
    requests_per_minute: int
    burst: int = 0
    key: str = "ClientAddress"  # ClientAddress | Consumer | Header | Route
    key_header: str | None = None  # lower-case header name when key == "Header"
    scope: str = "Local"  # Local | Global

    def __reduce__(self):  # see _PICKLING
        return (RateLimitPolicy, (self.requests_per_minute, self.burst, self.key, self.key_header, self.scope))


@dataclass(frozen=True, slots=True)
class Mirror:
    backend: BackendRef
    percent: float = 100.0


@dataclass(frozen=True)
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
    # Whether anything may answer before auth (redirects, CORS preflight): the
    # proxy skips that step for the many routes that have none.
    answers_early: bool = field(init=False, default=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "answers_early",
                           self.https_redirect or self.redirect is not None or self.cors is not None)

    def __reduce__(self):  # see _PICKLING
        return (RoutePolicy, (self.auth, self.rate_limit, self.rewrite, self.request_headers, self.response_headers,
                              self.redirect, self.timeouts, self.retries, self.cors, self.max_body_bytes,
                              self.load_balancer, self.mirror, self.https_redirect))


NO_POLICY = RoutePolicy()


@dataclass(frozen=True, eq=False)
class Route:
    """One compiled route: an APIEndpoint, one path of an Ingress rule, or one match of an HTTPRoute rule."""

    name: str  # "namespace/name" of the owning object: the metrics label
    kind: str  # "APIEndpoint" | "Ingress" | "HTTPRoute"
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
    regex: Regex | None = field(default=None, compare=False)
    rule: str = ""  # which part of the object, e.g. "rules[0].paths[1]"
    # The route's place within its object (an HTTPRoute's rule, then match): the
    # tie-break after namespace/name, as numbers ("rules[10]" sorts before "rules[2]").
    order: int = 0
    # True when the route has no policy beyond defaults: the proxy's fastest path.
    plain: bool = field(default=False, init=False, compare=False)
    # The route's request counters (gateway.metrics.RouteCounters), cached here by the
    # metrics on the route's first request. Not part of the route: never compared,
    # copied or sent to workers; a changed route is a new Route and finds them again.
    counters: Any = field(default=None, init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "plain", self.policy is NO_POLICY or self.policy == NO_POLICY)

    def __reduce__(self):  # see _PICKLING
        return (Route, (self.name, self.kind, self.path, self.path_type, self.hosts, self.methods, self.headers,
                        self.query, self.backends, self.policy, self.created, self.wildcard_single_label, self.regex,
                        self.rule, self.order))

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
            self.order,
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
# Memoised match answers per table (see RouteTable.match). The memo starts over
# when full, so a working set of request paths larger than it never hits: clients
# spread over a 10,000-route table would miss on every request and pay the whole
# walk each time. Its bound therefore follows the table (MEMO_PER_ROUTE answers
# per route, at least MEMO_LIMIT, at most MEMO_CAP: about 200 bytes an answer).
MEMO_LIMIT = 8192
MEMO_PER_ROUTE = 2
MEMO_CAP = 1 << 17


def memo_limit(routes: int, least: int = MEMO_LIMIT) -> int:
    """How many answers a memo keyed by request may hold for a table of ``routes`` routes."""
    return min(MEMO_CAP, max(least, MEMO_PER_ROUTE * routes))


def _order(r: Route) -> tuple:
    """Sort key within a path bucket: Gateway API precedence, then the kind.

    An APIEndpoint and an Ingress of the same namespace/name tie on everything
    else; the kind (APIEndpoint first, as the compiler lists them) makes the
    order total, so a bucket built in one go and one updated route by route
    come out the same."""
    return (*r.precedence(), r.kind)


def _bucket(routes) -> tuple[Route, ...]:
    return tuple(sorted(routes, key=_order))


def _bucket_of(r: Route) -> tuple[str, str]:
    """Which of a host group's indexes holds the route, under which key."""
    if r.path_type == PATH_EXACT:
        return PATH_EXACT, r.path
    if r.path_type == PATH_REGEX:
        return PATH_REGEX, ""
    return PATH_PREFIX, r.prefix_key


class _HostGroup:
    """The routes of one host key, indexed by path. Never changed once built:
    ``updated`` makes a new group that shares every untouched path bucket."""

    __slots__ = ("exact", "prefix", "regex", "max_depth", "depths", "size")

    def __init__(self, routes=()):
        exact: dict[str, list[Route]] = {}
        prefix: dict[str, list[Route]] = {}
        regex: list[Route] = []
        for r in routes:
            index, key = _bucket_of(r)
            if index == PATH_EXACT:
                exact.setdefault(key, []).append(r)
            elif index == PATH_REGEX:
                regex.append(r)
            else:
                prefix.setdefault(key, []).append(r)
        self.exact = {p: _bucket(rs) for p, rs in exact.items()}
        self.prefix = {p: _bucket(rs) for p, rs in prefix.items()}
        self.regex = _bucket(regex)
        # How many prefixes have each depth (elements): kept so that an update
        # knows the new deepest prefix without looking at every prefix.
        depths: dict[int, int] = {}
        for p in self.prefix:
            depths[p.count("/")] = depths.get(p.count("/"), 0) + 1
        self.depths = depths
        # No prefix is deeper than this many elements, so longer request paths
        # start their walk here instead of at their own length.
        self.max_depth = max(depths, default=0)
        self.size = sum(map(len, self.exact.values())) + sum(map(len, self.prefix.values())) + len(self.regex)

    def updated(self, removed: list[Route], added: list[Route]) -> "_HostGroup | None":
        """A new group without ``removed`` (routes in this group) and with
        ``added`` (routes not in it); None when nothing is left. Only the path
        buckets they touch are rebuilt; the others are shared with this group."""
        changes: dict[tuple[str, str], tuple[set[int], list[Route]]] = {}
        for r in removed:
            changes.setdefault(_bucket_of(r), (set(), []))[0].add(id(r))
        for r in added:
            changes.setdefault(_bucket_of(r), (set(), []))[1].append(r)
        g = object.__new__(_HostGroup)
        g.exact, g.prefix, g.regex, g.depths = self.exact, self.prefix, self.regex, self.depths
        for (index, key), (gone, new) in changes.items():
            if index == PATH_REGEX:
                g.regex = _bucket([r for r in g.regex if id(r) not in gone] + new)
                continue
            if index == PATH_EXACT:
                if g.exact is self.exact:
                    g.exact = self.exact.copy()  # copy(): fast even after deletions
                table = g.exact
            else:
                if g.prefix is self.prefix:
                    g.prefix, g.depths = self.prefix.copy(), self.depths.copy()
                table = g.prefix
            had = key in table
            bucket = _bucket([r for r in table.get(key, ()) if id(r) not in gone] + new)
            if bucket:
                table[key] = bucket
            else:
                table.pop(key, None)
            if index == PATH_PREFIX and had != bool(bucket):
                depth = key.count("/")
                count = g.depths.get(depth, 0) + (1 if bucket else -1)
                if count:
                    g.depths[depth] = count
                else:
                    del g.depths[depth]
        g.max_depth = max(g.depths, default=0)
        g.size = self.size - len(removed) + len(added)
        return g if g.size else None

    def all_routes(self) -> list[Route]:
        out: list[Route] = []
        for p in sorted(self.exact, key=lambda s: (-len(s), s)):
            out.extend(self.exact[p])
        for p in sorted(self.prefix, key=lambda s: (-len(s), s)):
            out.extend(self.prefix[p])
        out.extend(self.regex)
        return out


_EMPTY_GROUP = _HostGroup()


def _group_changes(old: _HostGroup | None, new: _HostGroup | None,
                   removed: dict[int, Route], added: dict[int, Route]) -> None:
    """``RouteTable.route_changes`` for one host key: the buckets that differ, route by route."""
    if old is new:
        return
    old = old or _EMPTY_GROUP
    new = new or _EMPTY_GROUP
    for a, b in ((old.exact, new.exact), (old.prefix, new.prefix)):
        if a is not b:
            for key in a.keys() | b.keys():
                _bucket_changes(a.get(key, ()), b.get(key, ()), removed, added)
    _bucket_changes(old.regex, new.regex, removed, added)


def _bucket_changes(old: tuple[Route, ...], new: tuple[Route, ...],
                    removed: dict[int, Route], added: dict[int, Route]) -> None:
    if old is new:
        return
    before = {id(r) for r in old}
    after = {id(r) for r in new}
    for r in old:
        if id(r) not in after:
            removed[id(r)] = r
    for r in new:
        if id(r) not in before:
            added[id(r)] = r


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
                if r.kind != KIND_HTTPROUTE:
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
        if r.regex is not None and r.regex.fullmatch(path):
            got = probe.first((r,))
            if got is not None:
                return got
    return None



# -- explaining a match (crdgate explain, the admin /explain) ----------------------
# The proxy never calls these. They walk the same host groups and path buckets
# in the same order as ``RouteTable._match`` / ``_group_match`` / ``_Probe.first``
# and record, for every route they reach, why it was taken or passed over.
# tests/test_explain_agreement.py checks that the route they pick is always the
# one ``match`` picks.


@dataclass(frozen=True, slots=True)
class Considered:
    """One route reached by the walk. ``rejected`` is None when it would take the
    request, else the first check it failed: "wildcard" (an Ingress wildcard covers
    one label), "headers", "query" or "method"; ``detail`` says which value."""

    route: Route
    host_match: str  # "exact" | "wildcard" | "any"
    host_key: str  # the host, "*.suffix", or "" for any host
    rejected: str | None
    detail: str = ""


def _verdict(r: Route, probe: _Probe) -> tuple[str | None, str]:
    """``_Probe.first``'s checks for one route, in its order, with the reason."""
    if r.wildcard_single_label and probe.host_labels != 1:
        return "wildcard", f"an Ingress wildcard covers exactly one label, the host has {probe.host_labels} before it"
    for m in r.headers:
        actual = probe.headers.get(m.name)
        if not m.matches(actual):
            return "headers", _mismatch("header", m, actual)
    if r.query:
        q = probe.query()
        for m in r.query:
            if not m.matches(q.get(m.name)):
                return "query", _mismatch("query parameter", m, q.get(m.name))
    if r.methods is not None and probe.method not in r.methods:
        if probe.allow is None:
            probe.allow = set()
        probe.allow.update(r.methods)
        return "method", f"method {probe.method} is not in [{', '.join(sorted(r.methods))}]"
    return None, ""


def _mismatch(what: str, m: StringMatch, actual: str | None) -> str:
    want = f"~ {m.value}" if m.regex is not None else f"= {m.value}"
    if actual is None:
        return f"{what} {m.name} {want} is not sent"
    return f"{what} {m.name} {want} does not match {actual!r}"


def _group_candidates(group: _HostGroup, path: str):
    """The group's routes whose path matches, in ``_group_match``'s order."""
    for r in group.exact.get(path, ()):
        yield r
    key = path.rstrip("/")
    while True:
        for r in group.prefix.get(key, ()):
            yield r
        if not key:
            break
        key = key[: key.rfind("/")]
    for r in group.regex:
        if r.regex is not None and r.regex.fullmatch(path):
            yield r


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


_EXACT, _WILD, _ANY = "exact", "wild", "any"


def _host_keys(r: Route):
    """Where a route is filed: ("exact", host), ("wild", ".suffix") or ("any", "")."""
    if not r.hosts:
        yield _ANY, ""
        return
    for h in dict.fromkeys(h.lower() for h in r.hosts):  # a host listed twice is filed once
        if h.startswith("*."):
            yield _WILD, h[1:]  # key ".example.com"
        else:
            yield _EXACT, h


def _label_counts(wild: Mapping[str, object]) -> dict[int, int]:
    labels: dict[int, int] = {}
    for s in wild:
        labels[s.count(".")] = labels.get(s.count("."), 0) + 1
    return labels


class RouteTable:
    """An immutable, precompiled set of routes plus the endpoints they use.

    Built whole (``RouteTable(routes, ...)``), or from a previous table with
    ``updated`` (some routes out, some in: only the host groups and path
    buckets they touch are rebuilt, every other one is shared) or
    ``with_endpoints`` (same routes). Either way the new table is complete
    before anyone sees it, and the previous one is never changed.
    """

    __slots__ = (
        "generation", "endpoints", "fallback", "_exact", "_wild", "_any", "_wild_lens", "_wild_labels",
        "_memo", "_memo_limit", "_count", "_order", "_change", "request_memo",
    )  # fmt: skip

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
        routes = list({id(r): r for r in routes}.values())
        filed: dict[tuple[str, str], list[Route]] = {}
        for r in routes:
            for where in _host_keys(r):
                filed.setdefault(where, []).append(r)
        groups = {where: _HostGroup(rs) for where, rs in filed.items()}
        self._exact = {h: g for (kind, h), g in groups.items() if kind == _EXACT}
        self._wild = {s: g for (kind, s), g in groups.items() if kind == _WILD}
        self._any = groups.get((_ANY, ""))
        self._set_wild_labels(_label_counts(self._wild))
        self._memo: dict[tuple[str, str, str], MatchResult] = {}
        # The proxy's own memo for this table, keyed by the request as it came (see
        # gateway/exchange.py): the table never reads it. Like ``_memo`` it starts
        # empty when the routes change and is shared when only endpoints do.
        self.request_memo: dict = {}
        self._count = len(routes)
        self._memo_limit = memo_limit(self._count)
        self._order: list = [None]  # see ``routes``
        # (the ``_order`` box of the table this one was made from, routes removed, routes added):
        # what ``route_changes`` answers without a walk. None for a table built whole.
        self._change: tuple | None = None

    def _set_wild_labels(self, labels: dict[int, int]) -> None:
        # Wildcard suffixes by label count, to try the longest first.
        self._wild_labels = labels
        self._wild_lens = sorted(labels, reverse=True)

    @property
    def routes(self) -> tuple[Route, ...]:
        """Every route once, in match order (host group, then path, then precedence).

        Computed on first use (the admin ``/routes`` view, ``crdgate routes``):
        routing never needs it, and sorting every route on each update would
        make an update cost as much as a full build. Tables with the same routes
        share it."""
        box = self._order
        if box[0] is None:
            ordered: dict[int, Route] = {}
            for g in self._groups_in_order():
                for r in g.all_routes():
                    ordered.setdefault(id(r), r)
            box[0] = tuple(ordered.values())
        return box[0]

    def _groups_in_order(self) -> list[_HostGroup]:
        groups = [self._exact[h] for h in sorted(self._exact)]
        groups += [self._wild[s] for s in sorted(self._wild, key=lambda s: (-len(s), s))]
        if self._any is not None:
            groups.append(self._any)
        return groups

    def updated(
        self,
        removed: list[Route],
        added: list[Route],
        *,
        endpoints: Mapping[str, EndpointSet],
        fallback: Route | None,
        generation: int,
    ) -> "RouteTable":
        """A new table without ``removed`` (routes of this table) and with ``added``
        (routes not in it), with these endpoints and fallback. ``endpoints`` is
        kept as given when it is a dict (copied into one otherwise): the caller
        must not change it afterwards."""
        t = RouteTable.__new__(RouteTable)
        t.generation = generation
        t.endpoints = endpoints if type(endpoints) is dict else dict(endpoints)
        t.fallback = fallback
        t._exact, t._wild, t._any = self._exact, self._wild, self._any
        t._wild_labels, t._wild_lens = self._wild_labels, self._wild_lens
        t._count = self._count - len(removed) + len(added)
        t._memo_limit = memo_limit(t._count)
        if not removed and not added and fallback is self.fallback:
            t._memo = self._memo  # same routes, same answers
            t.request_memo = self.request_memo
            t._order = self._order
            t._change = None  # same host groups: route_changes sees that at once
            return t
        t._memo = {}
        t.request_memo = {}
        t._order = [None]
        # Tables share an ``_order`` box exactly when they have the same routes (see
        # above), so it names "the routes of ``self``" without keeping ``self`` alive.
        t._change = (self._order, tuple(removed), tuple(added))
        changes: dict[tuple[str, str], tuple[list[Route], list[Route]]] = {}
        for r in removed:
            for where in _host_keys(r):
                changes.setdefault(where, ([], []))[0].append(r)
        for r in added:
            for where in _host_keys(r):
                changes.setdefault(where, ([], []))[1].append(r)
        for (kind, host), (gone, new) in changes.items():
            if kind == _ANY:
                t._any = (t._any or _EMPTY_GROUP).updated(gone, new)
                continue
            if kind == _EXACT:
                if t._exact is self._exact:
                    t._exact = self._exact.copy()
                groups = t._exact
            else:
                if t._wild is self._wild:
                    t._wild = self._wild.copy()
                groups = t._wild
            group = groups.get(host, _EMPTY_GROUP).updated(gone, new)
            if group is None:
                groups.pop(host, None)
            else:
                groups[host] = group
        if t._wild is not self._wild:
            t._set_wild_labels(self._wild_labels_after(t._wild, [h for kind, h in changes if kind == _WILD]))
        return t

    def _wild_labels_after(self, wild: dict[str, _HostGroup], touched: list[str]) -> dict[int, int]:
        """The wildcard label histogram once the ``touched`` suffixes changed to ``wild``."""
        labels = dict(self._wild_labels)
        for s in touched:
            n = s.count(".")
            labels[n] = labels.get(n, 0) + (s in wild) - (s in self._wild)
            if not labels[n]:
                del labels[n]
        return labels

    def route_changes(self, previous: "RouteTable") -> tuple[list[Route], list[Route]]:
        """The routes of ``previous`` that this table lacks, and this table's routes
        that ``previous`` lacks (by identity): what ``previous.updated`` needs to
        make a table with this one's routes (crdgate/workers.py sends only that to
        its proxy workers). A table made by ``previous.updated`` remembers what it
        was given; otherwise the host groups and path buckets the two tables share
        are skipped without a look, and two unrelated tables cost every route."""
        change = self._change
        if change is not None and change[0] is previous._order:  # made from previous (or one with its routes)
            return list(change[1]), list(change[2])
        removed: dict[int, Route] = {}
        added: dict[int, Route] = {}
        for old, new in ((previous._exact, self._exact), (previous._wild, self._wild)):
            if old is not new:
                for key in old.keys() | new.keys():
                    _group_changes(old.get(key), new.get(key), removed, added)
        _group_changes(previous._any, self._any, removed, added)
        return list(removed.values()), list(added.values())

    def with_endpoints(self, endpoints: Mapping[str, EndpointSet], generation: int) -> "RouteTable":
        """Same routes, new endpoints: the cheap update for endpoint churn."""
        return self.updated([], [], endpoints=dict(endpoints), fallback=self.fallback, generation=generation)

    def __len__(self) -> int:
        return self._count

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
        table never changes); the memo is bounded (``memo_limit``) and starts
        over when full.
        """
        return self.lookup(method, host, path, headers, query)[0]

    def lookup(
        self,
        method: str,
        host: str,
        path: str,
        headers: Mapping[str, str] | None = None,
        query: str = "",
    ) -> tuple[MatchResult, bool]:
        """``match``, and whether its answer depended only on method, host and
        path (no header or query match was looked at): a caller may then keep it
        for the same request, as ``request_memo`` does."""
        key = (method, host, path)
        hit = self._memo.get(key)
        if hit is not None:
            return hit, True
        result, cacheable = self._match(method, host, path, headers, query)
        if cacheable:
            memo = self._memo
            if len(memo) >= self._memo_limit:
                memo.clear()
            memo[key] = result
        return result, cacheable

    def trace(
        self,
        method: str,
        host: str,
        path: str,
        headers: Mapping[str, str] | None = None,
        query: str = "",
    ) -> tuple[MatchResult, list[Considered]]:
        """What ``match`` answers, and every route it reaches on the way, in order.

        Not for the request path (no memo, visits every candidate): for
        ``crdgate explain`` and the admin ``/explain``. A route filed under
        several host keys is listed where the walk first reaches it."""
        host = normalize_host(host) if host else ""
        probe = _Probe(method, headers if headers is not None else {}, query, 0)
        groups: list[tuple[str, str, _HostGroup, int]] = []
        g = self._exact.get(host) if self._exact else None
        if g is not None:
            groups.append((_EXACT, host, g, 0))
        if self._wild and host:
            labels = host.split(".")
            n = len(labels)
            for suffix_labels in self._wild_lens:
                if suffix_labels >= n:
                    continue
                suffix = "." + ".".join(labels[n - suffix_labels :])
                g = self._wild.get(suffix)
                if g is not None:
                    groups.append((_WILD, "*" + suffix, g, n - suffix_labels))
        if self._any is not None:
            groups.append((_ANY, "", self._any, 0))
        seen: dict[int, str | None] = {}
        steps: list[Considered] = []
        winner: Route | None = None
        for kind, key, group, host_labels in groups:
            probe.host_labels = host_labels
            for r in _group_candidates(group, path):
                if winner is not None:
                    # Past the winner: whether it would take the request, without
                    # letting its methods into a 405's Allow (match stops earlier).
                    allow = probe.allow
                    rejected, detail = _verdict(r, probe)
                    probe.allow = allow
                else:
                    rejected, detail = _verdict(r, probe)
                    if rejected is None:
                        winner = r
                if id(r) in seen and seen[id(r)] == rejected:
                    continue  # filed under several host keys: listed once per verdict
                seen[id(r)] = rejected
                steps.append(Considered(r, "wildcard" if kind == _WILD else kind, key, rejected, detail))
        if winner is not None:
            return MatchResult(winner), steps
        if probe.allow:
            return MatchResult(None, 405, tuple(sorted(probe.allow))), steps
        if self.fallback is not None:
            return MatchResult(self.fallback), steps
        return NOT_FOUND, steps

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
