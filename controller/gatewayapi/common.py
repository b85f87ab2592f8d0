"""Field types and references shared by the Gateway API models (standard channel, v1).

Each type checks what the upstream CRD's OpenAPI schema and CEL rules check, so
that an object the API server accepts is accepted here and one it refuses gets
an error naming the field (the manifests folder has no API server in front of
it). The grammar of what crdgate writes into a message head (paths, host names,
header values) is not restated here: it comes from gateway/syntax.py through
controller/models.py, the one place it is defined. Where that grammar is
narrower than the CRD (a CR or LF in a header value, a path that is not RFC
3986), the object is refused: the gateway would never write those bytes.

Models are strict, as the APIEndpoint spec is: unknown fields and wrong types
are errors, defaults are the CRD's. Neighbours: controller/gatewayapi/httproute.py
and gateway.py build on these; controller/refgrant.py checks the references.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PlainValidator, model_validator
from pydantic.alias_generators import to_camel

from controller.durations import parse_duration
from controller.models import (
    HeaderValueStr,
    Port,
    SpecError,
    Token,
    valid_hostname,
)
from gateway import syntax

GROUP = "gateway.networking.k8s.io"
CORE_GROUP = ""  # Service and Secret: Gateway API spells the core group ""

_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_KIND = re.compile(r"[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?")
# GEP-2257 durations as the CRD writes them: 1 to 4 parts of at most 5 digits, no decimals.
_DURATION = re.compile(r"([0-9]{1,5}(h|m|s|ms)){1,4}")


class GatewayAPISpec(BaseModel):
    """Base of every spec model: strict, camelCase field names, frozen."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, strict=True, alias_generator=to_camel, populate_by_name=False
    )


# -- field types ---------------------------------------------------------------


def _string(v: Any) -> str:
    if not isinstance(v, str):
        raise ValueError(f"expected a string, got {type(v).__name__}")
    return v


def checked(check: Callable[[str], str | None]) -> PlainValidator:
    """A string validator from ``check`` (the problem with a value, or None)."""

    def validate(v: Any) -> str:
        problem = check(_string(v))
        if problem is not None:
            raise ValueError(problem)
        return v

    return PlainValidator(validate)


def _length(lo: int, hi: int) -> AfterValidator:
    def validate(v: str) -> str:
        if len(v) < lo:
            raise ValueError("must not be empty" if lo == 1 else f"must be at least {lo} characters")
        if len(v) > hi:
            raise ValueError(f"must be at most {hi} characters, not {len(v)}")
        return v

    return AfterValidator(validate)


def _group_problem(v: str) -> str | None:
    if v and (len(v) > 253 or not _DNS_SUBDOMAIN.fullmatch(v)):
        return f"{v!r} is not an API group (a DNS subdomain, or \"\" for the core group)"
    return None


def _kind_problem(v: str) -> str | None:
    if not 1 <= len(v) <= 63 or not _KIND.fullmatch(v):
        return f"{v!r} is not a kind (letters, digits and '-', starting with a letter, at most 63)"
    return None


def _object_name_problem(v: str) -> str | None:
    if not 1 <= len(v) <= 253:
        return "must be 1 to 253 characters"
    return None


def _namespace_problem(v: str) -> str | None:
    if len(v) > 63 or not _DNS_LABEL.fullmatch(v):
        return f"{v!r} is not a namespace name (lower-case letters, digits and '-', at most 63)"
    return None


def _section_name_problem(v: str) -> str | None:
    if len(v) > 253 or not _DNS_SUBDOMAIN.fullmatch(v):
        return f"{v!r} is not a valid name (lower-case letters, digits, '-' and '.', at most 253)"
    return None


def _hostname_problem(v: str) -> str | None:
    if not valid_hostname(v):
        return f"{v!r} is not a host name or a '*.suffix' wildcard (lower case, no port)"
    return None


def _precise_hostname_problem(v: str) -> str | None:
    if not syntax.valid_hostname(v):
        return f"{v!r} is not a host name (lower-case RFC 1123: letters, digits, '-' and '.'; no wildcard, no port)"
    return None


def _duration(v: Any) -> float:
    text = _string(v)
    if not _DURATION.fullmatch(text):
        raise ValueError(
            f"invalid duration {text!r}: 1 to 4 parts of a whole number (at most 5 digits) and a unit "
            "h, m, s or ms, e.g. '500ms', '10s', '1m30s'"
        )
    return parse_duration(text)


Group = Annotated[str, checked(_group_problem)]
Kind = Annotated[str, checked(_kind_problem)]
ObjectName = Annotated[str, checked(_object_name_problem)]
Namespace = Annotated[str, checked(_namespace_problem)]
SectionName = Annotated[str, checked(_section_name_problem)]
Hostname = Annotated[str, checked(_hostname_problem)]  # may start with '*.'
PreciseHostname = Annotated[str, checked(_precise_hostname_problem)]  # written into Host / Location
PortNumber = Port
HeaderName = Annotated[Token, _length(1, 256)]
HeaderValue = Annotated[HeaderValueStr, _length(1, 4096)]
Duration = Annotated[float, PlainValidator(_duration)]  # seconds; 0 means "no timeout"


def bounded(lo: int, hi: int) -> AfterValidator:
    """A string length check with the CRD's bounds, for plain strings."""
    return _length(lo, hi)


def unique(items: Iterable[Any], key: Callable[[Any], Any], field: str, what: str) -> list[tuple[str, str]]:
    """Problems for the items of a list that repeat a key (a CRD list-map or list-set)."""
    seen: set = set()
    problems = []
    for i, item in enumerate(items):
        k = key(item)
        if k in seen:
            problems.append((f"{field}[{i}]", f"duplicate {what} {k!r}: each must be unique"))
        seen.add(k)
    return problems


def raise_problems(problems: list[tuple[str, str]]) -> None:
    if problems:
        raise SpecError(*problems)


# -- references ------------------------------------------------------------------


class ParentReference(GatewayAPISpec):
    """A route's attachment to a Gateway (or one listener of it, by sectionName or port)."""

    group: Group = GROUP
    kind: Kind = "Gateway"
    namespace: Namespace | None = None  # the route's own when not set
    name: ObjectName
    section_name: SectionName | None = None
    port: PortNumber | None = None

    def parent_key(self, route_namespace: str) -> tuple[str, str, str, str]:
        """(group, kind, namespace, name) of the parent, with the namespace defaulted."""
        return (self.group, self.kind, self.namespace or route_namespace, self.name)


class BackendObjectReference(GatewayAPISpec):
    """A Service (or another kind) that traffic or a mirror goes to."""

    group: Group = CORE_GROUP
    kind: Kind = "Service"
    name: ObjectName
    namespace: Namespace | None = None  # the route's own when not set
    port: PortNumber | None = None

    @model_validator(mode="after")
    def _port(self) -> "BackendObjectReference":
        if self.group == CORE_GROUP and self.kind == "Service" and self.port is None:
            raise SpecError(("port", "required for a Service reference"))
        return self

    @property
    def is_service(self) -> bool:
        return self.group == CORE_GROUP and self.kind == "Service"


class SecretObjectReference(GatewayAPISpec):
    """A certificate: a kubernetes.io/tls Secret by default."""

    group: Group = CORE_GROUP
    kind: Kind = "Secret"
    name: ObjectName
    namespace: Namespace | None = None  # the Gateway's own when not set


class ObjectReference(GatewayAPISpec):
    """A reference with every part given (CA certificates in Gateway TLS validation)."""

    group: Group
    kind: Kind
    name: ObjectName
    namespace: Namespace | None = None


class LocalObjectReference(GatewayAPISpec):
    """An object in the referrer's namespace (ExtensionRef filters, infrastructure parameters)."""

    group: Group
    kind: Kind
    name: ObjectName


class LabelSelectorRequirement(GatewayAPISpec):
    key: Annotated[str, bounded(1, 317)]
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: list[str] | None = None

    @model_validator(mode="after")
    def _values(self) -> "LabelSelectorRequirement":
        # What metav1.LabelSelectorAsSelector refuses: the selector could never be evaluated.
        if self.operator in ("In", "NotIn") and not self.values:
            raise SpecError(("values", f"required (non-empty) with operator {self.operator}"))
        if self.operator in ("Exists", "DoesNotExist") and self.values:
            raise SpecError(("values", f"must be empty with operator {self.operator}"))
        return self

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.operator == "In":
            return labels.get(self.key) in (self.values or ())
        if self.operator == "NotIn":
            return labels.get(self.key) not in (self.values or ())
        if self.operator == "Exists":
            return self.key in labels
        return self.key not in labels


class LabelSelector(GatewayAPISpec):
    """Kubernetes' label selector: every matchLabels pair and every expression must hold."""

    match_labels: dict[str, str] = Field(default_factory=dict)
    match_expressions: list[LabelSelectorRequirement] = Field(default_factory=list)

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether an object with ``labels`` is selected (an empty selector selects everything)."""
        return all(labels.get(k) == v for k, v in self.match_labels.items()) and all(
            e.matches(labels) for e in self.match_expressions
        )
