"""Gateway and GatewayClass (gateway.networking.k8s.io/v1, standard channel) as pydantic models.

A GatewayClass names the controller that implements it (``controllerName``;
crdgate's is ``crdgate.io/gateway-controller``). A Gateway of such a class
asks for listeners (port, protocol, optional hostname, TLS) and says which
routes may attach to each (``allowedRoutes``: namespaces Same / All / Selector
on the namespace's labels, and route kinds). The CRD's rules kept here:

- listener names are unique, and so is each (port, protocol, hostname);
- ``tls`` is not allowed on HTTP, TCP and UDP listeners; HTTPS terminates;
  TLS needs a mode; Terminate needs certificateRefs or options;
- TCP and UDP listeners have no hostname;
- IPAddress and Hostname addresses are unique, and a Hostname address is a
  host name.

How listeners map onto crdgate's own HTTP and HTTPS ports is the compiler's
business. Neighbours: controller/gatewayapi/common.py (shared types),
controller/gatewayapi/objects.py (the entry point).
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from controller.gatewayapi.common import (
    GROUP,
    GatewayAPISpec,
    Group,
    Hostname,
    Kind,
    LabelSelector,
    LocalObjectReference,
    Namespace,
    ObjectName,
    ObjectReference,
    PortNumber,
    SecretObjectReference,
    SectionName,
    bounded,
    checked,
    raise_problems,
    unique,
)
from controller.models import ObjectMeta, SpecError, valid_hostname

GATEWAY_KIND = "Gateway"
GATEWAYCLASS_KIND = "GatewayClass"

# The protocols of the standard channel; the CRD also admits "domain/name" ones of an implementation.
PROTOCOLS = ("HTTP", "HTTPS", "TLS", "TCP", "UDP")
_PROTOCOL = re.compile(r"[a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?|[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/[A-Za-z0-9]+")
_CONTROLLER_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/[A-Za-z0-9/\-._~%!$&'()*+,;=:]+")
_ADDRESS_TYPE = re.compile(r"Hostname|IPAddress|NamedAddress|" + _CONTROLLER_NAME.pattern)


def _controller_name_problem(v: str) -> str | None:
    if not 1 <= len(v) <= 253 or not _CONTROLLER_NAME.fullmatch(v):
        return f"{v!r} is not a controller name (a domain-prefixed path, e.g. crdgate.io/gateway-controller)"
    return None


def _protocol_problem(v: str) -> str | None:
    if not 1 <= len(v) <= 255 or not _PROTOCOL.fullmatch(v):
        return f"{v!r} is not a protocol ({', '.join(PROTOCOLS)}, or a domain-prefixed name)"
    return None


def _address_type_problem(v: str) -> str | None:
    if not 1 <= len(v) <= 253 or not _ADDRESS_TYPE.fullmatch(v):
        return f"{v!r} is not an address type (IPAddress, Hostname, NamedAddress, or a domain-prefixed name)"
    return None


# -- GatewayClass --------------------------------------------------------------


class ParametersReference(GatewayAPISpec):
    group: Group
    kind: Kind
    name: ObjectName
    namespace: Namespace | None = None


class GatewayClassSpec(GatewayAPISpec):
    controller_name: Annotated[str, checked(_controller_name_problem)]
    parameters_ref: ParametersReference | None = None
    description: Annotated[str, bounded(0, 64)] | None = None


class GatewayClass(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    metadata: ObjectMeta
    spec: GatewayClassSpec


# -- listeners -----------------------------------------------------------------


class RouteGroupKind(GatewayAPISpec):
    group: Group = GROUP
    kind: Kind


class RouteNamespaces(GatewayAPISpec):
    from_: Literal["All", "Selector", "Same"] = Field(default="Same", alias="from")
    selector: LabelSelector | None = None  # with from: Selector; none selects no namespace


class AllowedRoutes(GatewayAPISpec):
    namespaces: RouteNamespaces = RouteNamespaces()
    kinds: list[RouteGroupKind] = Field(default_factory=list, max_length=8)  # none: the protocol's own


class GatewayTLSConfig(GatewayAPISpec):
    mode: Literal["Terminate", "Passthrough"] = "Terminate"
    certificate_refs: list[SecretObjectReference] = Field(default_factory=list, max_length=64)
    options: dict[str, Annotated[str, bounded(0, 4096)]] = Field(default_factory=dict, max_length=16)

    @model_validator(mode="after")
    def _check(self) -> "GatewayTLSConfig":
        if self.mode == "Terminate" and not self.certificate_refs and not self.options:
            raise SpecError(("certificateRefs", "required (or options) when mode is Terminate"))
        return self


class Listener(GatewayAPISpec):
    name: SectionName
    hostname: Hostname | None = None
    port: PortNumber
    protocol: Annotated[str, checked(_protocol_problem)]
    tls: GatewayTLSConfig | None = None
    allowed_routes: AllowedRoutes = AllowedRoutes()

    @model_validator(mode="after")
    def _check(self) -> "Listener":
        problems = []
        if self.protocol in ("HTTP", "TCP", "UDP") and self.tls is not None:
            problems.append(("tls", f"not allowed with protocol {self.protocol}"))
        if self.protocol == "HTTPS" and self.tls is not None and self.tls.mode != "Terminate":
            problems.append(("tls.mode", "must be Terminate with protocol HTTPS"))
        # A defaulted mode counts as set: the API server fills it in before checking.
        if self.protocol == "TLS" and self.tls is None:
            problems.append(("tls", "required with protocol TLS (set mode)"))
        if self.protocol in ("TCP", "UDP") and self.hostname is not None:
            problems.append(("hostname", f"not allowed with protocol {self.protocol}"))
        raise_problems(problems)
        return self


# -- the rest of the spec --------------------------------------------------------


class GatewayAddress(GatewayAPISpec):
    type: Annotated[str, checked(_address_type_problem)] = "IPAddress"
    value: Annotated[str, bounded(0, 253)] | None = None

    @model_validator(mode="after")
    def _check(self) -> "GatewayAddress":
        if self.type == "Hostname" and self.value and not valid_hostname(self.value):
            raise SpecError(("value", f"{self.value!r} is not a host name"))
        return self


class GatewayInfrastructure(GatewayAPISpec):
    labels: dict[str, Annotated[str, bounded(0, 63)]] = Field(default_factory=dict, max_length=8)
    annotations: dict[str, Annotated[str, bounded(0, 4096)]] = Field(default_factory=dict, max_length=16)
    parameters_ref: LocalObjectReference | None = None


class AllowedListenerNamespaces(GatewayAPISpec):
    from_: Literal["All", "Selector", "Same", "None"] = Field(default="None", alias="from")
    selector: LabelSelector | None = None


class AllowedListeners(GatewayAPISpec):
    namespaces: AllowedListenerNamespaces = AllowedListenerNamespaces()


class TLSValidation(GatewayAPISpec):
    ca_certificate_refs: list[ObjectReference] = Field(min_length=1, max_length=16)
    mode: Literal["AllowValidOnly", "AllowInsecureFallback"] = "AllowValidOnly"


class FrontendTLSConfig(GatewayAPISpec):
    validation: TLSValidation | None = None


class TLSPortConfig(GatewayAPISpec):
    port: PortNumber
    tls: FrontendTLSConfig


class FrontendTLS(GatewayAPISpec):
    default: FrontendTLSConfig
    per_port: list[TLSPortConfig] = Field(default_factory=list, max_length=64)

    @model_validator(mode="after")
    def _check(self) -> "FrontendTLS":
        raise_problems(unique(self.per_port, lambda p: p.port, "perPort", "port"))
        return self


class BackendTLS(GatewayAPISpec):
    client_certificate_ref: SecretObjectReference | None = None


class GatewayTLS(GatewayAPISpec):
    """Client certificate validation (frontend) and the gateway's own client certificate (backend)."""

    frontend: FrontendTLS | None = None
    backend: BackendTLS | None = None


class GatewaySpec(GatewayAPISpec):
    gateway_class_name: Annotated[str, bounded(1, 253)]
    listeners: list[Listener] = Field(min_length=1, max_length=64)
    addresses: list[GatewayAddress] = Field(default_factory=list, max_length=16)
    infrastructure: GatewayInfrastructure | None = None
    allowed_listeners: AllowedListeners | None = None
    tls: GatewayTLS | None = None

    @model_validator(mode="after")
    def _check(self) -> "GatewaySpec":
        problems = unique(self.listeners, lambda l: l.name, "listeners", "listener name")
        problems += unique(
            self.listeners, lambda l: (l.port, l.protocol, l.hostname or ""), "listeners",
            "(port, protocol, hostname)",
        )
        seen = set()
        for i, a in enumerate(self.addresses):
            if a.type in ("IPAddress", "Hostname") and a.value:
                if (a.type, a.value) in seen:
                    problems.append((f"addresses[{i}]", f"duplicate {a.type} {a.value!r}: each must be unique"))
                seen.add((a.type, a.value))
        raise_problems(problems)
        return self

    def listener(self, name: str) -> Listener | None:
        return next((l for l in self.listeners if l.name == name), None)


class Gateway(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    metadata: ObjectMeta
    spec: GatewaySpec
