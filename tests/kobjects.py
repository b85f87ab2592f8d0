"""Builders of plain Kubernetes objects (as the store holds them) for compiler tests.

Each builder returns a JSON-shaped dict with ``kind`` set, so ``snapshot(...)``
can file it under its kind the way controller/store.py does.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

from controller.store import Snapshot, object_key

T0 = "2024-01-01T00:00:00Z"


def _meta(name: str, namespace: str | None, created: str | None, generation: int | None = 1, **extra) -> dict:
    meta: dict[str, Any] = {"name": name}
    if namespace is not None:
        meta["namespace"] = namespace
    if created is not None:
        meta["creationTimestamp"] = created
    if generation is not None:
        meta["generation"] = generation
    meta.update({k: v for k, v in extra.items() if v is not None})
    return meta


def apiendpoint(name: str, spec: dict, ns: str = "shop", created: str = T0, generation: int = 1) -> dict:
    return {
        "apiVersion": "crdgate.io/v1",
        "kind": "APIEndpoint",
        "metadata": _meta(name, ns, created, generation),
        "spec": spec,
    }


def service(
    name: str,
    ns: str = "shop",
    ports: list[dict] | None = None,
    type: str | None = None,
    external_name: str | None = None,
) -> dict:
    spec: dict[str, Any] = {"ports": ports if ports is not None else [{"name": "http", "port": 80, "targetPort": 8080}]}
    if type:
        spec["type"] = type
    if external_name:
        spec["externalName"] = external_name
    return {"apiVersion": "v1", "kind": "Service", "metadata": _meta(name, ns, T0, None), "spec": spec}


def endpointslice(
    svc: str,
    addresses: list[str] | None = None,
    ns: str = "shop",
    port: int | None = 8080,
    port_name: str | None = "http",
    ready: bool | None = True,
    name: str | None = None,
    endpoints: list[dict] | None = None,
) -> dict:
    if endpoints is None:
        conditions = {} if ready is None else {"ready": ready}
        endpoints = [{"addresses": [a], "conditions": conditions} for a in (addresses or ["10.0.0.1"])]
    ports = [] if port is None else [{"name": port_name, "port": port, "protocol": "TCP"}]
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": _meta(name or f"{svc}-abc12", ns, T0, None, labels={"kubernetes.io/service-name": svc}),
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": ports,
    }


def ingress(
    name: str,
    spec: dict,
    ns: str = "shop",
    created: str = T0,
    annotations: dict | None = None,
    class_name: str | None = "crdgate",
) -> dict:
    spec = dict(spec)
    if class_name is not None:
        spec.setdefault("ingressClassName", class_name)
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": _meta(name, ns, created, 1, annotations=annotations),
        "spec": spec,
    }


def ingress_class(name: str = "crdgate", default: bool = False, controller: str = "crdgate.io/gateway") -> dict:
    annotations = {"ingressclass.kubernetes.io/is-default-class": "true"} if default else None
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "IngressClass",
        "metadata": _meta(name, None, T0, None, annotations=annotations),
        "spec": {"controller": controller},
    }


def path(p: str, svc: str, path_type: str = "Prefix", port: int | str = 80) -> dict:
    """One Ingress HTTPIngressPath."""
    port_ref = {"number": port} if isinstance(port, int) else {"name": port}
    return {"path": p, "pathType": path_type, "backend": {"service": {"name": svc, "port": port_ref}}}


def snapshot(*objects: dict, origins: dict[str, str] | None = None) -> Snapshot:
    by_kind: dict[str, dict[str, dict]] = {}
    for obj in objects:
        by_kind.setdefault(obj["kind"], {})[object_key(obj)] = obj
    return Snapshot(
        objects=MappingProxyType({k: MappingProxyType(v) for k, v in by_kind.items()}),
        origins=MappingProxyType(dict(origins or {})),
    )


def backend(svc: str = "users", ns: str = "shop", addresses: tuple[str, ...] = ("10.0.0.1",)) -> list[dict]:
    """A Service with one ready endpoint per address: the usual healthy backend."""
    return [service(svc, ns), endpointslice(svc, list(addresses), ns)]


def referencegrant(
    name: str,
    ns: str,
    from_: list[tuple[str, str, str]],
    to: list[tuple[str, str] | tuple[str, str, str]],
    version: str = "v1beta1",
) -> dict:
    """A ReferenceGrant in ``ns`` (the target namespace): ``from_`` (group, kind,
    namespace) entries, ``to`` (group, kind[, name]) entries."""
    return {
        "apiVersion": f"gateway.networking.k8s.io/{version}",
        "kind": "ReferenceGrant",
        "metadata": _meta(name, ns, T0, 1),
        "spec": {
            "from": [{"group": g, "kind": k, "namespace": n} for g, k, n in from_],
            "to": [dict(zip(("group", "kind", "name"), t)) for t in to],
        },
    }
