"""A conformance-style corpus for crdgate's HTTPRoute compile: manifests, requests, expectations.

``manifests/`` is one folder of objects (load it whole, e.g. ``controller.files.load_manifests``):
namespaces gw-infra / gw-app / gw-web, crdgate's GatewayClass and another controller's, the
Gateways in gw-infra (``00-base.yaml`` says what each is for), backend Services with one ready
endpoint each, and the HTTPRoutes, one file per subject. Written for crdgate after the shape of
Gateway API's conformance suite; the upstream files are not copied here.

``CASES``: requests and what must come back. A request names the Gateway and port it is sent to
(crdgate maps listeners onto its own ports; every route also has a host name of its own, so
the cases hold whether Gateways share one table or not). ``Expect.backend`` is the Service
("namespace/name") that answers; ``path``/``host``/``headers`` what that backend sees;
``location`` a redirect's Location; ``split`` the shares of several backends (``ERROR_500``: the
share answered 500), for a runner that sends many requests. ``Request.backend_delay`` and
``backend_response_headers`` tell the runner's echo backend how to answer.

``ROUTE_STATUS`` / ``NO_STATUS`` / ``GATEWAY_STATUS`` / ``GATEWAYCLASS_STATUS``: the status
conditions crdgate must write. ``note`` marks where the specification leaves the choice to the
implementation and says crdgate's.

``INVALID``: files in ``invalid/`` that the API server would refuse, with the field the error
must name (tests/test_gatewayapi_models.py loads them through the manifests folder).

Run against the compiler: load ``MANIFESTS``, compile, then for each case match
``case.request`` on the table of ``case.request.gateway``/``port`` and compare with
``case.expect`` (status, backend, rewritten path and host, headers, Location, split).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).parent
MANIFESTS = HERE / "manifests"
INVALID_DIR = HERE / "invalid"

ERROR_500 = "500"  # in Expect.split: the share of requests answered 500 (an invalid backend's)

SAME_NS = "gw-infra/same-ns"
ALL_NS = "gw-infra/all-ns"
SELECTED_NS = "gw-infra/selected-ns"
HOSTNAMES = "gw-infra/hostnames"
MULTI = "gw-infra/multi"
BROKEN = "gw-infra/broken-listeners"
NOT_OURS = "gw-infra/not-ours"

V1, V2, V3, V4 = (f"gw-infra/backend-v{i}" for i in range(1, 5))
APP = "gw-app/app-backend"
WEB = "gw-web/web-backend"

Headers = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Request:
    host: str
    path: str  # with the query, if any
    method: str = "GET"
    headers: Headers = ()
    gateway: str = SAME_NS  # "namespace/name" of the Gateway the request is sent to
    port: int = 80  # the listener's port
    backend_delay: float = 0.0  # seconds the backend waits before it answers
    backend_response_headers: Headers = ()  # headers the backend answers with


@dataclass(frozen=True)
class Expect:
    status: int = 200
    backend: str | None = None  # the Service that answers; None: the gateway answers itself
    path: str | None = None  # path (and query) the backend sees; None: the request's
    host: str | None = None  # Host the backend sees; None: the request's
    headers: Headers = ()  # headers the backend sees; a repeated field as one, values joined by ","
    absent_headers: tuple[str, ...] = ()
    response_headers: Headers = ()  # headers the client gets
    absent_response_headers: tuple[str, ...] = ()
    location: str | None = None  # a redirect's Location
    split: tuple[tuple[str, float], ...] = ()  # (backend or ERROR_500, share of requests)
    mirrored_to: str | None = None  # the Service that gets a copy of the request


@dataclass(frozen=True)
class Case:
    name: str
    request: Request
    expect: Expect
    note: str = ""


def to(backend: str, **kw) -> Expect:
    return Expect(200, backend, **kw)


NOT_FOUND = Expect(404)
ERROR = Expect(500)


def redirect(status: int, location: str) -> Expect:
    return Expect(status, location=location)


def c(name: str, host: str, path: str, expect: Expect, note: str = "", **request) -> Case:
    return Case(name, Request(host, path, **request), expect, note)


# -- matching within a route (10-matching.yaml) ---------------------------------

_P = "paths.match.example.com"
_H = "headers.match.example.com"
_Q = "query.match.example.com"
_M = "method.match.example.com"
_O = "or.match.example.com"

MATCHING = (
    c("exact path", _P, "/exact", to(V1)),
    c("exact path is not a prefix", _P, "/exact/more", NOT_FOUND),
    c("exact path with a trailing slash", _P, "/exact/", NOT_FOUND),
    c("prefix: the path itself", _P, "/prefix", to(V2)),
    c("prefix: with a trailing slash", _P, "/prefix/", to(V2)),
    c("prefix: below it", _P, "/prefix/one/two", to(V2)),
    c("prefix matches whole segments only", _P, "/prefixes", NOT_FOUND),
    c("prefix with a trailing slash matches the path without it", _P, "/trailing", to(V1),
      note="Gateway API: a trailing '/' in a PathPrefix is ignored"),
    c("prefix with a trailing slash, below it", _P, "/trailing/x", to(V1)),
    c("regular expression: full match", _P, "/regex/123", to(V3)),
    c("regular expression: no partial match", _P, "/regex/123/more", NOT_FOUND,
      note="crdgate matches RegularExpression paths in full (RE2)"),
    c("regular expression: no match", _P, "/regex/abc", NOT_FOUND),
    c("query is not part of the path", _P, "/exact?x=1", to(V1, path="/exact?x=1")),
    c("paths are matched after normalisation", _P, "/prefix/../exact", to(V1, path="/exact"),
      note="crdgate normalises dot segments before matching (gateway/normalize.py)"),
    c("no path matches", _P, "/", NOT_FOUND),
    c("another host", "elsewhere.example.com", "/exact", NOT_FOUND),
    c("host names are case-insensitive", "Paths.Match.Example.COM", "/exact", to(V1)),
    c("header: exact", _H, "/", to(V2), headers=(("version", "two"),)),
    c("header names are case-insensitive", _H, "/", to(V2), headers=(("Version", "two"),)),
    c("header values are case-sensitive", _H, "/", NOT_FOUND, headers=(("version", "TWO"),)),
    c("headers: all of one match", _H, "/", to(V1), headers=(("version", "one"), ("color", "blue"))),
    c("headers: one missing", _H, "/", NOT_FOUND, headers=(("version", "one"),)),
    c("header: regular expression", _H, "/", to(V3), headers=(("x-tier", "silver"),)),
    c("header: regular expression, no match", _H, "/", NOT_FOUND, headers=(("x-tier", "bronze"),)),
    c("no header", _H, "/", NOT_FOUND),
    c("query: exact", _Q, "/?animal=whale", to(V1)),
    c("query: all of one match", _Q, "/?animal=dolphin&color=blue", to(V2)),
    c("query: one missing", _Q, "/?animal=dolphin", NOT_FOUND),
    c("query: regular expression", _Q, "/?animal=cat", to(V3)),
    c("query names are case-sensitive", _Q, "/?ANIMAL=whale", NOT_FOUND),
    c("method", _M, "/", to(V1), method="POST"),
    c("only the method differs: 404", _M, "/", NOT_FOUND, method="PUT"),
    c("method and path", _M, "/get", to(V2)),
    c("another method on the same path", _M, "/get/x", to(V1), method="POST"),
    c("HEAD is not GET", _M, "/get", NOT_FOUND, method="HEAD"),
    c("matches are ORed: the path", _O, "/a", to(V1)),
    c("matches are ORed: the header", _O, "/b", to(V1), headers=(("x-either", "yes"),)),
    c("matches are ORed: neither", _O, "/b", NOT_FOUND),
    c("no rules: the default rule matches everything, with no backend", "default.match.example.com", "/any",
      ERROR),
)

# -- precedence (20-precedence.yaml) ----------------------------------------------

_PP = "paths.prec.example.com"
_PC = "criteria.prec.example.com"
_PT = "ties.prec.example.com"

PRECEDENCE = (
    c("Exact beats every prefix", _PP, "/p/long/exact", to(V3)),
    c("the longest prefix", _PP, "/p/long/x", to(V2)),
    c("prefixes are whole segments", _PP, "/p/longer", to(V1)),
    c("a prefix beats a regular expression", _PP, "/p/regex", to(V1),
      note="crdgate ranks RegularExpression after PathPrefix (the spec leaves it open)"),
    c("a regular expression where nothing else matches", _PP, "/r/42", to(V4)),
    c("method beats headers", _PC, "/m", to(V1), headers=(("h1", "a"), ("h2", "b"))),
    c("headers where the method does not match", _PC, "/m", to(V2), method="POST",
      headers=(("h1", "a"), ("h2", "b"))),
    c("most headers", _PC, "/h", to(V2), headers=(("h1", "a"), ("h2", "b"))),
    c("fewer headers when only they match", _PC, "/h", to(V1), headers=(("h1", "a"),)),
    c("most query parameters", _PC, "/q?q1=a&q2=b", to(V2)),
    c("fewer query parameters when only they match", _PC, "/q?q1=a", to(V1)),
    c("headers beat query parameters", _PC, "/q?q1=a&q2=b", to(V3), headers=(("h1", "a"),)),
    c("the oldest route", _PT, "/age", to(V1)),
    c("then namespace/name", _PT, "/tie", to(V1)),
    c("within a route, the first rule", _PT, "/order", to(V1)),
    c("an exact host beats a wildcard, whatever the path", "exact.host.example.com", "/specific", to(V1)),
    c("a wildcard host", "other.host.example.com", "/specific", to(V2)),
    c("a wildcard host, another path", "other.host.example.com", "/", NOT_FOUND),
    c("a wildcard covers several labels", "a.b.host.example.com", "/specific", to(V2),
      note="Gateway API: '*.example.com' matches one or more labels"),
    c("a longer wildcard beats a shorter one", "a.sub.host.example.com", "/specific", to(V3)),
    c("a wildcard needs a label", "host.example.com", "/specific", NOT_FOUND),
)

# -- listener hostnames (30-hostnames.yaml), sent to Gateway "hostnames" ----------------

HOSTNAME_INTERSECTION = (
    c("no route hostnames: the listener's", "listener.example.com", "/", to(APP), gateway=HOSTNAMES),
    c("no route hostnames: nothing else", "other.example.com", "/", NOT_FOUND, gateway=HOSTNAMES),
    c("a route hostname under the listener's wildcard", "a.wild.example.com", "/some", to(APP),
      gateway=HOSTNAMES),
    c("a route hostname outside the listener's", "b.other.example.com", "/some", NOT_FOUND, gateway=HOSTNAMES),
    c("a wider route wildcard, narrowed to the listener's", "x.wild.example.com", "/wider", to(APP),
      gateway=HOSTNAMES),
    c("a wider route wildcard, outside the listener's", "x.example.com", "/wider", NOT_FOUND, gateway=HOSTNAMES),
    c("no intersection: not routed", "nothing.example.org", "/", NOT_FOUND, gateway=HOSTNAMES),
)

# -- redirects (40-redirects.yaml) ---------------------------------------------------

_R = "redirect.example.com"

REDIRECTS = (
    c("scheme: the port follows it", _R, "/scheme/x", redirect(302, "https://redirect.example.com/scheme/x")),
    c("hostname", _R, "/hostname", redirect(302, "http://example.org/hostname")),
    c("port", _R, "/port", redirect(302, "http://redirect.example.com:8443/port")),
    c("scheme and port", _R, "/scheme-and-port", redirect(302, "https://redirect.example.com:8443/scheme-and-port")),
    c("the scheme's default port is left out", _R, "/https-default-port",
      redirect(302, "https://redirect.example.com/https-default-port")),
    c("status 301", _R, "/status-301", redirect(301, "http://redirect.example.com/status-301")),
    c("status 303", _R, "/status-303", redirect(303, "http://example.org/status-303")),
    c("status 307", _R, "/status-307", redirect(307, "https://redirect.example.com/status-307")),
    c("status 308", _R, "/status-308", redirect(308, "http://redirect.example.com:8080/status-308")),
    c("full path", _R, "/full/x", redirect(302, "http://redirect.example.com/replaced")),
    c("full path keeps the query", _R, "/full/x?a=1&b=2", redirect(302, "http://redirect.example.com/replaced?a=1&b=2"),
      note="the spec does not say; crdgate keeps the request's query (gateway/syntax.py)"),
    c("prefix replaced", _R, "/prefix/one", redirect(302, "http://redirect.example.com/new-prefix/one")),
    c("prefix replaced: the prefix itself", _R, "/prefix", redirect(302, "http://redirect.example.com/new-prefix")),
    c("prefix replaced by '/'", _R, "/strip/one", redirect(302, "http://redirect.example.com/one")),
    c("prefix replaced by '/': the prefix itself", _R, "/strip", redirect(302, "http://redirect.example.com/")),
    c("everything at once", _R, "/everything", redirect(301, "https://example.net:9443/all")),
    c("a redirect does not reach a backend", _R, "/hostname", redirect(302, "http://example.org/hostname"),
      method="POST"),
)

# -- rewrites (50-rewrites.yaml) -----------------------------------------------------

_W = "rewrite.example.com"

REWRITES = (
    c("hostname", _W, "/host/x", to(V1, host="rewritten.example.org", path="/host/x")),
    c("full path", _W, "/full/x/y", to(V1, path="/one")),
    c("full path keeps the query", _W, "/full?a=1", to(V1, path="/one?a=1")),
    c("prefix", _W, "/prefix/x", to(V1, path="/new/x")),
    c("prefix: the prefix itself", _W, "/prefix", to(V1, path="/new")),
    c("prefix: with a trailing slash", _W, "/prefix/", to(V1, path="/new/")),
    c("prefix by '/'", _W, "/strip/x", to(V1, path="/x")),
    c("prefix by '/': the prefix itself", _W, "/strip", to(V1, path="/")),
    c("hostname and path", _W, "/both/x", to(V1, host="both.example.org", path="/rewritten")),
    # Gateway API's ReplacePrefixMatch table (trailing slashes, an empty replacement):
    c("prefix by '': the rest", _W, "/empty/bar", to(V1, path="/bar")),
    c("prefix by '': the prefix itself", _W, "/empty", to(V1, path="/")),
    c("prefix by '': the prefix and a slash", _W, "/empty/", to(V1, path="/")),
    c("prefix '/slashed/' by '/xyz/'", _W, "/slashed/bar", to(V1, path="/xyz/bar")),
)

# -- header modifiers and mirroring (60-headers.yaml) -----------------------------------

_HM = "headers.example.com"

HEADER_MODIFIERS = (
    c("request: set, add, remove", _HM, "/request",
      to(V1, headers=(("X-Set", "set-value"), ("X-Add", "orig,added")), absent_headers=("X-Remove",)),
      headers=(("X-Set", "orig"), ("X-Add", "orig"), ("X-Remove", "secret"))),
    c("request: add to no header", _HM, "/request", to(V1, headers=(("X-Set", "set-value"), ("X-Add", "added")))),
    c("request: names are case-insensitive", _HM, "/request",
      to(V1, headers=(("x-set", "set-value"),), absent_headers=("x-remove",)),
      headers=(("x-set", "orig"), ("x-remove", "secret"))),
    c("response: set, add, remove", _HM, "/response",
      to(V1, response_headers=(("X-Resp-Set", "set-value"), ("X-Resp-Add", "from-backend,added")),
         absent_response_headers=("X-Backend-Secret",)),
      backend_response_headers=(("X-Resp-Set", "from-backend"), ("X-Resp-Add", "from-backend"),
                                ("X-Backend-Secret", "s3cret"))),
    c("a backendRef's own filter", _HM, "/per-backend", to(V2, headers=(("X-Backend", "v2"),))),
    c("mirror: the response is the backend's, a copy goes to the mirror", _HM, "/mirror",
      to(V1, mirrored_to=V3)),
)

# -- weights (70-weights.yaml) -----------------------------------------------------------

_WT = "weights.example.com"

WEIGHTS = (
    c("split by weight, weight 0 gets nothing", _WT, "/split", Expect(split=((V1, 0.7), (V2, 0.3)))),
    c("no weights: equal shares", _WT, "/default", Expect(split=((V1, 0.5), (V2, 0.5)))),
    c("one weight 0", _WT, "/one-zero", to(V2)),
    c("every weight 0: 500", _WT, "/all-zero", ERROR),
)

# -- timeouts (75-timeouts.yaml) -----------------------------------------------------------

_T = "timeouts.example.com"

TIMEOUTS = (
    c("request timeout: in time", _T, "/request", to(V1), backend_delay=0.0),
    c("request timeout: too slow", _T, "/request", Expect(504), backend_delay=1.5),
    c("backend request timeout: too slow", _T, "/backend", Expect(504), backend_delay=1.5),
    c("backend request timeout: in time", _T, "/backend", to(V1), backend_delay=0.1),
    c("0s: no timeout", _T, "/disabled", to(V1), backend_delay=1.5),
)

# -- references (80-references.yaml) -------------------------------------------------------

_RF = "refs.example.com"
_IR = "invalid-refs.example.com"

REFERENCES = (
    c("cross-namespace, granted", _RF, "/granted", to(WEB), gateway=ALL_NS),
    c("cross-namespace, the grant names another Service", _RF, "/other-name", ERROR, gateway=ALL_NS),
    c("cross-namespace, no grant", _RF, "/refused", ERROR, gateway=ALL_NS),
    c("cross-namespace, half granted", _RF, "/partial", Expect(split=((WEB, 0.5), (ERROR_500, 0.5))),
      gateway=ALL_NS),
    c("unknown backend kind", _IR, "/kind", ERROR),
    c("missing Service", _IR, "/missing", ERROR),
    c("one of two Services missing", _IR, "/half", Expect(split=((V1, 0.5), (ERROR_500, 0.5)))),
    c("a port the Service does not have", _IR, "/port", ERROR),
    c("an ExtensionRef filter crdgate does not have", _IR, "/extension", ERROR,
      note="the filter must not be skipped: crdgate answers 500 for the rule"),
    c("the route's other rules still work", _IR, "/plain", to(V1)),
)

# -- parents and allowed routes (90-parents.yaml) -----------------------------------------------

PARENTS = (
    c("by sectionName: that listener", "section.parents.example.com", "/", to(V1), gateway=MULTI, port=8080),
    c("by sectionName: not the other", "section.parents.example.com", "/", NOT_FOUND, gateway=MULTI, port=80),
    c("by port: that listener", "port.parents.example.com", "/", to(V2), gateway=MULTI, port=8080),
    c("by port: not the other", "port.parents.example.com", "/", NOT_FOUND, gateway=MULTI, port=80),
    c("two listeners: the first", "both.parents.example.com", "/", to(V3), gateway=MULTI, port=80),
    c("two listeners: the second", "both.parents.example.com", "/", to(V3), gateway=MULTI, port=8080),
    c("unknown sectionName: not routed", "unknown-section.parents.example.com", "/", NOT_FOUND, gateway=MULTI),
    c("unknown port: not routed", "unknown-port.parents.example.com", "/", NOT_FOUND, gateway=MULTI,
      port=9090),
    c("sectionName and port disagree: not routed", "mismatch.parents.example.com", "/", NOT_FOUND,
      gateway=MULTI, port=8080),
    c("Same: another namespace's route is not admitted", "same.allowed.example.com", "/", NOT_FOUND),
    c("All: another namespace's route", "all.allowed.example.com", "/", to(APP), gateway=ALL_NS),
    c("Selector: a selected namespace", "selected.allowed.example.com", "/app", to(APP), gateway=SELECTED_NS),
    c("Selector: a namespace not selected", "selected.allowed.example.com", "/web", NOT_FOUND,
      gateway=SELECTED_NS),
    c("kinds: a listener for GRPCRoutes only", "grpc.example.com", "/", NOT_FOUND, gateway=BROKEN),
)

AREAS: dict[str, tuple[Case, ...]] = {
    "matching": MATCHING,
    "precedence": PRECEDENCE,
    "hostnames": HOSTNAME_INTERSECTION,
    "redirect": REDIRECTS,
    "rewrite": REWRITES,
    "header modifiers": HEADER_MODIFIERS,
    "weights": WEIGHTS,
    "timeouts": TIMEOUTS,
    "references": REFERENCES,
    "parents": PARENTS,
}
# Every case, named "area: case" (unique: a test id).
CASES: tuple[Case, ...] = tuple(
    Case(f"{area}: {case.name}", case.request, case.expect, case.note) for area, cases in AREAS.items() for case in cases
)

# -- status --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Condition:
    type: str
    status: str  # "True" / "False"
    reason: str


@dataclass(frozen=True)
class ParentStatus:
    """The conditions of one HTTPRoute for one of its parentRefs."""

    route: str  # "namespace/name" of the HTTPRoute
    parent: str  # "namespace/name" of the Gateway
    section: str | None = None  # the parentRef's sectionName
    port: int | None = None  # the parentRef's port
    conditions: tuple[Condition, ...] = ()


ACCEPTED = Condition("Accepted", "True", "Accepted")
RESOLVED = Condition("ResolvedRefs", "True", "ResolvedRefs")
OK = (ACCEPTED, RESOLVED)


def refused(reason: str) -> tuple[Condition, ...]:
    """Accepted, but a reference cannot be resolved (its share of traffic gets 500)."""
    return (ACCEPTED, Condition("ResolvedRefs", "False", reason))


def not_accepted(reason: str) -> tuple[Condition, ...]:
    return (Condition("Accepted", "False", reason),)


_SAME_NS_OK = (
    "match-paths", "match-headers", "match-query", "match-method", "match-or", "match-default-rule",
    "prec-prefix-short", "prec-prefix-long", "prec-exact", "prec-regex", "prec-method", "prec-two-headers",
    "prec-one-header", "prec-query", "prec-newer", "prec-older", "tie-a", "tie-b", "prec-rule-order",
    "host-exact", "host-wild", "host-wild-longer", "redirects", "rewrites", "header-modifiers", "weights",
    "timeouts", "half-missing",
)  # fmt: skip

ROUTE_STATUS: tuple[ParentStatus, ...] = (
    *(ParentStatus(f"gw-infra/{name}", SAME_NS, conditions=OK) for name in _SAME_NS_OK
      if name != "half-missing"),
    ParentStatus("gw-infra/half-missing", SAME_NS, conditions=refused("BackendNotFound")),
    ParentStatus("gw-infra/unknown-kind", SAME_NS, conditions=refused("InvalidKind")),
    ParentStatus("gw-infra/missing-service", SAME_NS, conditions=refused("BackendNotFound")),
    ParentStatus("gw-infra/missing-port", SAME_NS, conditions=refused("BackendNotFound")),
    # crdgate's choice: an ExtensionRef it cannot resolve is a reference of a kind it does not know.
    ParentStatus("gw-infra/extension-ref", SAME_NS, conditions=refused("InvalidKind")),
    ParentStatus("gw-app/no-hostnames", HOSTNAMES, "exact", conditions=OK),
    ParentStatus("gw-app/some-hostnames-match", HOSTNAMES, "wild", conditions=OK),
    ParentStatus("gw-app/wider-wildcard", HOSTNAMES, "wild", conditions=OK),
    ParentStatus("gw-app/no-intersection", HOSTNAMES, "exact", conditions=not_accepted("NoMatchingListenerHostname")),
    ParentStatus("gw-app/cross-granted", ALL_NS, conditions=OK),
    ParentStatus("gw-app/cross-other-name", ALL_NS, conditions=refused("RefNotPermitted")),
    ParentStatus("gw-app/cross-refused", ALL_NS, conditions=refused("RefNotPermitted")),
    ParentStatus("gw-app/cross-partial", ALL_NS, conditions=refused("RefNotPermitted")),
    ParentStatus("gw-infra/by-section", MULTI, "alt", conditions=OK),
    ParentStatus("gw-infra/by-port", MULTI, port=8080, conditions=OK),
    ParentStatus("gw-infra/both-listeners", MULTI, "http", conditions=OK),
    ParentStatus("gw-infra/both-listeners", MULTI, "alt", conditions=OK),
    ParentStatus("gw-infra/unknown-section", MULTI, "nope", conditions=not_accepted("NoMatchingParent")),
    ParentStatus("gw-infra/unknown-port", MULTI, port=9090, conditions=not_accepted("NoMatchingParent")),
    ParentStatus("gw-infra/section-port-mismatch", MULTI, "http", 8080, conditions=not_accepted("NoMatchingParent")),
    ParentStatus("gw-app/to-same-from-app", SAME_NS, conditions=not_accepted("NotAllowedByListeners")),
    ParentStatus("gw-app/to-all-from-app", ALL_NS, conditions=OK),
    ParentStatus("gw-app/to-selected-from-app", SELECTED_NS, conditions=OK),
    ParentStatus("gw-web/to-selected-from-web", SELECTED_NS, conditions=not_accepted("NotAllowedByListeners")),
    ParentStatus("gw-infra/wrong-kind-for-listener", BROKEN, "tcp-only", conditions=not_accepted("NotAllowedByListeners")),
)

# Routes whose only parent is another controller's Gateway: crdgate writes no parent status for them.
NO_STATUS = ("gw-infra/to-other-controller",)


@dataclass(frozen=True)
class ListenerStatus:
    attached_routes: int
    conditions: tuple[Condition, ...]


_LISTENER_OK = (
    Condition("Accepted", "True", "Accepted"),
    Condition("ResolvedRefs", "True", "ResolvedRefs"),
    Condition("Programmed", "True", "Programmed"),
)
_GATEWAY_OK = (Condition("Accepted", "True", "Accepted"), Condition("Programmed", "True", "Programmed"))

# Gateway -> (its conditions, listener name -> its status). attachedRoutes counts Accepted routes only.
GATEWAY_STATUS: dict[str, tuple[tuple[Condition, ...], dict[str, ListenerStatus]]] = {
    SAME_NS: (_GATEWAY_OK, {"http": ListenerStatus(32, _LISTENER_OK)}),
    ALL_NS: (_GATEWAY_OK, {"http": ListenerStatus(5, _LISTENER_OK)}),
    SELECTED_NS: (_GATEWAY_OK, {"http": ListenerStatus(1, _LISTENER_OK)}),
    HOSTNAMES: (_GATEWAY_OK, {"exact": ListenerStatus(1, _LISTENER_OK), "wild": ListenerStatus(2, _LISTENER_OK)}),
    MULTI: (_GATEWAY_OK, {"http": ListenerStatus(1, _LISTENER_OK), "alt": ListenerStatus(3, _LISTENER_OK)}),
    BROKEN: (
        (Condition("Accepted", "True", "ListenersNotValid"),),
        {
            "https": ListenerStatus(0, (Condition("ResolvedRefs", "False", "InvalidCertificateRef"),
                                        Condition("Programmed", "False", "Invalid"))),
            "tcp-only": ListenerStatus(0, (Condition("ResolvedRefs", "False", "InvalidRouteKinds"),)),
        },
    ),
}
# Gateways crdgate leaves alone (another controller's class): no status from crdgate.
NOT_OUR_GATEWAYS = (NOT_OURS,)

GATEWAYCLASS_STATUS: dict[str, tuple[Condition, ...] | None] = {
    "crdgate": (Condition("Accepted", "True", "Accepted"),),
    "other": None,  # another controller's: crdgate writes nothing
}

# -- invalid objects (invalid/) -------------------------------------------------------------


@dataclass(frozen=True)
class Invalid:
    file: str  # in invalid/
    field: str  # the field the error names, as the error prints it
    says: str  # a part of the message


INVALID: tuple[Invalid, ...] = (
    Invalid("redirect-and-rewrite.yaml", "spec.rules[0].filters", "either RequestRedirect or URLRewrite"),
    Invalid("redirect-with-backends.yaml", "spec.rules[0].filters", "cannot be used together with backendRefs"),
    Invalid("duplicate-header-set.yaml", "spec.rules[0].filters[0].requestHeaderModifier.set[1]", "duplicate"),
    Invalid("replace-prefix-on-exact.yaml", "spec.rules[0].filters", "exactly one match, of path type PathPrefix"),
    Invalid("replace-prefix-two-matches.yaml", "spec.rules[0].backendRefs[0].filters", "exactly one match"),
    Invalid("prefix-without-slash.yaml", "spec.rules[0].matches[0].path.value", "must start with '/'"),
    Invalid("prefix-dot-segment.yaml", "spec.rules[0].matches[0].path.value", "'..' segments"),
    Invalid("prefix-encoded-slash.yaml", "spec.rules[0].matches[0].path.value", "%2F"),
    Invalid("bad-regex.yaml", "spec.rules[0].matches[0].path.value", "invalid regular expression"),
    Invalid("service-without-port.yaml", "spec.rules[0].backendRefs[0].port", "required for a Service"),
    Invalid("negative-weight.yaml", "spec.rules[0].backendRefs[0].weight", "greater than or equal to 0"),
    Invalid("unknown-method.yaml", "spec.rules[0].matches[0].method", "Input should be 'GET'"),
    Invalid("backend-timeout-longer.yaml", "spec.rules[0].timeouts.backendRequest", "longer than request"),
    Invalid("decimal-duration.yaml", "spec.rules[0].timeouts.request", "invalid duration"),
    Invalid("misspelt-field.yaml", "spec.rules[0].backendRef", "did you mean `backendRefs`"),
    Invalid("filter-settings-mismatch.yaml", "spec.rules[0].filters[0].requestHeaderModifier", "required when type"),
    Invalid("header-value-newline.yaml", "spec.rules[0].filters[0].requestHeaderModifier.set[0].value",
            "CR, LF or NUL"),
    Invalid("uppercase-hostname.yaml", "spec.hostnames[0]", "not a host name"),
    Invalid("parentrefs-section-mixed.yaml", "spec.parentRefs[1].sectionName", "every parentRef to the same parent"),
    Invalid("no-spec.yaml", "spec", "required"),
    Invalid("gateway-duplicate-listener.yaml", "spec.listeners[1]", "duplicate listener name"),
    Invalid("gateway-https-passthrough.yaml", "spec.listeners[0].tls.mode", "must be Terminate"),
    Invalid("gateway-tls-on-http.yaml", "spec.listeners[0].tls", "not allowed with protocol HTTP"),
    Invalid("gateway-no-listeners.yaml", "spec.listeners", "at least 1 item"),
    Invalid("gateway-selector-operator.yaml",
            "spec.listeners[0].allowedRoutes.namespaces.selector.matchExpressions[0].values", "required"),
    Invalid("gatewayclass-bad-controller.yaml", "spec.controllerName", "not a controller name"),
)
