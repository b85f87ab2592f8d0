"""The Gateway API kinds crdgate reads, the versions it reads them at, and ``parse``.

``parse(kind, obj)`` validates a whole object (as a dict, the store's shape)
against its model and returns it; ``InvalidObject`` lists every problem, each
naming its field ("spec.rules[0].backendRefs[1].port: required for a Service
reference"), with "did you mean" for a misspelt field. controller/files.py
calls it for each Gateway API object of a manifests folder (the API server
would have checked it against the CRD); the compiler calls it for each object
it routes.

The kinds are served at v1 (standard channel) and, with the same schema, at
v1beta1; v1 is preferred (controller/kube.py discovers which is served).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

from controller.gatewayapi.common import GROUP
from controller.gatewayapi.gateway import Gateway, GatewayClass
from controller.gatewayapi.grpcroute import GRPCRoute
from controller.gatewayapi.httproute import HTTPRoute
from controller.models import SpecError, describe_errors
from controller.store import GATEWAY, GATEWAYCLASS, GRPCROUTE, HTTPROUTE
from gateway.errors import SchemaError as InvalidObject  # the name the sources catch it by

VERSIONS = ("v1", "v1beta1")  # preferred first
API_VERSIONS = tuple(f"{GROUP}/{v}" for v in VERSIONS)

MODELS: dict[str, type[BaseModel]] = {
    GATEWAYCLASS: GatewayClass, GATEWAY: Gateway, HTTPROUTE: HTTPRoute, GRPCROUTE: GRPCRoute,
}  # fmt: skip
KINDS = tuple(MODELS)
# GRPCRoute has no v1beta1: v1 only (its v1alpha2 is the experimental channel's).
KIND_VERSIONS: dict[str, tuple[str, ...]] = {GRPCROUTE: ("v1",)}


def versions(kind: str) -> tuple[str, ...]:
    """The versions a kind is read at, preferred first."""
    return KIND_VERSIONS.get(kind, VERSIONS)


def api_versions(kind: str) -> tuple[str, ...]:
    return tuple(f"{GROUP}/{v}" for v in versions(kind))
CLUSTER_SCOPED = frozenset({GATEWAYCLASS})

# crdgate's GatewayClass controllerName: Gateways of classes naming it are crdgate's.
CONTROLLER_NAME = "crdgate.io/gateway-controller"


def parse(kind: str, obj: Mapping[str, Any]) -> BaseModel:
    """The model of a GatewayClass, Gateway, HTTPRoute or GRPCRoute; InvalidObject names what is wrong."""
    model = MODELS[kind]
    if not isinstance(obj.get("spec"), Mapping):
        raise InvalidObject(["spec: required (an object)"])
    try:
        return model.model_validate(obj)
    except ValidationError as exc:
        raise InvalidObject(describe_errors(exc, prefix="", model=model)) from None
    except SpecError as exc:  # raised outside pydantic's wrapping: never expected, still named
        raise InvalidObject([str(exc)]) from None
