"""The one module that speaks HTTP to the Kubernetes API server.

Everything the controller asks of the cluster (lists, watch streams, status
patches, Lease updates) goes through ``KubeAPI``: a thin layer over
kubernetes-asyncio's ``ApiClient`` that keeps its connection setup and auth
(kubeconfig, in-cluster token refresh, client certificates) but sends raw
requests and hands back plain JSON dicts, exactly as the server wrote them.
Deserialising into the generated model classes would cost time and lose the
shape the compiler (controller/compile/) reads.

Neighbours: controller/reflector.py (list + watch), controller/status.py
(status patches), controller/leader.py (Lease), controller/kube.py (client
setup and the resource catalogue).

Errors::

    ApiError            any non-2xx answer, carrying the server's Status
     +-- Gone           410: resourceVersion too old / continue token expired
    (transport errors stay aiohttp.ClientError / asyncio.TimeoutError)
"""

from __future__ import annotations

import json
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, AsyncIterator, Mapping, Sequence

import aiohttp
from kubernetes_asyncio.client import ApiClient

from controller.gatewayapi.objects import VERSIONS as GATEWAY_API_VERSIONS, versions as gateway_api_versions
from controller.refgrant import GRANT_GROUP, GRANT_VERSIONS
from controller.store import (
    APIENDPOINT,
    ENDPOINTSLICE,
    GATEWAY,
    GATEWAYCLASS,
    GRPCROUTE,
    HTTPROUTE,
    INGRESS,
    INGRESSCLASS,
    NAMESPACE,
    REFERENCEGRANT,
    SECRET,
    SERVICE,
)
from gateway.errors import ApiError, Gone  # noqa: F401 - Gone: re-exported for the reflector

JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"

# A plain request (list page, get, patch, put) must not hang on a dead peer.
REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=60)


@dataclass(frozen=True)
class Resource:
    """One collection of the API: where it lives and what its objects are called."""

    group: str  # "" for the core group
    version: str
    plural: str
    kind: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(self, namespace: str | None = None, name: str | None = None, subresource: str | None = None) -> str:
        """The URL path of the collection (all namespaces when ``namespace`` is None) or of one object."""
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{namespace}"
        base += f"/{self.plural}"
        if name is not None:
            base += f"/{name}"
            if subresource:
                base += f"/{subresource}"
        return base

    def __str__(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural


# The collections crdgate reads and writes.
APIENDPOINTS = Resource("crdgate.io", "v1", "apiendpoints", APIENDPOINT)
SERVICES = Resource("", "v1", "services", SERVICE)
ENDPOINTSLICES = Resource("discovery.k8s.io", "v1", "endpointslices", ENDPOINTSLICE)
INGRESSES = Resource("networking.k8s.io", "v1", "ingresses", INGRESS)
INGRESSCLASSES = Resource("networking.k8s.io", "v1", "ingressclasses", INGRESSCLASS, namespaced=False)
SECRETS = Resource("", "v1", "secrets", SECRET)
LEASES = Resource("coordination.k8s.io", "v1", "leases", "Lease")
NAMESPACES = Resource("", "v1", "namespaces", NAMESPACE, namespaced=False)
# Gateway API's CRDs, when installed: the versions to try, preferred first (see KubeSource).
REFERENCEGRANTS = tuple(Resource(GRANT_GROUP, v, "referencegrants", REFERENCEGRANT) for v in GRANT_VERSIONS)
GATEWAYCLASSES = tuple(
    Resource(GRANT_GROUP, v, "gatewayclasses", GATEWAYCLASS, namespaced=False) for v in GATEWAY_API_VERSIONS
)
GATEWAYS = tuple(Resource(GRANT_GROUP, v, "gateways", GATEWAY) for v in GATEWAY_API_VERSIONS)
HTTPROUTES = tuple(Resource(GRANT_GROUP, v, "httproutes", HTTPROUTE) for v in GATEWAY_API_VERSIONS)
GRPCROUTES = tuple(Resource(GRANT_GROUP, v, "grpcroutes", GRPCROUTE) for v in gateway_api_versions(GRPCROUTE))


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:  # the HTTP-date form; the API server only sends seconds
        return None


async def _error_from(resp: aiohttp.ClientResponse) -> ApiError:
    body = await resp.read()
    try:
        status_obj = json.loads(body)
        if not isinstance(status_obj, dict):
            raise ValueError
    except ValueError:
        status_obj = {"message": body[:200].decode("utf-8", "replace"), "reason": resp.reason or ""}
    return ApiError.from_status(status_obj, resp.status, _retry_after(resp.headers))


class KubeAPI:
    """Raw JSON requests through a kubernetes-asyncio ``ApiClient`` (its auth and TLS setup)."""

    def __init__(self, client: ApiClient):
        self.client = client

    @classmethod
    def of(cls, api: "KubeAPI | ApiClient") -> "KubeAPI":
        return api if isinstance(api, KubeAPI) else cls(api)

    async def _send(self, method: str, path: str, query: Sequence[tuple[str, str]] | None,
                    body: Any, content_type: str, timeout: aiohttp.ClientTimeout) -> aiohttp.ClientResponse:
        # auth_settings=["BearerToken"] is what makes the client put (and, in
        # cluster, periodically re-read) the service-account token.
        return await self.client.call_api(
            path, method,
            query_params=list(query or ()),
            header_params={"Accept": JSON, "Content-Type": content_type},
            body=body,
            auth_settings=["BearerToken"],
            _preload_content=False,
            _request_timeout=timeout,
        )

    async def request(self, method: str, path: str, *, query: Sequence[tuple[str, str]] | None = None,
                      body: Any = None, content_type: str = JSON,
                      timeout: aiohttp.ClientTimeout = REQUEST_TIMEOUT) -> dict:
        """One request; the decoded JSON answer, or ApiError for any non-2xx status."""
        resp = await self._send(method, path, query, body, content_type, timeout)
        async with resp:
            if resp.status >= 400:
                raise await _error_from(resp)
            data = await resp.read()
        return json.loads(data) if data else {}

    async def serves(self, resource: Resource) -> bool:
        """Whether the server serves ``resource`` at its version (API discovery).

        False when the group version is unknown (404, e.g. a CRD not installed)
        or does not list the resource; ApiError for any other failure."""
        path = f"/apis/{resource.group}/{resource.version}" if resource.group else f"/api/{resource.version}"
        try:
            doc = await self.request("GET", path)
        except ApiError as exc:
            if exc.status == 404:
                return False
            raise
        return any(isinstance(r, dict) and r.get("name") == resource.plural for r in doc.get("resources") or ())

    @asynccontextmanager
    async def stream(self, path: str, query: Sequence[tuple[str, str]],
                     timeout: aiohttp.ClientTimeout) -> AsyncIterator[AsyncIterator[dict]]:
        """A watch stream: yields an async iterator of decoded events ``{type, object}``.

        Lines are read straight off the chunked body rather than through
        kubernetes_asyncio.watch.Watch, which would deserialise into models,
        quietly retry a 410 once without relisting and restart on its own.
        """
        resp = await self._send("GET", path, query, None, JSON, timeout)
        try:
            if resp.status >= 400:
                raise await _error_from(resp)
            yield _events(resp)
        finally:
            # Never hand a half-read stream back to the pool.
            resp.close()


async def _events(resp: aiohttp.ClientResponse) -> AsyncIterator[dict]:
    # readline is bounded by the client's read buffer (2 MiB x 2), above etcd's
    # 1.5 MiB object limit.
    while True:
        line = await resp.content.readline()
        if not line:
            return
        line = line.strip()
        if not line:
            continue
        event = json.loads(line)
        if not isinstance(event, dict) or "type" not in event or "object" not in event:
            # A bare Status instead of an event: the server refused mid-stream.
            if isinstance(event, dict) and "code" in event:
                raise ApiError.from_status(event)
            raise ValueError(f"malformed watch event: {line[:200]!r}")
        yield event
