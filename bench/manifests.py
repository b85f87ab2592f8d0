"""The manifests each scenario writes into its own folder for `crdgate run --manifests`.

Pure builders return plain dicts (the same shapes a user writes; see the
README's APIEndpoint reference); ``write`` puts documents in a file atomically
(a temp name the manifests source ignores, then a rename), so the gateway never
reads a half-written file — the churn and propagation scenarios depend on it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

import yaml

NAMESPACE = "bench"
API_KEY_HEADER = "X-API-Key"
FILLER_PER_FILE = 500  # the 10,000-route table is 20 files of 500 documents

try:
    _Dumper = yaml.CSafeDumper
except AttributeError:  # PyYAML without libyaml
    _Dumper = yaml.SafeDumper


def api_endpoint(name: str, path: str, backend_url: str, **spec: object) -> dict:
    """An APIEndpoint with one url backend; extra ``spec`` fields as written in YAML (camelCase)."""
    return {
        "apiVersion": "crdgate.io/v1",
        "kind": "APIEndpoint",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {"path": path, "backends": [{"url": backend_url}], **spec},
    }


def service_with_endpoints(name: str, ports: list[int], app_protocol: str | None = None) -> list[dict]:
    """A Service whose named target port has one ready loopback endpoint per port: one
    EndpointSlice per endpoint, as pods that expose the named port at different numbers.
    ``app_protocol`` (e.g. ``kubernetes.io/h2c``) goes on the Service port and the slices' ports."""
    proto = {} if app_protocol is None else {"appProtocol": app_protocol}
    service = {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {"ports": [{"name": "http", "port": 80, "targetPort": "http", **proto}]},
    }
    slices = [
        {
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": f"{name}-{i}", "namespace": NAMESPACE,
                         "labels": {"kubernetes.io/service-name": name}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": True}}],
            "ports": [{"name": "http", "port": port, "protocol": "TCP", **proto}],
        }
        for i, port in enumerate(ports)
    ]
    return [service, *slices]


def secret(name: str, string_data: dict[str, str]) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "type": "Opaque",
        "stringData": dict(string_data),
    }


def high_rate_limit(scope: str = "Local") -> dict:
    """A limit far above what the benchmark can send: the policy runs, never triggers."""
    return {"requestsPerMinute": 10_000_000, "burst": 1_000_000, "scope": scope}


def filler_path(i: int) -> str:
    return f"/r/{i}"


def filler_routes(n: int, backend_url: str) -> list[dict]:
    return [api_endpoint(f"r-{i}", filler_path(i), backend_url) for i in range(n)]


def dump(docs: Iterable[dict]) -> str:
    return yaml.dump_all(list(docs), Dumper=_Dumper, sort_keys=False, default_flow_style=None)


def write(path: Path, docs: Iterable[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(dump(docs))
    os.replace(tmp, path)


def write_filler(folder: Path, n: int, backend_url: str) -> None:
    docs = filler_routes(n, backend_url)
    for start in range(0, n, FILLER_PER_FILE):
        write(folder / f"filler-{start // FILLER_PER_FILE:03d}.yaml", docs[start : start + FILLER_PER_FILE])


# -- Gateway API -------------------------------------------------------------------
# The HTTPRoute scenarios: crdgate's GatewayClass, one Gateway with an HTTP
# listener admitting the bench namespace's routes, and HTTPRoutes whose
# backendRefs name Services (Gateway API has no URL backends), each Service
# with one EndpointSlice to a bench backend port.

GATEWAY_API = "gateway.networking.k8s.io/v1"
GATEWAY_CLASS = "crdgate"
GATEWAY_CONTROLLER = "crdgate.io/gateway-controller"
GATEWAY_NAME = "bench"
HTTPROUTE_FILLER_PREFIX = "/h/"


def gateway_class(name: str = GATEWAY_CLASS) -> dict:
    return {"apiVersion": GATEWAY_API, "kind": "GatewayClass", "metadata": {"name": name},
            "spec": {"controllerName": GATEWAY_CONTROLLER}}


def gateway(name: str = GATEWAY_NAME) -> dict:
    """One HTTP listener on port 80 (crdgate serves it on --listen) for routes of its namespace."""
    return {"apiVersion": GATEWAY_API, "kind": "Gateway", "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {"gatewayClassName": GATEWAY_CLASS,
                     "listeners": [{"name": "http", "port": 80, "protocol": "HTTP",
                                    "allowedRoutes": {"namespaces": {"from": "Same"}}}]}}


def gateway_setup(services: dict[str, int]) -> list[dict]:
    """GatewayClass, Gateway and one Service (with its EndpointSlice) per name -> backend port."""
    docs = [gateway_class(), gateway()]
    for name, port in services.items():
        docs.extend(service_with_endpoints(name, [port]))
    return docs


def http_route(name: str, path: str, service: str, path_type: str = "PathPrefix") -> dict:
    """An HTTPRoute on the bench Gateway: one rule, one path match, one Service backendRef (port 80)."""
    return {
        "apiVersion": GATEWAY_API, "kind": "HTTPRoute",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "parentRefs": [{"name": GATEWAY_NAME}],
            "rules": [{"matches": [{"path": {"type": path_type, "value": path}}],
                       "backendRefs": [{"name": service, "port": 80}]}],
        },
    }


def httproute_filler_path(i: int) -> str:
    return f"{HTTPROUTE_FILLER_PREFIX}{i}"


def httproute_filler(n: int, service: str) -> dict[str, list[dict]]:
    """``n`` HTTPRoutes ``/h/<i>`` to ``service``, as file name -> documents (500 a file)."""
    docs = [http_route(f"h-{i}", httproute_filler_path(i), service) for i in range(n)]
    return {f"httproutes-{start // FILLER_PER_FILE:03d}.yaml": docs[start : start + FILLER_PER_FILE]
            for start in range(0, n, FILLER_PER_FILE)}
