"""GRPCRoute (gateway.networking.k8s.io/v1, standard channel) as pydantic models.

The fields, defaults and bounds are the upstream CRD's, and so are its CEL rules:

- a method match names a ``service``, a ``method``, or both; of type Exact they
  follow the protobuf grammar (``pkg.Service``, ``Method``), of type
  RegularExpression they must compile (gateway/regex.py, RE2);
- header matches are keyed by name (a name appears once);
- a rule has at most one of each filter type (RequestMirror and ExtensionRef
  may repeat); the filter types are RequestHeaderModifier,
  ResponseHeaderModifier, RequestMirror and ExtensionRef (their settings are
  HTTPRoute's: controller/gatewayapi/httproute.py);
- parentRefs follow HTTPRoute's rules; at most 128 matches over all rules.

What the matches mean on the wire (a gRPC call is ``POST /<service>/<method>``)
is the compiler's business: controller/compile/grpcroute.py.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from controller.gatewayapi.common import (
    BackendObjectReference,
    GatewayAPISpec,
    Hostname,
    LocalObjectReference,
    ParentReference,
    SectionName,
    raise_problems,
    unique,
)
from controller.gatewayapi.httproute import (
    HTTPHeaderFilter,
    HTTPHeaderMatch,
    HTTPRequestMirrorFilter,
    parent_ref_problems,
)
from controller.models import ObjectMeta, compile_regex
from gateway import regex

KIND = "GRPCRoute"

FILTER_TYPES = ("RequestHeaderModifier", "ResponseHeaderModifier", "RequestMirror", "ExtensionRef")
REPEATABLE_FILTERS = frozenset({"RequestMirror", "ExtensionRef"})
MAX_MATCHES = 128  # over all rules of a route

# The CRD's patterns for Exact matches (protobuf names).
SERVICE_NAME = re.compile(r"(?i)\.?[a-z_][a-z_0-9]*(\.[a-z_][a-z_0-9]*)*")
METHOD_NAME = re.compile(r"[A-Za-z_][A-Za-z_0-9]*")


class GRPCMethodMatch(GatewayAPISpec):
    type: Literal["Exact", "RegularExpression"] = "Exact"
    service: str | None = Field(default=None, max_length=1024)
    method: str | None = Field(default=None, max_length=1024)

    @model_validator(mode="after")
    def _check(self) -> "GRPCMethodMatch":
        problems = []
        if not self.service and not self.method:
            problems.append(("", "one or both of service or method must be set"))
        for field, value, pattern in (("service", self.service, SERVICE_NAME), ("method", self.method, METHOD_NAME)):
            if value is None:
                continue
            if self.type == "Exact":
                if not pattern.fullmatch(value):
                    problems.append((field, f"{value!r} is not a valid gRPC {field} name for an Exact match"))
            else:
                try:
                    compile_regex(value)
                except regex.RegexError as e:
                    problems.append((field, f"invalid regular expression: {e}"))
        raise_problems(problems)
        return self


class GRPCRouteMatch(GatewayAPISpec):
    """Every condition given must hold (the matches of a rule are ORed)."""

    method: GRPCMethodMatch | None = None
    headers: list[HTTPHeaderMatch] = Field(default_factory=list, max_length=16)

    @model_validator(mode="after")
    def _check(self) -> "GRPCRouteMatch":
        raise_problems(unique(self.headers, lambda h: h.name, "headers", "header name"))
        return self


DEFAULT_MATCH = GRPCRouteMatch()

FILTER_FIELDS = {
    "RequestHeaderModifier": "requestHeaderModifier",
    "ResponseHeaderModifier": "responseHeaderModifier",
    "RequestMirror": "requestMirror",
    "ExtensionRef": "extensionRef",
}


class GRPCRouteFilter(GatewayAPISpec):
    """One filter: ``type`` and the one field of that type's settings."""

    type: Literal[FILTER_TYPES]  # type: ignore[valid-type]
    request_header_modifier: HTTPHeaderFilter | None = None
    response_header_modifier: HTTPHeaderFilter | None = None
    request_mirror: HTTPRequestMirrorFilter | None = None
    extension_ref: LocalObjectReference | None = None

    @model_validator(mode="after")
    def _check(self) -> "GRPCRouteFilter":
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
            "ExtensionRef": self.extension_ref,
        }[type_]


def filter_list_problems(filters: list[GRPCRouteFilter], field: str) -> list[tuple[str, str]]:
    counts = Counter(f.type for f in filters)
    return [
        (field, f"{type_} may appear only once, not {n} times")
        for type_, n in sorted(counts.items())
        if n > 1 and type_ not in REPEATABLE_FILTERS
    ]


class GRPCBackendRef(BackendObjectReference):
    weight: int = Field(default=1, ge=0, le=1_000_000)
    filters: list[GRPCRouteFilter] = Field(default_factory=list, max_length=16)

    @model_validator(mode="after")
    def _filters(self) -> "GRPCBackendRef":
        raise_problems(filter_list_problems(self.filters, "filters"))
        return self


class GRPCRouteRule(GatewayAPISpec):
    name: SectionName | None = None
    matches: list[GRPCRouteMatch] = Field(default_factory=lambda: [DEFAULT_MATCH], max_length=8)
    filters: list[GRPCRouteFilter] = Field(default_factory=list, max_length=16)
    backend_refs: list[GRPCBackendRef] = Field(default_factory=list, max_length=16)

    @model_validator(mode="after")
    def _check(self) -> "GRPCRouteRule":
        raise_problems(filter_list_problems(self.filters, "filters"))
        return self


DEFAULT_RULE = GRPCRouteRule()


class GRPCRouteSpec(GatewayAPISpec):
    parent_refs: list[ParentReference] = Field(default_factory=list, max_length=32)
    hostnames: list[Hostname] = Field(default_factory=list, max_length=16)
    rules: list[GRPCRouteRule] = Field(default_factory=lambda: [DEFAULT_RULE], max_length=16)

    @model_validator(mode="after")
    def _check(self) -> "GRPCRouteSpec":
        problems = parent_ref_problems(self.parent_refs)
        total = sum(len(r.matches) for r in self.rules)
        if total > MAX_MATCHES:
            problems.append(("rules", f"{total} matches over all rules; at most {MAX_MATCHES} are allowed"))
        raise_problems(problems)
        return self


class GRPCRoute(BaseModel):
    """A whole GRPCRoute object: metadata as the API server keeps it, the spec strictly."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    metadata: ObjectMeta
    spec: GRPCRouteSpec
