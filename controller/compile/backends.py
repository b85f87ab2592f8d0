"""Backend resolution: Service and EndpointSlices -> the EndpointSet of a backend key.

Neighbours: the per-object steps (apiendpoint.py, ingress.py) turn a backend
reference into a key with ``service_key`` / ``url_key`` / ``refused_key``
(a reference no ReferenceGrant permits, controller/refgrant.py); the full
compile (full.py) and the incremental driver (incremental.py) resolve the
keys with ``resolve_all``; the table (gateway/routing.py) holds the result.

A backend Service resolves to the ready addresses of its EndpointSlices and
the port the Service port maps to (by number or name); a missing Service is
``ENDPOINTS_NOT_FOUND`` (the proxy answers 500), no ready endpoint
``ENDPOINTS_NONE_READY`` (503); ExternalName Services resolve by DNS when the
upstream connects.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

from pydantic import ValidationError

from controller import models as m
from controller.store import ENDPOINTSLICE, NAMESPACE, SERVICE, Snapshot
from gateway.routing import (
    ENDPOINTS_NONE_READY,
    ENDPOINTS_NOT_FOUND,
    ENDPOINTS_OK,
    BackendRef,
    Endpoint,
    EndpointSet,
)

def slice_service(raw: Mapping | None) -> str | None:
    """The "namespace/name" of the Service an EndpointSlice belongs to (its label), if any."""
    if not isinstance(raw, Mapping):
        return None
    meta = raw.get("metadata") or {}
    svc = (meta.get("labels") or {}).get(m.SERVICE_NAME_LABEL)
    return f"{meta.get('namespace') or ''}/{svc}" if svc else None


def slice_index(snapshot: Snapshot) -> dict[str, list[str]]:
    """Service "namespace/name" -> the keys of its EndpointSlices, sorted."""
    index: dict[str, list[str]] = {}
    for key, raw in snapshot.of(ENDPOINTSLICE).items():
        svc = slice_service(raw)
        if svc:
            index.setdefault(svc, []).append(key)
    for keys in index.values():
        keys.sort()
    return index


class Services:
    """Per-compile view of Services and their EndpointSlices, parsed on demand.

    ``note`` hears of every Service looked up (an object's compile depends on
    it); ``slices``: the slice index if the caller keeps one (else built here
    on first use, one pass over every slice)."""

    def __init__(self, snapshot: Snapshot, note=None, slices: Mapping[str, list[str]] | None = None):
        self.snapshot = snapshot
        self.note = note
        self._services: dict[str, m.Service | None] = {}
        self._slices = slices

    def service(self, namespace: str, name: str) -> m.Service | None:
        key = f"{namespace}/{name}"
        if self.note is not None:
            self.note((SERVICE, key))
        if key not in self._services:
            self._services[key] = parse_service(self.snapshot.of(SERVICE).get(key))
        return self._services[key]

    def is_namespace(self, name: str) -> bool:
        """Whether a Namespace of that name exists (noted: a route depends on the answer)."""
        key = f"/{name}"
        if self.note is not None:
            self.note((NAMESPACE, key))
        return self.snapshot.of(NAMESPACE).get(key) is not None

    def slices(self, namespace: str, name: str) -> list[m.EndpointSlice]:
        if self._slices is None:
            self._slices = slice_index(self.snapshot)
        objects = self.snapshot.of(ENDPOINTSLICE)
        out = []
        for key in self._slices.get(f"{namespace}/{name}", ()):
            raw = objects.get(key)
            if raw is None:
                continue
            try:
                out.append(m.EndpointSlice.model_validate(raw))
            except ValidationError:
                continue
        return out


def parse_service(raw: Mapping | None) -> m.Service | None:
    if raw is None:
        return None
    try:
        return m.Service.model_validate(raw)
    except ValidationError:
        return None  # the API server never sends one; a broken file is "not found"


def service_shape(raw: Mapping | None) -> tuple | None:
    """What of a Service the routes' backend keys depend on (``service_key``): its
    type and port numbers and names. Anything else (target ports, externalName)
    only moves endpoints."""
    svc = parse_service(raw)
    if svc is None:
        return None
    return svc.spec.type, tuple((p.name, p.port) for p in svc.spec.ports)


def find_port(svc: m.Service, port: int | str | None) -> m.ServicePort | None:
    ports = svc.spec.ports
    if port is None:
        return ports[0] if ports else None
    for p in ports:
        if (p.port == port) if isinstance(port, int) else (p.name == port):
            return p
    return None


# A backend spoken to in HTTP/2 whatever its own setting says (a url backend
# with ``protocol: HTTP/2``, a GRPCRoute's Service) is another backend than the
# same one in HTTP/1.1: its key carries the protocol as a fragment (neither a
# backend URL nor a Service key has one otherwise).
HTTP2_FRAGMENT = "#h2"


def service_key(namespace: str, name: str, port: int | str | None, services: Services, http2: bool = False) -> str:
    """EndpointSet key "ns/svc:port": by the Service port number when the Service is known.

    ``http2``: the route speaks HTTP/2 whatever the port's appProtocol says (a
    GRPCRoute's backends: gRPC is HTTP/2); the key then ends in ``#h2``."""
    key = _service_key(namespace, name, port, services)
    return key + HTTP2_FRAGMENT if http2 else key


def _service_key(namespace: str, name: str, port: int | str | None, services: Services) -> str:
    svc = services.service(namespace, name)
    if svc is not None:
        if svc.spec.type == "ExternalName":
            if isinstance(port, int):
                return f"{namespace}/{name}:{port}"
            sp = find_port(svc, port)
            if sp is not None:
                return f"{namespace}/{name}:{sp.port}"
            if port is None:
                return f"{namespace}/{name}:80"
        else:
            sp = find_port(svc, port)
            if sp is not None:
                return f"{namespace}/{name}:{sp.port}"
    return f"{namespace}/{name}" + ("" if port is None else f":{port}")


# A Service reference that no ReferenceGrant permits gets a key of its own: the
# Service's real EndpointSet (which routes of its own namespace may use) stays
# as it is, and this one is always "not found" (the proxy answers 500). No
# namespace contains ":", so it can never be taken for a Service key.
REFUSED_PREFIX = "refused:"


def refused_key(namespace: str, name: str, port: int | str | None) -> str:
    return f"{REFUSED_PREFIX}{namespace}/{name}" + ("" if port is None else f":{port}")


def is_service_key(key: str) -> bool:
    """True for "ns/svc:port" keys; False for URL backends and refused references."""
    return not key.startswith(("http://", "https://", REFUSED_PREFIX))


@lru_cache(maxsize=4096)
def url_key(url: str, http2: bool = False) -> str:
    u = urlsplit(url)
    return f"{u.scheme.lower()}://{u.netloc.lower()}" + (HTTP2_FRAGMENT if http2 else "")


def cluster_service_of_url(url: str, is_namespace=None, search_namespace: str = "") -> tuple[str, str] | None:
    """(namespace, name) when a URL's host is a Service's cluster DNS name, else None.

    ``name.namespace.svc`` and ``name.namespace.svc.<cluster domain>`` reach a
    Service as surely as a ``service`` reference does, so a URL backend that
    names another namespace's Service this way needs the same ReferenceGrant.
    (A bare IP or another host name says nothing about namespaces: keeping
    those apart is a NetworkPolicy's job.)
    """
    return cluster_service_of_host(urlsplit(url).hostname or "", is_namespace, search_namespace)


def cluster_service_of_host(host: str, is_namespace=None, search_namespace: str = "") -> tuple[str, str] | None:
    """(namespace, name) when a host name is a Service's cluster DNS name, else None.

    ``is_namespace`` (a predicate on names) also catches the short form
    ``name.namespace``: the gateway pod's resolver (ndots:5, search list
    ``svc.<cluster domain>``) turns it into that Service's name before trying
    it as a public one, so when such a namespace exists it is a Service reference.
    ``search_namespace``: the gateway pod's namespace, where a single-label host
    resolves (controller/compile/options.py)."""
    if host.endswith("."):
        host = host[:-1]  # an absolute name skips the search list, but .svc. still names a Service
        is_namespace, search_namespace = None, ""
    labels = host.lower().split(".")
    if len(labels) == 1 and search_namespace and labels[0] and labels[0] != "localhost":
        return search_namespace, labels[0]
    if len(labels) >= 3 and labels[2] == "svc" and labels[0] and labels[1]:
        return labels[1], labels[0]
    if is_namespace is not None and len(labels) == 2 and labels[0] and is_namespace(labels[1]):
        return labels[1], labels[0]
    return None


def gateway_local_host(host: str) -> str:
    """Why a backend host reaches the gateway's own pod or node rather than a workload, or "".

    Loopback is the gateway pod itself (its admin port shows every tenant's
    routes); link-local is the node's cloud metadata service (169.254.169.254,
    fd00:ec2::254 ...), which hands out the node's credentials."""
    name = host.rstrip(".").lower().strip("[]")
    if name == "localhost" or name.endswith(".localhost"):
        return "the gateway pod itself"
    try:
        ip = ipaddress.ip_address(name)
    except ValueError:
        return ""
    if ip.is_loopback:
        return "the gateway pod itself"
    if ip.is_unspecified:
        return "the gateway pod itself (an unspecified address)"
    if ip.is_link_local or ip in CLOUD_METADATA:
        return "link-local: the node's metadata service"
    return ""


CLOUD_METADATA = frozenset({ipaddress.ip_address("fd00:ec2::254")})  # AWS's IPv6 metadata address


def parse_service_key(key: str) -> tuple[str, str, int | str | None]:
    key = key.removesuffix(HTTP2_FRAGMENT)
    namespace, _, rest = key.partition("/")
    name, sep, port = rest.partition(":")
    if not sep:
        return namespace, name, None
    return namespace, name, int(port) if port.isdigit() else port


def _resolve_url(key: str) -> tuple[EndpointSet, str]:
    u = urlsplit(key)
    tls = u.scheme == "https"
    port = u.port or (443 if tls else 80)
    ep = Endpoint(host=u.hostname or "", port=port, tls=tls, http2=u.fragment == HTTP2_FRAGMENT[1:])
    return EndpointSet(key=key, endpoints=(ep,), host_header=u.netloc), ""


def _resolve_service(key: str, services: Services) -> tuple[EndpointSet, str]:
    namespace, name, port = parse_service_key(key)
    forced_http2 = key.endswith(HTTP2_FRAGMENT)
    svc = services.service(namespace, name)
    if svc is None:
        return EndpointSet(key=key, state=ENDPOINTS_NOT_FOUND), f"Service {namespace}/{name} not found"
    if svc.spec.type == "ExternalName":
        if not svc.spec.external_name:
            return EndpointSet(key=key, state=ENDPOINTS_NOT_FOUND), f"Service {namespace}/{name} has no externalName"
        if not isinstance(port, int):
            return EndpointSet(key=key, state=ENDPOINTS_NOT_FOUND), f"Service {namespace}/{name} has no port {port}"
        target_name = svc.spec.external_name.rstrip(".")
        if "." not in target_name:
            # Only the gateway pod's DNS search list gives a single label a meaning,
            # and there it names a Service of the gateway's own namespace.
            return EndpointSet(key=key, state=ENDPOINTS_NOT_FOUND), (
                f"Service {namespace}/{name} is an ExternalName for {target_name!r}: expected a fully qualified name"
            )
        local = gateway_local_host(target_name)
        if local:
            return EndpointSet(key=key, state=ENDPOINTS_NOT_FOUND), (
                f"Service {namespace}/{name} is an ExternalName for {target_name}, {local}: not a backend"
            )
        other = cluster_service_of_host(svc.spec.external_name, services.is_namespace)
        if other is not None and other[0] != namespace:
            # An ExternalName is an alias anyone who may create a Service can point
            # anywhere: followed into another namespace it would reach that
            # namespace's Service without the ReferenceGrant a direct reference needs.
            return EndpointSet(key=key, state=ENDPOINTS_NOT_FOUND), (
                f"Service {namespace}/{name} is an ExternalName for {target_name}, a Service in namespace "
                f"{other[0]}: reference that Service directly (a ReferenceGrant in {other[0]} permits it)"
            )
        # A DNS name: the upstream resolves it when it connects.
        sp = find_port(svc, port)
        http2 = forced_http2 or (sp is not None and m.http2_app_protocol(sp.app_protocol))
        ep = Endpoint(host=target_name, port=port, http2=http2)
        return EndpointSet(key=key, endpoints=(ep,)), ""
    sp = find_port(svc, port)
    if sp is None:
        what = "any port" if port is None else f"port {port}"
        return EndpointSet(key=key, state=ENDPOINTS_NOT_FOUND), f"Service {namespace}/{name} has no {what}"
    target = sp.target_port if sp.target_port is not None else sp.port
    port_name = sp.name or ""
    http2 = forced_http2 or m.http2_app_protocol(sp.app_protocol)
    seen: set[tuple[str, int]] = set()
    endpoints: list[Endpoint] = []
    for eps in services.slices(namespace, name):
        # Kubernetes names the slice port after the Service port; a hand-written
        # slice without names falls back to the target port number.
        slice_port = None
        for p in eps.ports:
            if (p.name or "") == port_name and p.port is not None and (p.protocol or "TCP") == "TCP":
                slice_port = p.port
                break
        if slice_port is None:
            if not isinstance(target, int):
                continue
            slice_port = target
        for ep in eps.endpoints:
            c = ep.conditions
            if c is not None and (c.ready is False or (c.ready is None and c.terminating)):
                continue
            if not ep.addresses:
                continue
            # Addresses of one endpoint are fungible; like kube-proxy, use the first.
            addr = (ep.addresses[0], slice_port)
            if addr not in seen:
                seen.add(addr)
                endpoints.append(Endpoint(host=addr[0], port=addr[1], http2=http2))
    if not endpoints:
        return (
            EndpointSet(key=key, state=ENDPOINTS_NONE_READY),
            f"Service {namespace}/{name} port {sp.port} has no ready endpoints",
        )
    return EndpointSet(key=key, endpoints=tuple(endpoints), state=ENDPOINTS_OK), ""


def resolve_all(
    snapshot: Snapshot, keys: Iterable[str], services: Services | None = None
) -> dict[str, tuple[EndpointSet, str]]:
    services = services or Services(snapshot)
    out: dict[str, tuple[EndpointSet, str]] = {}
    for key in sorted(keys):
        if key.startswith(("http://", "https://")):
            out[key] = _resolve_url(key)
        elif key.startswith(REFUSED_PREFIX):
            out[key] = EndpointSet(key=key, state=ENDPOINTS_NOT_FOUND), ""  # the object's ref_errors say why
        else:
            out[key] = _resolve_service(key, services)
    return out


def resolve_endpoints(snapshot: Snapshot, keys: Iterable[str]) -> dict[str, EndpointSet]:
    """EndpointSets for the keys a CompileResult uses: the cheap path for slice churn."""
    return {k: es for k, (es, _) in resolve_all(snapshot, keys).items()}



@lru_cache(maxsize=4096)
def backend_ref(key: str, weight: int = 1) -> BackendRef:
    """Routes to one backend share one BackendRef (and its key string)."""
    return BackendRef(key, weight)


@lru_cache(maxsize=4096)
def one(value: Any) -> tuple:
    """A one-element tuple, shared: most routes have one backend."""
    return (value,)
