"""HTTPRoute (gateway.networking.k8s.io/v1, standard channel) as pydantic models.

The fields, defaults and bounds are the upstream CRD's, and so are its CEL
rules that decide whether an object is valid at all:

- a path match of type Exact or PathPrefix is an absolute RFC 3986 path with no
  empty, '.' or '..' segment and no encoded '/' (a RegularExpression must compile:
  gateway/regex.py, RE2);
- a rule has at most one of each filter type (RequestMirror and ExtensionRef
  may repeat), never both RequestRedirect and URLRewrite, and no RequestRedirect
  when it has backendRefs;
- ``ReplacePrefixMatch`` (redirect or rewrite, on the rule or on a backendRef)
  needs exactly one match, of type PathPrefix;
- header and query-parameter matches, and header modifiers' ``set``/``add``,
  are maps keyed by name (a name appears once);
- a Service backendRef has a port; ``weight`` defaults to 1, 0 sends nothing;
- ``timeouts.backendRequest`` is not longer than ``timeouts.request`` (unless
  that is 0s, no timeout);
- parentRefs naming the same parent all have a sectionName, or none does, and
  never the same one twice; at most 128 matches over all rules.

What a filter or a backend means (and which are supported: ExtensionRef is
recognised but not implemented) is the compiler's business, not this module's.
Errors come out as ``SpecError``/``ValidationError`` located at the field
("spec.rules[0].filters[1].urlRewrite.path"): see controller/gatewayapi/objects.py.
"""

from __future__ import annotations

from collections import Counter
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from controller.gatewayapi.common import (
    BackendObjectReference,
    Duration,
    GatewayAPISpec,
    HeaderName,
    HeaderValue,
    Hostname,
    LocalObjectReference,
    ParentReference,
    PortNumber,
    PreciseHostname,
    SectionName,
    bounded,
    checked,
    raise_problems,
    unique,
)
from controller.models import ObjectMeta, SpecError, compile_regex, dot_segment_problem
from gateway import regex, syntax

KIND = "HTTPRoute"

PATH_TYPES = ("Exact", "PathPrefix", "RegularExpression")
METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH")
FILTER_TYPES = (
    "RequestHeaderModifier", "ResponseHeaderModifier", "RequestMirror", "RequestRedirect", "URLRewrite",
    "ExtensionRef", "CORS",
)  # fmt: skip
# Filter types a rule (or a backendRef) may hold more than once.
REPEATABLE_FILTERS = frozenset({"RequestMirror", "ExtensionRef"})
MAX_MATCHES = 128  # over all rules of a route


# -- matches -------------------------------------------------------------------


def _check_regex(value: str) -> None:
    """A RegularExpression value must compile (RE2, compiled once: controller/models.py)."""
    try:
        compile_regex(value)
    except regex.RegexError as e:
        raise SpecError(("value", f"invalid regular expression: {e}")) from None


class HTTPPathMatch(GatewayAPISpec):
    type: Literal["Exact", "PathPrefix", "RegularExpression"] = "PathPrefix"
    value: Annotated[str, bounded(0, 1024)] = "/"

    @model_validator(mode="after")
    def _check(self) -> "HTTPPathMatch":
        v = self.value
        if self.type == "RegularExpression":
            _check_regex(v)
            return self
        problem = syntax.path_problem(v) if v else "must not be empty"
        if problem is None and ("%2f" in v or "%2F" in v):
            problem = "must not contain an encoded '/' (%2F)"
        if problem is None:
            problem = dot_segment_problem(v)
        if problem is not None:
            raise SpecError(("value", f"{problem} (type {self.type})"))
        return self


class HTTPHeaderMatch(GatewayAPISpec):
    type: Literal["Exact", "RegularExpression"] = "Exact"
    name: HeaderName
    value: Annotated[str, bounded(1, 4096)]

    @model_validator(mode="after")
    def _check(self) -> "HTTPHeaderMatch":
        if self.type == "RegularExpression":
            _check_regex(self.value)
        return self


class HTTPQueryParamMatch(GatewayAPISpec):
    type: Literal["Exact", "RegularExpression"] = "Exact"
    name: HeaderName  # the CRD gives query parameter names the header-name grammar
    value: Annotated[str, bounded(1, 1024)]

    @model_validator(mode="after")
    def _check(self) -> "HTTPQueryParamMatch":
        if self.type == "RegularExpression":
            _check_regex(self.value)
        return self


class HTTPRouteMatch(GatewayAPISpec):
    """Every condition given must hold (the matches of a rule are ORed)."""

    path: HTTPPathMatch = HTTPPathMatch()
    headers: list[HTTPHeaderMatch] = Field(default_factory=list, max_length=16)
    query_params: list[HTTPQueryParamMatch] = Field(default_factory=list, max_length=16)
    method: Literal[METHODS] | None = None  # type: ignore[valid-type]

    @model_validator(mode="after")
    def _check(self) -> "HTTPRouteMatch":
        raise_problems(
            unique(self.headers, lambda h: h.name, "headers", "header name")
            + unique(self.query_params, lambda q: q.name, "queryParams", "query parameter name")
        )
        return self


DEFAULT_MATCH = HTTPRouteMatch()


# -- filters -------------------------------------------------------------------


class HTTPHeader(GatewayAPISpec):
    name: HeaderName
    value: HeaderValue


class HTTPHeaderFilter(GatewayAPISpec):
    """RequestHeaderModifier / ResponseHeaderModifier: set (replace), add (append), remove."""

    set: list[HTTPHeader] = Field(default_factory=list, max_length=16)
    add: list[HTTPHeader] = Field(default_factory=list, max_length=16)
    remove: list[str] = Field(default_factory=list, max_length=16)

    @model_validator(mode="after")
    def _check(self) -> "HTTPHeaderFilter":
        raise_problems(
            unique(self.set, lambda h: h.name, "set", "header name")
            + unique(self.add, lambda h: h.name, "add", "header name")
            + unique(self.remove, lambda n: n, "remove", "header name")
        )
        return self


def _replacement_path_problem(v: str) -> str | None:
    """A path written into the upstream request line or a Location: RFC 3986 (gateway/syntax.py).

    Empty is allowed, as the CRD allows it: a prefix replaced by "" leaves the rest of the path
    ("/foo/bar" with prefix "/foo" becomes "/bar"; "/foo" becomes "/"), and an empty full path
    is "/" (a request line needs one)."""
    if len(v) > 1024:
        return f"must be at most 1024 characters, not {len(v)}"
    return syntax.path_problem(v) if v else None


ReplacementPath = Annotated[str, checked(_replacement_path_problem)]


class HTTPPathModifier(GatewayAPISpec):
    type: Literal["ReplaceFullPath", "ReplacePrefixMatch"]
    replace_full_path: ReplacementPath | None = None
    replace_prefix_match: ReplacementPath | None = None

    @model_validator(mode="after")
    def _check(self) -> "HTTPPathModifier":
        values = {"replaceFullPath": self.replace_full_path, "replacePrefixMatch": self.replace_prefix_match}
        wanted = "replaceFullPath" if self.type == "ReplaceFullPath" else "replacePrefixMatch"
        problems = []
        if values[wanted] is None:
            problems.append((wanted, f"required when type is {self.type}"))
        for other, value in values.items():
            if other != wanted and value is not None:
                problems.append((other, f"not allowed when type is {self.type}"))
        raise_problems(problems)
        return self


class HTTPRequestRedirectFilter(GatewayAPISpec):
    """What is not set is the request's own (the port follows the scheme when that changes)."""

    scheme: Literal["http", "https"] | None = None
    hostname: PreciseHostname | None = None
    path: HTTPPathModifier | None = None
    port: PortNumber | None = None
    status_code: Literal[301, 302, 303, 307, 308] = 302


class HTTPURLRewriteFilter(GatewayAPISpec):
    hostname: PreciseHostname | None = None
    path: HTTPPathModifier | None = None


class Fraction(GatewayAPISpec):
    numerator: int = Field(ge=0, le=2**31 - 1)
    denominator: int = Field(default=100, ge=1, le=2**31 - 1)

    @model_validator(mode="after")
    def _check(self) -> "Fraction":
        if self.numerator > self.denominator:
            raise SpecError(("numerator", "must be less than or equal to denominator"))
        return self


class HTTPRequestMirrorFilter(GatewayAPISpec):
    backend_ref: BackendObjectReference
    percent: int | None = Field(default=None, ge=0, le=100)
    fraction: Fraction | None = None

    @model_validator(mode="after")
    def _check(self) -> "HTTPRequestMirrorFilter":
        if self.percent is not None and self.fraction is not None:
            raise SpecError(("fraction", "set either percent or fraction, not both"))
        return self

    @property
    def share(self) -> float:
        """The part of requests mirrored, 0.0 to 1.0 (all of them when neither is set)."""
        if self.percent is not None:
            return self.percent / 100
        if self.fraction is not None:
            return self.fraction.numerator / self.fraction.denominator
        return 1.0


_ORIGIN = r"\*|https?://((\*\.)?([a-zA-Z0-9\-]+\.)*[a-zA-Z0-9-]+|\*)(:[0-9]{1,5})?"


def _star_alone(values: list[str], field: str) -> list[tuple[str, str]]:
    if "*" in values and len(values) > 1:
        return [(field, "'*' must be the only entry when given")]
    return []


class HTTPCORSFilter(GatewayAPISpec):
    allow_origins: list[Annotated[str, bounded(1, 253), Field(pattern=f"^({_ORIGIN})$")]] = Field(
        default_factory=list, max_length=64
    )
    allow_credentials: bool | None = None
    allow_methods: list[Literal[(*METHODS, "*")]] = Field(default_factory=list, max_length=9)  # type: ignore[valid-type]
    allow_headers: list[HeaderName] = Field(default_factory=list, max_length=64)
    expose_headers: list[HeaderName] = Field(default_factory=list, max_length=64)
    max_age: int = Field(default=5, ge=1, le=2**31 - 1)

    @model_validator(mode="after")
    def _check(self) -> "HTTPCORSFilter":
        problems = []
        lists = (
            ("allowOrigins", self.allow_origins, True),
            ("allowMethods", self.allow_methods, True),
            ("allowHeaders", self.allow_headers, True),
            ("exposeHeaders", self.expose_headers, False),
        )
        for field, values, star_alone in lists:
            problems += unique(values, lambda v: v, field, "entry")  # a list-set
            if star_alone:
                problems += _star_alone(values, field)
        raise_problems(problems)
        return self


# filter type -> the field that holds its settings
FILTER_FIELDS = {
    "RequestHeaderModifier": "requestHeaderModifier",
    "ResponseHeaderModifier": "responseHeaderModifier",
    "RequestMirror": "requestMirror",
    "RequestRedirect": "requestRedirect",
    "URLRewrite": "urlRewrite",
    "ExtensionRef": "extensionRef",
    "CORS": "cors",
}


class HTTPRouteFilter(GatewayAPISpec):
    """One filter: ``type`` and the one field of that type's settings."""

    type: Literal[FILTER_TYPES]  # type: ignore[valid-type]
    request_header_modifier: HTTPHeaderFilter | None = None
    response_header_modifier: HTTPHeaderFilter | None = None
    request_mirror: HTTPRequestMirrorFilter | None = None
    request_redirect: HTTPRequestRedirectFilter | None = None
    url_rewrite: HTTPURLRewriteFilter | None = None
    extension_ref: LocalObjectReference | None = None
    cors: HTTPCORSFilter | None = None

    @model_validator(mode="after")
    def _check(self) -> "HTTPRouteFilter":
        problems = []
        for type_, field in FILTER_FIELDS.items():
            present = self.settings_of(type_) is not None
            if type_ == self.type and not present:
                problems.append((field, f"required when type is {type_}"))
            elif type_ != self.type and present:
                problems.append((field, f"not allowed when type is {self.type}"))
        raise_problems(problems)
        return self

    def settings_of(self, type_: str) -> BaseModel | None:
        return {
            "RequestHeaderModifier": self.request_header_modifier,
            "ResponseHeaderModifier": self.response_header_modifier,
            "RequestMirror": self.request_mirror,
            "RequestRedirect": self.request_redirect,
            "URLRewrite": self.url_rewrite,
            "ExtensionRef": self.extension_ref,
            "CORS": self.cors,
        }[type_]

    @property
    def settings(self) -> BaseModel:
        """The settings of this filter's type (never None once validated)."""
        found = self.settings_of(self.type)
        assert found is not None
        return found


def _filter_list_problems(filters: list[HTTPRouteFilter], field: str) -> list[tuple[str, str]]:
    problems = []
    counts = Counter(f.type for f in filters)
    for type_, n in sorted(counts.items()):
        if n > 1 and type_ not in REPEATABLE_FILTERS:
            problems.append((field, f"{type_} may appear only once, not {n} times"))
    if counts["RequestRedirect"] and counts["URLRewrite"]:
        problems.append((field, "set either RequestRedirect or URLRewrite, not both"))
    return problems


def _uses_replace_prefix_match(filters: list[HTTPRouteFilter]) -> str | None:
    for f in filters:
        mod = f.request_redirect or f.url_rewrite
        if mod is not None and mod.path is not None and mod.path.type == "ReplacePrefixMatch":
            return f.type
    return None


# -- backends ------------------------------------------------------------------


class HTTPBackendRef(BackendObjectReference):
    weight: int = Field(default=1, ge=0, le=1_000_000)
    filters: list[HTTPRouteFilter] = Field(default_factory=list, max_length=16)

    @model_validator(mode="after")
    def _filters(self) -> "HTTPBackendRef":
        raise_problems(_filter_list_problems(self.filters, "filters"))
        return self


# -- rules ---------------------------------------------------------------------


class HTTPRouteTimeouts(GatewayAPISpec):
    """Seconds; 0 disables that timeout."""

    request: Duration | None = None
    backend_request: Duration | None = None

    @model_validator(mode="after")
    def _check(self) -> "HTTPRouteTimeouts":
        r, b = self.request, self.backend_request
        if r is not None and b is not None and r != 0 and b > r:
            raise SpecError(("backendRequest", "must not be longer than request"))
        return self


class HTTPRouteRule(GatewayAPISpec):
    name: SectionName | None = None
    matches: list[HTTPRouteMatch] = Field(default_factory=lambda: [DEFAULT_MATCH], max_length=64)
    filters: list[HTTPRouteFilter] = Field(default_factory=list, max_length=16)
    backend_refs: list[HTTPBackendRef] = Field(default_factory=list, max_length=16)
    timeouts: HTTPRouteTimeouts | None = None

    @model_validator(mode="after")
    def _check(self) -> "HTTPRouteRule":
        problems = _filter_list_problems(self.filters, "filters")
        if self.backend_refs and any(f.type == "RequestRedirect" for f in self.filters):
            problems.append(("filters", "RequestRedirect cannot be used together with backendRefs"))
        one_prefix = (
            len(self.matches) == 1 and self.matches[0].path.type == "PathPrefix"
        )
        where = [("filters", self.filters)] + [
            (f"backendRefs[{i}].filters", b.filters) for i, b in enumerate(self.backend_refs)
        ]
        for field, filters in where:
            type_ = _uses_replace_prefix_match(filters)
            if type_ is not None and not one_prefix:
                problems.append(
                    (field, f"{type_} with path.replacePrefixMatch needs exactly one match, of path type PathPrefix")
                )
        raise_problems(problems)
        return self


DEFAULT_RULE = HTTPRouteRule()


# -- the route -----------------------------------------------------------------


def parent_ref_problems(refs: list[ParentReference]) -> list[tuple[str, str]]:
    """The CRD's rules for several parentRefs to one parent: all with a sectionName, each a different one."""
    problems = []
    seen: dict[tuple, list[ParentReference]] = {}
    for i, ref in enumerate(refs):
        # The CRD compares namespaces as written: unset and "" are alike, the route's own is not filled in.
        same_parent = seen.setdefault((ref.group, ref.kind, ref.namespace or "", ref.name), [])
        if any((other.section_name is None) != (ref.section_name is None) for other in same_parent):
            problems.append((f"parentRefs[{i}].sectionName",
                             "must be set on every parentRef to the same parent, or on none"))
        elif any(other.section_name == ref.section_name for other in same_parent):
            what = f"sectionName {ref.section_name!r}" if ref.section_name else "no sectionName"
            problems.append((f"parentRefs[{i}]", f"a second parentRef to the same parent with {what}"))
        same_parent.append(ref)
    return problems


class HTTPRouteSpec(GatewayAPISpec):
    parent_refs: list[ParentReference] = Field(default_factory=list, max_length=32)
    hostnames: list[Hostname] = Field(default_factory=list, max_length=16)
    rules: list[HTTPRouteRule] = Field(default_factory=lambda: [DEFAULT_RULE], min_length=1, max_length=16)

    @model_validator(mode="after")
    def _check(self) -> "HTTPRouteSpec":
        problems = parent_ref_problems(self.parent_refs)
        total = sum(len(r.matches) for r in self.rules)
        if total > MAX_MATCHES:
            problems.append(("rules", f"{total} matches over all rules; at most {MAX_MATCHES} are allowed"))
        raise_problems(problems)
        return self


class HTTPRoute(BaseModel):
    """A whole HTTPRoute object: metadata as the API server keeps it, the spec strictly."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    metadata: ObjectMeta
    spec: HTTPRouteSpec
