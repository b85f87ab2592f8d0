"""Pydantic models of the resources the compiler reads.

``APIEndpointSpec`` is the user-facing contract of the README's APIEndpoint
reference: strict (unknown fields and wrong types are errors naming the field)
and cross-checked (``redirect`` vs backends, ``method`` vs ``methods`` ...).
The Kubernetes kinds (Ingress, Service, EndpointSlice, IngressClass) are
lenient: the API server has validated them already and adds fields over time,
so unknown fields are ignored and only what routing needs is modelled.

The compiler (controller/compile/) validates each object here and turns a
ValidationError into messages with ``describe_errors`` ("spec.backends[0].weight: ...").
Nothing here knows about the routing table.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from controller import fieldnames
from controller.durations import parse_duration
from gateway import regex, syntax
from gateway.errors import SpecError
from gateway.ratelimit import MAX_RATE_VALUE
from gateway.regex import Regex

# -- errors --------------------------------------------------------------------


def _loc_text(parts) -> str:
    out = ""
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        elif p:
            out += f".{p}" if out else str(p)
    return out


def describe_errors(exc: ValidationError, prefix: str = "spec", model: type[BaseModel] | None = None) -> list[str]:
    """Pydantic errors as "spec.backends[0].weight: Input should be ..." strings.

    ``model``: the model validated, for "did you mean" on unknown fields; by
    default the one of this module that ``exc`` names."""
    out: list[str] = []
    for err in exc.errors(include_url=False):
        loc = ([prefix] if prefix else []) + list(err["loc"])
        cause = (err.get("ctx") or {}).get("error")
        if isinstance(cause, SpecError):
            for field, message in cause.problems:
                out.append(f"{_loc_text(loc + field.split('.') if field else loc)}: {message}")
            continue
        if err["type"] == "extra_forbidden":
            message = "unknown field"
            # exc.title names the model validated (e.g. APIEndpointSpec), defined in this module.
            known = fieldnames.suggestion(model or globals().get(exc.title), err["loc"])
            if known is not None:
                message += f"; did you mean `{known}`?"
        elif err["type"] == "missing":
            message = "required field is missing"
        elif isinstance(cause, ValueError):
            message = str(cause)
        else:
            message = err["msg"]
        out.append(f"{_loc_text(loc) or prefix}: {message}")
    return out


# -- shared field types --------------------------------------------------------

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_HOSTNAME = re.compile(r"(\*\.)?[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*")
_ORIGIN = re.compile(r"\*|[a-zA-Z][a-zA-Z0-9+.-]*://(\*\.)?[^\s/?#*]+")


@lru_cache(maxsize=8192)
def compile_regex(pattern: str) -> Regex:
    """Compiled once per distinct pattern, here and in the compiler (RE2: gateway/regex.py)."""
    return regex.compile(pattern)


def valid_hostname(host: str) -> bool:
    """A lower-case DNS name, optionally with a leading '*.' wildcard label."""
    return len(host) <= 253 and _HOSTNAME.fullmatch(host) is not None


def _token(v: str) -> str:
    if not _TOKEN.fullmatch(v):
        raise ValueError(f"{v!r} is not a valid HTTP token (letters, digits and !#$%&'*+-.^_`|~)")
    return v


def _header_value(v: str) -> str:
    if not syntax.valid_field_value(v):
        raise ValueError("header values must not contain CR, LF or NUL")
    return v


def _head_path(v: str) -> str:
    """A path the gateway writes into a request line or a Location (gateway/syntax.py)."""
    problem = syntax.path_problem(v)
    if problem is not None:
        raise ValueError(problem)
    return v


def _head_hostname(v: str) -> str:
    """A host name the gateway writes into Host or Location: RFC 1123, any case, no wildcard."""
    if not syntax.valid_hostname(v.lower()):
        raise ValueError(f"{v!r} is not a valid host name (RFC 1123: letters, digits, '-' and '.'; no port)")
    return v


def _duration(v: Any) -> float:
    if not isinstance(v, str):
        return parse_duration(v)  # raises with a message saying what to write
    return _cached_duration(v)


@lru_cache(maxsize=1024)
def _cached_duration(v: str) -> float:
    return parse_duration(v)


def _port_ref(v: Any) -> int | str:
    # A port is a number or an IANA-style port name; bool is an int in Python, refuse it.
    if isinstance(v, int) and not isinstance(v, bool):
        if not 1 <= v <= 65535:
            raise ValueError(f"port {v} is out of range 1-65535")
        return v
    if isinstance(v, str) and v:
        if v.isdigit():
            raise ValueError(f"port {v!r} is a string; write the number without quotes")
        if not _DNS_LABEL.fullmatch(v) or len(v) > 15:
            raise ValueError(f"port name {v!r} is not a valid port name (lower-case letters, digits, '-', at most 15)")
        return v
    raise ValueError(f"port must be a number or a port name, got {v!r}")


def _none_to_list(v: Any) -> Any:
    return [] if v is None else v


def _none_to_dict(v: Any) -> Any:
    return {} if v is None else v


Token = Annotated[str, PlainValidator(lambda v: _token(_expect_str(v)))]
HeaderValueStr = Annotated[str, PlainValidator(lambda v: _header_value(_expect_str(v)))]
HeadPath = Annotated[str, PlainValidator(lambda v: _head_path(_expect_str(v)))]
HeadHostname = Annotated[str, PlainValidator(lambda v: _head_hostname(_expect_str(v)))]
Duration = Annotated[float, PlainValidator(_duration)]
PortRef = Annotated[int | str, PlainValidator(_port_ref)]
Port = Annotated[int, Field(ge=1, le=65535)]


def _expect_str(v: Any) -> str:
    if not isinstance(v, str):
        raise ValueError(f"expected a string, got {type(v).__name__}")
    return v


def _dns_label(v: str, what: str) -> str:
    if len(v) > 63 or not _DNS_LABEL.fullmatch(v):
        raise ValueError(f"{what} {v!r} is not a valid DNS label (lower-case letters, digits and '-', at most 63)")
    return v


@lru_cache(maxsize=4096)
def _http_url(v: str) -> str:
    if re.search(r"[\x00-\x20\x7f]", v):
        # urlsplit would quietly drop a CR, LF or TAB; the host goes into the Host header.
        raise ValueError(f"URL {v!r} must not contain spaces or control characters")
    try:
        u = urlsplit(v)
        u.port  # noqa: B018 - raises ValueError for a port that is not a number in range
    except ValueError as e:
        raise ValueError(f"invalid URL {v!r}: {e}") from None
    if u.scheme not in ("http", "https"):
        raise ValueError(f"URL {v!r} must start with http:// or https://")
    if not u.hostname:
        raise ValueError(f"URL {v!r} has no host")
    if u.username is not None or u.password is not None:
        raise ValueError("URL must not carry credentials; use auth with a secretRef")
    if u.path not in ("", "/") or u.query or u.fragment:
        raise ValueError(f"URL {v!r} must be scheme://host[:port] only (no path, query or fragment)")
    return v


# -- APIEndpoint spec (strict) -------------------------------------------------


class _Spec(BaseModel):
    model_config = ConfigDict(
        extra="forbid", frozen=True, strict=True, alias_generator=to_camel, populate_by_name=False
    )


class StringMatchSpec(_Spec):
    """A header or query-parameter match."""

    name: str
    value: str
    type: Literal["Exact", "RegularExpression"] = "Exact"

    @model_validator(mode="after")
    def _check(self) -> "StringMatchSpec":
        if not self.name:
            raise SpecError(("name", "must not be empty"))
        if self.type == "RegularExpression":
            try:
                compile_regex(self.value)
            except regex.RegexError as e:
                raise SpecError(("value", f"invalid regular expression: {e}")) from None
        return self


class HeaderMatchSpec(StringMatchSpec):
    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return _token(v)


class ServiceRefSpec(_Spec):
    name: str
    namespace: str | None = None
    port: PortRef | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return _dns_label(v, "Service name")

    @field_validator("namespace")
    @classmethod
    def _ns(cls, v: str | None) -> str | None:
        return None if v is None else _dns_label(v, "namespace")


class BackendTargetSpec(_Spec):
    """Where traffic goes: a Service port, or a plain URL."""

    service: ServiceRefSpec | None = None
    url: str | None = None

    @field_validator("url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        return None if v is None else _http_url(v)

    @model_validator(mode="after")
    def _one_target(self) -> "BackendTargetSpec":
        if (self.service is None) == (self.url is None):
            raise SpecError(("", "set exactly one of service or url"))
        return self


class BackendSpec(BackendTargetSpec):
    weight: int = Field(default=1, ge=0, le=1_000_000)
    # The protocol spoken to a url backend: HTTP/2 is h2c with prior knowledge
    # for http://, ALPN (h2, else http/1.1) for https://. A Service backend's
    # protocol is its port's appProtocol (``http2_app_protocol``).
    protocol: Literal["HTTP/1.1", "HTTP/2"] | None = None

    @model_validator(mode="after")
    def _protocol_for_url(self) -> "BackendSpec":
        if self.protocol is not None and self.url is None:
            raise SpecError(("protocol", "only for a url backend; a Service backend follows its port's appProtocol"))
        return self


class PathModifierSpec(_Spec):
    type: Literal["ReplacePrefixMatch", "ReplaceFullPath"]
    # Written into the upstream request line or a Location: RFC 3986 only (gateway/syntax.py).
    replace_prefix_match: HeadPath | None = None
    replace_full_path: HeadPath | None = None

    @model_validator(mode="after")
    def _check(self) -> "PathModifierSpec":
        wanted, other = (
            ("replacePrefixMatch", "replaceFullPath")
            if self.type == "ReplacePrefixMatch"
            else ("replaceFullPath", "replacePrefixMatch")
        )
        values = {"replacePrefixMatch": self.replace_prefix_match, "replaceFullPath": self.replace_full_path}
        problems = []
        if values[wanted] is None:
            problems.append((wanted, f"required when type is {self.type}"))
        if values[other] is not None:
            problems.append((other, f"not allowed when type is {self.type}"))
        if problems:
            raise SpecError(*problems)
        return self


class RewriteSpec(_Spec):
    hostname: HeadHostname | None = None  # the upstream request's Host
    path: PathModifierSpec | None = None

    @model_validator(mode="after")
    def _check(self) -> "RewriteSpec":
        if self.hostname is None and self.path is None:
            raise SpecError(("", "set hostname, path, or both"))
        return self


class HeaderValueSpec(_Spec):
    name: Token
    value: HeaderValueStr


class HeaderModifierSpec(_Spec):
    set: list[HeaderValueSpec] = Field(default_factory=list)
    add: list[HeaderValueSpec] = Field(default_factory=list)
    remove: list[Token] = Field(default_factory=list)


class RedirectSpec(_Spec):
    """Gateway API's RequestRedirect: every field is optional, and what is not set
    is the request's own (``{statusCode: 303}`` alone redirects to the same URL)."""

    scheme: Literal["http", "https"] | None = None
    hostname: HeadHostname | None = None  # written into Location
    port: Port | None = None
    path: PathModifierSpec | None = None
    status_code: Literal[301, 302, 303, 307, 308] = 302


class TimeoutsSpec(_Spec):
    request: Duration | None = None
    backend_request: Duration | None = None

    @model_validator(mode="after")
    def _check(self) -> "TimeoutsSpec":
        r, b = self.request, self.backend_request
        if r and b and b > r:
            raise SpecError(("backendRequest", "must not be longer than request"))
        return self


class RetriesSpec(_Spec):
    attempts: int = Field(default=1, ge=1, le=10)
    status_codes: list[Annotated[int, Field(ge=400, le=599)]] | None = None
    on_connect_failure: bool = True
    backoff: Duration | None = None
    non_idempotent: bool = False


class SecretRefSpec(_Spec):
    name: str
    namespace: str | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not v or len(v) > 253 or not re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", v):
            raise ValueError(f"Secret name {v!r} is not a valid object name")
        return v

    @field_validator("namespace")
    @classmethod
    def _ns(cls, v: str | None) -> str | None:
        return None if v is None else _dns_label(v, "namespace")


JWT_ALGORITHMS = (
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
    "ES256", "ES384", "ES512", "EdDSA", "HS256", "HS384", "HS512",
)  # fmt: skip


def _audiences(v: Any) -> list[str]:
    # One audience may be written as a plain string, as the JWT "aud" claim itself allows.
    if isinstance(v, str) and v:
        return [v]
    if isinstance(v, list) and all(isinstance(x, str) and x for x in v):
        return list(v)
    raise ValueError("audiences must be a list of strings")


def _leeway(v: Any) -> float:
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        seconds = float(v)
    else:
        seconds = _duration(v)
    if not 0 <= seconds <= 3600:
        raise ValueError("leeway must be between 0s and 1h")
    return seconds


# Headers that frame or route the request: never a credentials header (it is
# stripped before forwarding) nor one an authenticator sets.
FRAMING_HEADERS = frozenset(
    {"host", "content-length", "transfer-encoding", "connection", "keep-alive", "te", "trailer", "upgrade", "expect", "proxy-connection"}
)
# Headers an authenticator may not set upstream: the above, credentials, and
# the forwarding headers the proxy itself owns.
RESERVED_HEADERS = FRAMING_HEADERS | frozenset(
    {"proxy-authorization", "authorization", "cookie", "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "forwarded"}
)


def _not_reserved(v: str | None, reserved: frozenset[str]) -> str | None:
    if v is not None and v.lower() in reserved:
        raise ValueError(f"{v} is reserved")
    return v


def _names(v: Any) -> list[str]:
    if not isinstance(v, list) or not all(isinstance(x, str) and x for x in v):
        raise ValueError("expected a list of strings")
    return v


def _name(v: Any) -> str:
    if not isinstance(v, str) or not v:
        raise ValueError("expected a non-empty string")
    return v


NonEmptyStr = Annotated[str, PlainValidator(_name)]
Names = Annotated[list[str], PlainValidator(_names)]


class JWTSpec(_Spec):
    issuer: NonEmptyStr | None = None
    audiences: Annotated[list[str], PlainValidator(_audiences)] | None = None
    jwks_url: str | None = Field(default=None, alias="jwksURL")
    leeway: Annotated[float, PlainValidator(_leeway)] | None = None
    required_claims: Names | None = None
    forward_claims: dict[NonEmptyStr, Token] | None = None  # claim -> the header it is forwarded in
    algorithms: list[Literal[JWT_ALGORITHMS]] | None = None  # type: ignore[valid-type]
    consumer_claim: NonEmptyStr | None = None

    @field_validator("jwks_url")
    @classmethod
    def _jwks(cls, v: str | None) -> str | None:
        if v is None:
            return v
        u = urlsplit(v)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise ValueError(f"jwksURL {v!r} must be an http(s) URL")
        return v

    @field_validator("algorithms")
    @classmethod
    def _algorithms(cls, v: list[str] | None) -> list[str] | None:
        return None if v is None else sorted(set(v))  # normalised: the authenticator's memo key

    @model_validator(mode="after")
    def _check(self) -> "JWTSpec":
        bad = [(f"forwardClaims.{c}", f"{h} is reserved") for c, h in sorted((self.forward_claims or {}).items())
               if h.lower() in RESERVED_HEADERS]  # fmt: skip
        if bad:
            raise SpecError(*bad)
        return self


class AuthSpec(_Spec):
    """``auth``: the one validator of authentication settings, whether written as
    an APIEndpoint field, as an Ingress's ``crdgate.io/auth-*`` annotations or as
    a namespace default (controller/authbuild.py shapes those into this model
    first). controller/authbuild.py builds the authenticator from the result."""

    type: Literal["APIKey", "Basic", "JWT"]
    secret_ref: SecretRefSpec | None = None
    header: Token | None = None  # APIKey: X-API-Key; JWT: Authorization
    query_param: str | None = None
    allowed_consumers: Names | None = None
    keep_credentials: bool = False
    consumer_header: Token | None = None
    jwt: JWTSpec | None = None

    @field_validator("header")
    @classmethod
    def _header(cls, v: str | None) -> str | None:
        return _not_reserved(v, FRAMING_HEADERS)  # read from the request, then stripped

    @field_validator("consumer_header")
    @classmethod
    def _consumer_header(cls, v: str | None) -> str | None:
        return _not_reserved(v, RESERVED_HEADERS)  # set upstream by the gateway

    @field_validator("query_param")
    @classmethod
    def _query_param(cls, v: str | None) -> str | None:
        if v is not None and (not v or any(c in v for c in "&=# ")):
            raise ValueError("expected a parameter name")
        return v

    @field_validator("allowed_consumers")
    @classmethod
    def _consumers(cls, v: list[str] | None) -> list[str] | None:
        return sorted(set(v)) if v else None  # normalised: order and repeats mean nothing

    @model_validator(mode="after")
    def _check(self) -> "AuthSpec":
        p: list[tuple[str, str]] = []
        if self.jwt is not None and self.type != "JWT":
            p.append(("jwt", f"only allowed with type JWT, not {self.type}"))
        if self.secret_ref is None and not (self.jwt is not None and self.jwt.jwks_url and self.type == "JWT"):
            p.append(("secretRef", "required" + (" (or jwt.jwksURL)" if self.type == "JWT" else "")))
        if self.type == "Basic":
            if self.header is not None:
                p.append(("header", "only for types APIKey and JWT (Basic uses Authorization)"))
            if self.query_param is not None:
                p.append(("queryParam", "only for types APIKey and JWT"))
        if p:
            raise SpecError(*p)
        return self


class RateLimitSpec(_Spec):
    # Bounds as in the CRD's schema, which the file source does not have in front of it.
    requests_per_minute: int = Field(ge=1, le=MAX_RATE_VALUE)
    burst: int = Field(default=0, ge=0, le=MAX_RATE_VALUE)
    key: Literal["ClientAddress", "Consumer", "Header", "Route"] = "ClientAddress"
    key_header: Token | None = None
    scope: Literal["Local", "Global"] = "Local"

    @model_validator(mode="after")
    def _check(self) -> "RateLimitSpec":
        if self.key == "Header" and self.key_header is None:
            raise SpecError(("keyHeader", "required when key is Header"))
        if self.key != "Header" and self.key_header is not None:
            raise SpecError(("keyHeader", f"only allowed when key is Header, not {self.key}"))
        return self


class CorsSpec(_Spec):
    allow_origins: list[str] = Field(min_length=1)
    allow_methods: list[Token] = Field(default_factory=list)
    allow_headers: list[Token] = Field(default_factory=list)
    expose_headers: list[Token] = Field(default_factory=list)
    allow_credentials: bool = False
    max_age: int | None = Field(default=None, ge=0)

    @field_validator("allow_origins")
    @classmethod
    def _origins(cls, v: list[str]) -> list[str]:
        for o in v:
            if not _ORIGIN.fullmatch(o):
                raise ValueError(f"{o!r} is not '*' or an origin like https://app.example.com")
        return v

    @model_validator(mode="after")
    def _check(self) -> "CorsSpec":
        if self.allow_credentials and "*" in self.allow_origins:
            # Browsers refuse credentialed responses with a '*' origin.
            raise SpecError(("allowCredentials", "cannot be used with allowOrigins '*'; list the origins"))
        return self


class MirrorSpec(_Spec):
    backend: BackendSpec  # a weight is accepted (the CRD shares the backend schema) and means nothing here
    percent: float = Field(default=100.0, ge=0, le=100)


class TLSSpec(_Spec):
    """The kubernetes.io/tls Secret (route's namespace) served for the route's hosts (controller/certs.py)."""

    secret_name: str


_BAD_SEGMENT = re.compile(r"//|/\./|/\.\./|/\.{1,2}$")
_MATCH_PATH_BAD = re.compile(r"[\x00-\x20\x7f]")


def dot_segment_problem(path: str) -> str | None:
    """Why a path to match holds a segment no request can have; None if it has none.

    Requests are normalised before matching (gateway/normalize.py), so a path with
    an empty, '.' or '..' segment could never match (Gateway API's CRD refuses them too)."""
    if _BAD_SEGMENT.search(path):
        return "must not contain empty, '.' or '..' segments"
    return None


class APIEndpointSpec(_Spec):
    """The ``spec`` of an APIEndpoint (README: APIEndpoint reference)."""

    ingress_class_name: str | None = None
    hosts: list[str] = Field(default_factory=list)
    path: str
    path_type: Literal["Exact", "Prefix", "RegularExpression"] = "Prefix"
    method: Token | None = None
    methods: list[Token] | None = None
    headers: list[HeaderMatchSpec] = Field(default_factory=list)
    query_params: list[StringMatchSpec] = Field(default_factory=list)
    backend_service: str | None = None
    backends: list[BackendSpec] | None = None
    load_balancer: Literal["RoundRobin", "LeastRequest"] = "RoundRobin"
    rewrite: RewriteSpec | None = None
    request_headers: HeaderModifierSpec | None = None
    response_headers: HeaderModifierSpec | None = None
    redirect: RedirectSpec | None = None
    timeouts: TimeoutsSpec | None = None
    retries: RetriesSpec | None = None
    auth_required: bool = False
    auth: AuthSpec | None = None
    rate_limit: RateLimitSpec | None = None
    cors: CorsSpec | None = None
    max_body_bytes: int | None = Field(default=None, ge=0)
    mirror: MirrorSpec | None = None
    tls: TLSSpec | None = None
    https_redirect: bool = False  # plain HTTP requests get 301 (GET/HEAD) or 308 to https://

    @field_validator("hosts")
    @classmethod
    def _hosts(cls, v: list[str]) -> list[str]:
        for h in v:
            if not valid_hostname(h.lower()):
                raise ValueError(f"{h!r} is not a host name or a '*.suffix' wildcard (no port)")
        return v

    @field_validator("backend_service")
    @classmethod
    def _svc(cls, v: str | None) -> str | None:
        return None if v is None else _dns_label(v, "Service name")

    @model_validator(mode="after")
    def _cross_field(self) -> "APIEndpointSpec":
        p: list[tuple[str, str]] = []
        if self.method is not None and self.methods is not None:
            p.append(("methods", "set either method or methods, not both"))
        if self.methods is not None and not self.methods:
            p.append(("methods", "must not be empty; leave it out to match any method"))
        if self.path_type == "RegularExpression":
            try:
                compile_regex(self.path)
            except regex.RegexError as e:
                p.append(("path", f"invalid regular expression: {e}"))
        else:
            if not self.path.startswith("/"):
                p.append(("path", f"must start with '/' for pathType {self.path_type}"))
            elif "?" in self.path or "#" in self.path:
                p.append(("path", "must not contain '?' or '#'; match query parameters with queryParams"))
            elif bad := _MATCH_PATH_BAD.search(self.path):
                # A request path never holds them (the parser refuses them), so such a path
                # could never match; the CRD refuses them too.
                p.append(("path", f"must not contain {bad.group()!r}: spaces and control characters are not allowed"))
            elif problem := dot_segment_problem(self.path):
                p.append(("path", problem))
        has_backends = self.backends is not None
        has_service = self.backend_service is not None
        if self.redirect is not None:
            if has_service:
                p.append(("redirect", "cannot be combined with backendService"))
            if has_backends:
                p.append(("redirect", "cannot be combined with backends"))
            if self.rewrite is not None:
                p.append(("redirect", "cannot be combined with rewrite"))
            if self.mirror is not None:
                p.append(("mirror", "cannot be combined with redirect (nothing is proxied)"))
        elif has_service and has_backends:
            p.append(("backends", "set either backendService or backends, not both"))
        elif not has_service and not has_backends:
            p.append(("backendService", "set backendService, backends or redirect"))
        if self.backends is not None and not self.backends:
            p.append(("backends", "must not be empty"))
        prefix_only = (
            ("rewrite.path.replacePrefixMatch", self.rewrite and self.rewrite.path),
            ("redirect.path.replacePrefixMatch", self.redirect and self.redirect.path),
        )
        for field, mod in prefix_only:
            if mod and mod.type == "ReplacePrefixMatch" and self.path_type != "Prefix":
                p.append((field, f"ReplacePrefixMatch needs pathType Prefix, not {self.path_type}"))
        if self.rate_limit is not None and self.rate_limit.key == "Consumer":
            if self.auth is None and not self.auth_required:
                p.append(("rateLimit.key", "Consumer needs auth (or authRequired) to know the consumer"))
        if p:
            raise SpecError(*p)
        return self

    @property
    def method_set(self) -> frozenset[str] | None:
        """The methods matched, upper-case; None = any."""
        if self.method is not None:
            return frozenset((self.method.upper(),))
        if self.methods:
            return frozenset(m.upper() for m in self.methods)
        return None


# -- Kubernetes kinds (lenient) ------------------------------------------------


class _K8s(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, alias_generator=to_camel, populate_by_name=False)


NullableList = BeforeValidator(_none_to_list)
NullableDict = BeforeValidator(_none_to_dict)


class ObjectMeta(_K8s):
    name: str
    namespace: str | None = None
    generation: int | None = None
    creation_timestamp: str | None = None
    labels: Annotated[dict[str, str], NullableDict] = Field(default_factory=dict)
    annotations: Annotated[dict[str, str], NullableDict] = Field(default_factory=dict)

    @field_validator("creation_timestamp", mode="before")
    @classmethod
    def _ts(cls, v: Any) -> Any:
        # The client library may hand over a datetime; the compiler compares strings.
        if v is not None and hasattr(v, "isoformat"):
            return v.isoformat().replace("+00:00", "Z")
        return v


class ServiceBackendPort(_K8s):
    number: Port | None = None
    name: str | None = None


class IngressServiceBackend(_K8s):
    name: str
    port: ServiceBackendPort | None = None


class TypedObjectReference(_K8s):
    api_group: str | None = None
    kind: str
    name: str


class IngressBackend(_K8s):
    service: IngressServiceBackend | None = None
    resource: TypedObjectReference | None = None


class HTTPIngressPath(_K8s):
    path: str | None = None
    path_type: Literal["Exact", "Prefix", "ImplementationSpecific"]
    backend: IngressBackend


class HTTPIngressRuleValue(_K8s):
    paths: Annotated[list[HTTPIngressPath], NullableList] = Field(default_factory=list)


class IngressRule(_K8s):
    host: str | None = None
    http: HTTPIngressRuleValue | None = None


class IngressTLS(_K8s):
    hosts: Annotated[list[str], NullableList] = Field(default_factory=list)
    secret_name: str | None = None


class IngressSpec(_K8s):
    ingress_class_name: str | None = None
    default_backend: IngressBackend | None = None
    rules: Annotated[list[IngressRule], NullableList] = Field(default_factory=list)
    tls: Annotated[list[IngressTLS], NullableList] = Field(default_factory=list)


class Ingress(_K8s):
    metadata: ObjectMeta
    spec: IngressSpec = IngressSpec()


class ServicePort(_K8s):
    name: str | None = None
    port: Port
    target_port: int | str | None = None
    protocol: str = "TCP"
    app_protocol: str | None = None


# Service port appProtocol values that mean cleartext HTTP/2 with prior knowledge:
# Kubernetes' and Gateway API's standard name (GEP-1911), and the bare names
# service meshes (Istio, Linkerd) already use for it.
HTTP2_APP_PROTOCOLS = frozenset({"kubernetes.io/h2c", "h2c", "http2", "grpc"})


def http2_app_protocol(app_protocol: str | None) -> bool:
    return app_protocol is not None and app_protocol.lower() in HTTP2_APP_PROTOCOLS


class ServiceSpec(_K8s):
    type: str = "ClusterIP"
    ports: Annotated[list[ServicePort], NullableList] = Field(default_factory=list)
    external_name: str | None = None


class Service(_K8s):
    metadata: ObjectMeta
    spec: ServiceSpec = ServiceSpec()


class EndpointConditions(_K8s):
    ready: bool | None = None
    serving: bool | None = None
    terminating: bool | None = None


class SliceEndpoint(_K8s):
    addresses: Annotated[list[str], NullableList] = Field(default_factory=list)
    conditions: EndpointConditions | None = None


class EndpointPort(_K8s):
    name: str | None = None
    port: int | None = None
    protocol: str | None = None


SERVICE_NAME_LABEL = "kubernetes.io/service-name"


class EndpointSlice(_K8s):
    metadata: ObjectMeta
    address_type: str = "IPv4"
    endpoints: Annotated[list[SliceEndpoint], NullableList] = Field(default_factory=list)
    ports: Annotated[list[EndpointPort], NullableList] = Field(default_factory=list)

    @property
    def service_name(self) -> str | None:
        return self.metadata.labels.get(SERVICE_NAME_LABEL)


DEFAULT_CLASS_ANNOTATION = "ingressclass.kubernetes.io/is-default-class"
LEGACY_CLASS_ANNOTATION = "kubernetes.io/ingress.class"


class IngressClassSpec(_K8s):
    controller: str | None = None


class IngressClass(_K8s):
    metadata: ObjectMeta
    spec: IngressClassSpec = IngressClassSpec()

    @property
    def is_default(self) -> bool:
        return self.metadata.annotations.get(DEFAULT_CLASS_ANNOTATION, "").lower() == "true"
