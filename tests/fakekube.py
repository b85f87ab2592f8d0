"""A fake Kubernetes API server for the controller's tests (no kube-apiserver here).

An aiohttp app on 127.0.0.1 that behaves like the real server where crdgate
depends on it:

- per-resource collections sharing one global resourceVersion counter;
- LIST with ``metadata.resourceVersion``, label selectors (``k``, ``!k``,
  ``k=v``, ``k==v``, ``k!=v``) and field selectors (``metadata.name``,
  ``metadata.namespace``), pagination (``limit``/``continue``); items come
  without apiVersion/kind, as from the real one;
- WATCH: a chunked stream of JSON lines ``{type, object}`` from a given
  resourceVersion, replayed from a bounded history; a resourceVersion older
  than the history gives 410, either as an HTTP 410 Status or as an ERROR
  event (``gone_mode``); objects leaving a selector are sent as DELETED;
  BOOKMARKs (with ``allowWatchBookmarks``) every ``bookmark_interval``;
  ``timeoutSeconds`` honoured (the server ends the stream);
- GET / POST / PUT (409 on a stale resourceVersion) / merge-PATCH / DELETE;
  the ``status`` subresource changes only status, never ``metadata.generation``;
  writes to the main resource ignore status and bump generation on spec changes;
  no-op writes do not bump the resourceVersion;
- errors as real ``Status`` objects; bearer-token auth;
- with ``namespaces=[...]``, only those namespaces (and Namespace objects
  created later) exist, and creating an object in another one is a 404
  ``namespaces "x" not found``, as on the real server; without it (the
  default) every namespace exists, which most tests rely on.
- discovery of a group version (``GET /apis/GROUP/VERSION``: an
  APIResourceList, 404 when nothing is served there). ``resources`` chooses
  what is served (``WITHOUT_GATEWAY_API``: Gateway API's CRDs are not
  installed; ``install`` adds one later); a Res's ``also_served`` versions
  share its objects, as a CRD's versions do.

Test controls: ``create``/``update``/``set_status``/``delete``/``get`` (direct,
no HTTP, as another client would write), ``compact()``, ``drop_watches()``
(cut), ``end_watches()`` (clean end, as on timeout), ``send_bookmarks()``,
``fail(...)`` (inject e.g. 429 with Retry-After), ``refuse_watches`` (503),
``max_watch_seconds`` (streams cut short), ``stop()``/``start()`` on the same
port, ``requests`` (a log of every request received, ``request_times`` when),
``latency`` (a server some milliseconds away) and ``peak_in_flight``. Fixtures
``fake_kube`` and ``kube_api`` (the real kubernetes-asyncio client, set up
from a kubeconfig file pointing here) and helpers are at the bottom.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import json
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Iterable
from urllib.parse import parse_qsl

from aiohttp import web


@dataclass(frozen=True)
class Res:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True
    status_subresource: bool = False
    also_served: tuple[str, ...] = ()  # more versions of the same objects

    @property
    def versions(self) -> tuple[str, ...]:
        return (self.version, *self.also_served)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def gr(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural


RESOURCES = (
    Res("crdgate.io", "v1", "apiendpoints", "APIEndpoint", status_subresource=True),
    Res("", "v1", "services", "Service", status_subresource=True),
    Res("", "v1", "secrets", "Secret"),
    Res("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice"),
    Res("networking.k8s.io", "v1", "ingresses", "Ingress", status_subresource=True),
    Res("networking.k8s.io", "v1", "ingressclasses", "IngressClass", namespaced=False),
    Res("coordination.k8s.io", "v1", "leases", "Lease"),
    Res("", "v1", "namespaces", "Namespace", namespaced=False),
    # Gateway API's standard channel: GatewayClass, Gateway and HTTPRoute at v1 (and
    # v1beta1), ReferenceGrant at v1beta1.
    Res("gateway.networking.k8s.io", "v1", "gatewayclasses", "GatewayClass", namespaced=False,
        status_subresource=True, also_served=("v1beta1",)),
    Res("gateway.networking.k8s.io", "v1", "gateways", "Gateway", status_subresource=True, also_served=("v1beta1",)),
    Res("gateway.networking.k8s.io", "v1", "httproutes", "HTTPRoute", status_subresource=True,
        also_served=("v1beta1",)),
    Res("gateway.networking.k8s.io", "v1beta1", "referencegrants", "ReferenceGrant"),
)
GATEWAY_API = tuple(r for r in RESOURCES if r.group == "gateway.networking.k8s.io")
WITHOUT_REFERENCEGRANT = tuple(r for r in RESOURCES if r.kind != "ReferenceGrant")
WITHOUT_GATEWAY_API = tuple(r for r in RESOURCES if r not in GATEWAY_API)

REASONS = {
    400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 405: "MethodNotAllowed",
    409: "Conflict", 410: "Expired", 415: "UnsupportedMediaType", 422: "Invalid", 429: "TooManyRequests",
    500: "InternalError", 503: "ServiceUnavailable",
}


def status_obj(code: int, message: str, reason: str | None = None, details: dict | None = None) -> dict:
    out = {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason or REASONS.get(code, "Unknown"), "code": code,
    }
    if details:
        out["details"] = details
    return out


class ApiFailure(Exception):
    def __init__(self, code: int, message: str, reason: str | None = None, details: dict | None = None,
                 headers: dict | None = None):
        super().__init__(message)
        self.status = status_obj(code, message, reason, details)
        self.headers = headers or {}

    def response(self) -> web.Response:
        return web.json_response(self.status, status=self.status["code"], headers=self.headers)


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


def _labels_match(selector: str | None, obj: dict) -> bool:
    if not selector:
        return True
    labels = (obj.get("metadata") or {}).get("labels") or {}
    for req in (r.strip() for r in selector.split(",")):
        if not req:
            continue
        if "!=" in req:
            k, v = (x.strip() for x in req.split("!=", 1))
            if labels.get(k) == v:
                return False
        elif "==" in req or "=" in req:
            k, v = (x.strip() for x in req.replace("==", "=").split("=", 1))
            if labels.get(k) != v:
                return False
        elif req.startswith("!"):
            if req[1:].strip() in labels:
                return False
        elif req not in labels:
            return False
    return True


FIELDS = {"metadata.name": ("metadata", "name"), "metadata.namespace": ("metadata", "namespace")}


def _parse_fields(selector: str | None) -> list[tuple[tuple[str, str], str, bool]]:
    out = []
    for req in (r.strip() for r in (selector or "").split(",")):
        if not req:
            continue
        neg = "!=" in req
        k, v = (x.strip() for x in req.replace("!=", "=").replace("==", "=").split("=", 1))
        if k not in FIELDS:
            raise ApiFailure(400, f'field label not supported: {k}')
        out.append((FIELDS[k], v, neg))
    return out


def _fields_match(reqs, obj: dict) -> bool:
    for (a, b), v, neg in reqs:
        actual = (obj.get(a) or {}).get(b) or ""
        if (actual == v) == neg:
            return False
    return True


@dataclass
class _Event:
    rv: int
    res: Res
    type: str
    obj: dict
    old: dict | None


@dataclass(eq=False)
class _Watcher:
    res: Res
    namespace: str | None
    labels: str | None
    fields: list
    request: web.Request
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)

    def translate(self, ev: _Event) -> tuple[str, dict] | None:
        """The event this watcher sees (selectors can turn a change into ADDED or DELETED)."""
        if ev.res != self.res:
            return None

        def passes(o):
            if o is None:
                return False
            if self.namespace and (o.get("metadata") or {}).get("namespace") != self.namespace:
                return False
            return _labels_match(self.labels, o) and _fields_match(self.fields, o)

        now, before = passes(ev.obj), passes(ev.old)
        if ev.type == "DELETED":
            return ("DELETED", ev.obj) if before or now else None
        if now and before:
            return "MODIFIED", ev.obj
        if now:
            return "ADDED", ev.obj
        if before:
            gone = copy.deepcopy(ev.old)
            gone["metadata"]["resourceVersion"] = str(ev.rv)
            return "DELETED", gone
        return None


@dataclass
class _Fault:
    status: int
    times: int
    retry_after: float | None
    method: str | None
    path_contains: str | None
    watch: bool | None
    path: str | None = None  # the whole path, where a part would match others too


class FakeKube:
    def __init__(self, *, token: str | None = "test-token", gone_mode: str = "event", history: int = 10_000,
                 bookmark_interval: float | None = None, default_watch_timeout: float = 1800,
                 namespaces: Iterable[str] | None = None, resources: tuple[Res, ...] = RESOURCES):
        assert gone_mode in ("event", "status")
        self.token = token
        self.gone_mode = gone_mode
        self.history_size = history
        self.bookmark_interval = bookmark_interval
        self.default_watch_timeout = default_watch_timeout
        self.rv = 1000
        self.compacted_rv = 0  # events with rv <= this are forgotten
        self.resources = resources
        self.by_path = {(r.group, v, r.plural): r for r in resources for v in r.versions}
        self.by_kind = {r.kind: r for r in resources}
        self.objects: dict[Res, dict[tuple[str, str], dict]] = {r: {} for r in resources}
        self.history: deque[_Event] = deque()
        self.watchers: set[_Watcher] = set()
        self.requests: list[tuple[str, str, dict]] = []
        self.request_times: list[float] = []  # loop time of each entry of ``requests``
        self.latency = 0.0  # seconds each request other than a watch waits before its answer
        self.in_flight = 0  # requests other than watches being answered now, and the most at once
        self.peak_in_flight = 0
        self.faults: list[_Fault] = []
        self.refuse_watches = False
        self.max_watch_seconds: float | None = None
        self._pages: dict[str, tuple[int, list[dict]]] = {}
        self._page_ids = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self.port: int | None = None
        self.strict_namespaces = namespaces is not None
        for ns in namespaces or ():
            self.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})

    # -- lifecycle -----------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, port: int | None = None) -> None:
        app = web.Application(middlewares=[self._middleware])
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(app, shutdown_timeout=0.2, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port if port is not None else (self.port or 0),
                           reuse_address=True)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        """Go away (connections cut); state is kept, so ``start()`` brings the same server back."""
        self.drop_watches()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def kubeconfig(self, path) -> str:
        user = {"token": self.token} if self.token else {}
        text = json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "fake",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "tester", "user": user}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "tester"}}],
        })
        with open(path, "w") as f:
            f.write(text)
        return str(path)

    # -- test controls ------------------------------------------------------------------------

    def fail(self, status: int = 429, *, times: int = 1, retry_after: float | None = None, method: str | None = None,
             path_contains: str | None = None, watch: bool | None = None, path: str | None = None) -> None:
        """Answer the next ``times`` matching requests with ``status`` (and Retry-After)."""
        self.faults.append(_Fault(status, times, retry_after, method, path_contains, watch, path))

    def install(self, res: Res) -> None:
        """Start serving a resource (a CRD installed while clients run)."""
        self.resources = (*self.resources, res)
        self.by_path.update({(res.group, v, res.plural): res for v in res.versions})
        self.by_kind[res.kind] = res
        self.objects.setdefault(res, {})

    def compact(self) -> None:
        """Forget the whole history: watches from any older resourceVersion get 410."""
        self.history.clear()
        self.compacted_rv = self.rv

    def drop_watches(self) -> None:
        """Cut every open watch connection (the client sees a broken stream)."""
        for w in list(self.watchers):
            transport = w.request.transport
            if transport is not None:
                transport.abort()
        self.watchers.clear()

    def end_watches(self) -> None:
        """End every open watch cleanly, as on the server's timeout."""
        for w in list(self.watchers):
            w.queue.put_nowait(None)

    def send_bookmarks(self) -> None:
        for w in list(self.watchers):
            w.queue.put_nowait("BOOKMARK")

    def watch_requests(self, plural: str) -> list[dict]:
        return [q for m, p, q in self.requests if m == "GET" and p.endswith("/" + plural) and q.get("watch") == "true"]

    def list_requests(self, plural: str) -> list[dict]:
        return [q for m, p, q in self.requests if m == "GET" and p.endswith("/" + plural) and q.get("watch") != "true"]

    # -- direct object access (as another client would do) ----------------------------------------

    def _res(self, kind_or_obj) -> Res:
        kind = kind_or_obj if isinstance(kind_or_obj, str) else kind_or_obj["kind"]
        return self.by_kind[kind]

    def get(self, kind: str, namespace: str | None, name: str) -> dict | None:
        res = self._res(kind)
        obj = self.objects[res].get((namespace or "" if res.namespaced else "", name))
        return copy.deepcopy(obj) if obj is not None else None

    def create(self, obj: dict) -> dict:
        return copy.deepcopy(self._create(self._res(obj), copy.deepcopy(obj)))

    def update(self, obj: dict) -> dict:
        """Replace an object as a user's ``kubectl apply`` would (status ignored where a subresource exists)."""
        res = self._res(obj)
        meta = obj.get("metadata") or {}
        return copy.deepcopy(self._update(res, meta.get("namespace") or "", meta["name"], copy.deepcopy(obj)))

    def set_status(self, kind: str, namespace: str | None, name: str, status: dict) -> dict:
        """Write an object's status as another controller would (the status subresource)."""
        res = self._res(kind)
        old = self._existing(res, namespace or "", name)
        return copy.deepcopy(self._store(res, old, {**old, "status": status}, status_only=True))

    def delete(self, kind: str, namespace: str | None, name: str) -> None:
        res = self._res(kind)
        self._delete(res, namespace or "", name)

    # -- the store ----------------------------------------------------------------------------------

    def _bump(self) -> int:
        self.rv += 1
        return self.rv

    def _record(self, res: Res, type_: str, obj: dict, old: dict | None) -> None:
        ev = _Event(self.rv, res, type_, copy.deepcopy(obj), copy.deepcopy(old) if old else None)
        self.history.append(ev)
        while len(self.history) > self.history_size:
            self.compacted_rv = self.history.popleft().rv
        for w in self.watchers:
            w.queue.put_nowait(ev)

    def _key(self, res: Res, ns: str, name: str) -> tuple[str, str]:
        return (ns if res.namespaced else "", name)

    def _create(self, res: Res, obj: dict, ns: str | None = None) -> dict:
        meta = obj.setdefault("metadata", {})
        if res.namespaced:
            meta["namespace"] = ns or meta.get("namespace") or "default"
            if self.strict_namespaces and ("", meta["namespace"]) not in self.objects[self.by_kind["Namespace"]]:
                raise ApiFailure(404, f'namespaces "{meta["namespace"]}" not found', "NotFound",
                                 {"name": meta["namespace"], "kind": "namespaces"})
        else:
            meta.pop("namespace", None)
        name = meta.get("name")
        if not name:
            raise ApiFailure(422, f"{res.kind} is invalid: metadata.name: Required value")
        key = self._key(res, meta.get("namespace", ""), name)
        if key in self.objects[res]:
            raise ApiFailure(409, f'{res.gr} "{name}" already exists', "AlreadyExists",
                             {"name": name, "group": res.group, "kind": res.plural})
        obj["apiVersion"] = res.api_version
        obj["kind"] = res.kind
        meta["uid"] = str(uuid.uuid4())
        meta["generation"] = 1
        meta.setdefault("creationTimestamp", datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))
        meta["resourceVersion"] = str(self._bump())
        self.objects[res][key] = obj
        self._record(res, "ADDED", obj, None)
        return obj

    def _existing(self, res: Res, ns: str, name: str) -> dict:
        obj = self.objects[res].get(self._key(res, ns, name))
        if obj is None:
            raise ApiFailure(404, f'{res.gr} "{name}" not found', "NotFound",
                             {"name": name, "group": res.group, "kind": res.plural})
        return obj

    def _store(self, res: Res, old: dict, new: dict, *, status_only: bool = False) -> dict:
        """Write ``new`` over ``old`` with the real server's rules for what may change."""
        new = copy.deepcopy(new)
        meta = new.setdefault("metadata", {})
        old_meta = old["metadata"]
        for k in ("name", "namespace", "uid", "creationTimestamp", "generation", "resourceVersion"):
            if k in old_meta:
                meta[k] = old_meta[k]
            else:
                meta.pop(k, None)
        new["apiVersion"], new["kind"] = res.api_version, res.kind
        if status_only:
            kept = copy.deepcopy(old)
            if "status" in new:
                kept["status"] = new["status"]
            else:
                kept.pop("status", None)
            new = kept
        elif res.status_subresource:
            if "status" in old:
                new["status"] = copy.deepcopy(old["status"])
            else:
                new.pop("status", None)
        if new == old:
            return old  # a no-op write changes nothing, not even the resourceVersion
        if not status_only:
            spec_like = {k: v for k, v in new.items() if k not in ("metadata", "status")}
            old_spec_like = {k: v for k, v in old.items() if k not in ("metadata", "status")}
            if spec_like != old_spec_like:
                new["metadata"]["generation"] = old_meta.get("generation", 1) + 1
        new["metadata"]["resourceVersion"] = str(self._bump())
        self.objects[res][self._key(res, old_meta.get("namespace", ""), old_meta["name"])] = new
        self._record(res, "MODIFIED", new, old)
        return new

    def _update(self, res: Res, ns: str, name: str, body: dict, *, status_only: bool = False,
                check_rv: bool = False) -> dict:
        old = self._existing(res, ns, name)
        rv = (body.get("metadata") or {}).get("resourceVersion")
        if check_rv and rv and rv != old["metadata"]["resourceVersion"]:
            raise ApiFailure(409, f'Operation cannot be fulfilled on {res.gr} "{name}": the object has been '
                                  "modified; please apply your changes to the latest version and try again",
                             "Conflict", {"name": name, "group": res.group, "kind": res.plural})
        return self._store(res, old, body, status_only=status_only)

    def _delete(self, res: Res, ns: str, name: str) -> dict:
        old = self._existing(res, ns, name)
        del self.objects[res][self._key(res, ns, name)]
        gone = copy.deepcopy(old)
        gone["metadata"]["resourceVersion"] = str(self._bump())
        self._record(res, "DELETED", gone, old)
        return gone

    # -- HTTP -------------------------------------------------------------------------------------------

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Callable) -> web.StreamResponse:
        query = dict(parse_qsl(request.query_string, keep_blank_values=True))
        self.requests.append((request.method, request.path, query))
        self.request_times.append(asyncio.get_running_loop().time())
        if query.get("watch") not in ("true", "1"):
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
            try:
                if self.latency:
                    await asyncio.sleep(self.latency)
                return await self._answer(request, handler, query)
            finally:
                self.in_flight -= 1
        return await self._answer(request, handler, query)

    async def _answer(self, request: web.Request, handler: Callable, query: dict) -> web.StreamResponse:
        try:
            if self.token and request.headers.get("Authorization") != f"Bearer {self.token}":
                raise ApiFailure(401, "Unauthorized")
            is_watch = query.get("watch") in ("true", "1")
            for fault in self.faults:
                if fault.times <= 0:
                    continue
                if fault.method and fault.method != request.method:
                    continue
                if fault.path_contains and fault.path_contains not in request.path:
                    continue
                if fault.path and fault.path != request.path:
                    continue
                if fault.watch is not None and fault.watch != is_watch:
                    continue
                fault.times -= 1
                headers, details = {}, None
                if fault.retry_after is not None:
                    headers["Retry-After"] = str(int(fault.retry_after))
                    details = {"retryAfterSeconds": int(fault.retry_after)}
                raise ApiFailure(fault.status, "injected failure", details=details, headers=headers)
            if is_watch and self.refuse_watches:
                raise ApiFailure(503, "watches refused for the test")
            return await handler(request)
        except ApiFailure as exc:
            return exc.response()

    def _discovery(self, path: str) -> dict | None:
        """The APIResourceList of ``/api/v1`` or ``/apis/GROUP/VERSION``; None for other paths."""
        parts = [p for p in path.split("/") if p]
        if parts == ["api", "v1"]:
            group, version = "", "v1"
        elif len(parts) == 3 and parts[0] == "apis":
            group, version = parts[1], parts[2]
        else:
            return None
        served = [r for r in self.resources if r.group == group and version in r.versions]
        if not served:
            raise ApiFailure(404, "the server could not find the requested resource")
        resources = []
        for r in served:
            resources.append({"name": r.plural, "namespaced": r.namespaced, "kind": r.kind,
                              "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"]})
            if r.status_subresource:
                resources.append({"name": f"{r.plural}/status", "namespaced": r.namespaced, "kind": r.kind,
                                  "verbs": ["get", "patch", "update"]})
        gv = f"{group}/{version}" if group else version
        return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}

    def _route(self, path: str) -> tuple[Res, str | None, str | None, str | None]:
        parts = [p for p in path.split("/") if p]
        if parts[:2] == ["api", "v1"]:
            group, version, rest = "", "v1", parts[2:]
        elif len(parts) >= 3 and parts[0] == "apis":
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise ApiFailure(404, "the server could not find the requested resource")
        ns = None
        if len(rest) >= 2 and rest[0] == "namespaces":
            ns, rest = rest[1], rest[2:]
        if not rest:
            raise ApiFailure(404, "the server could not find the requested resource")
        res = self.by_path.get((group, version, rest[0]))
        if res is None or (ns is not None and not res.namespaced):
            raise ApiFailure(404, "the server could not find the requested resource")
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        if sub is not None and (sub != "status" or not res.status_subresource):
            raise ApiFailure(404, "the server could not find the requested resource")
        return res, ns, name, sub

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        if request.method == "GET":
            discovery = self._discovery(request.path)
            if discovery is not None:
                return web.json_response(discovery)
        res, ns, name, sub = self._route(request.path)
        query = dict(parse_qsl(request.query_string, keep_blank_values=True))
        method = request.method
        if name is None:
            if method == "GET":
                if query.get("watch") in ("true", "1"):
                    return await self._watch(request, res, ns, query)
                return web.json_response(self._list(res, ns, query))
            if method == "POST":
                return web.json_response(self._create(res, await self._body(request), ns), status=201)
            raise ApiFailure(405, "method not allowed")
        ns = ns or ""
        if method == "GET":
            return web.json_response(self._existing(res, ns, name))
        if method == "PUT":
            body = await self._body(request)
            return web.json_response(self._update(res, ns, name, body, status_only=sub == "status", check_rv=True))
        if method == "PATCH":
            if request.content_type != "application/merge-patch+json":
                raise ApiFailure(415, f"the body of the request was in an unknown format: {request.content_type}")
            patch = await self._body(request)
            old = self._existing(res, ns, name)
            merged = merge_patch(old, patch)
            return web.json_response(self._store(res, old, merged, status_only=sub == "status"))
        if method == "DELETE":
            return web.json_response(self._delete(res, ns, name))
        raise ApiFailure(405, "method not allowed")

    async def _body(self, request: web.Request) -> dict:
        try:
            body = json.loads(await request.read())
        except ValueError:
            raise ApiFailure(400, "the request body is not JSON") from None
        if not isinstance(body, dict):
            raise ApiFailure(400, "the request body is not an object")
        return body

    def _matching(self, res: Res, ns: str | None, query: dict) -> list[dict]:
        fields = _parse_fields(query.get("fieldSelector"))
        out = []
        for (ons, _), obj in sorted(self.objects[res].items()):
            if ns and ons != ns:
                continue
            if _labels_match(query.get("labelSelector"), obj) and _fields_match(fields, obj):
                out.append(obj)
        return out

    def _list(self, res: Res, ns: str | None, query: dict) -> dict:
        limit = int(query.get("limit") or 0)
        token = query.get("continue")
        if token:
            page_id, _, offset_s = token.partition(":")
            if page_id not in self._pages:
                raise ApiFailure(400, "invalid continue token")
            rv, items = self._pages[page_id]
            if rv < self.compacted_rv:
                raise ApiFailure(410, "The provided continue parameter is too old to display a consistent list "
                                      "result. You can start a new list without the continue parameter.", "Expired")
            offset = int(offset_s)
        else:
            rv, items, offset = self.rv, [self._strip(o) for o in self._matching(res, ns, query)], 0
        meta: dict[str, Any] = {"resourceVersion": str(rv)}
        if limit and offset + limit < len(items):
            page = items[offset:offset + limit]
            page_id = token.partition(":")[0] if token else str(next(self._page_ids))
            self._pages[page_id] = (rv, items)
            meta["continue"] = f"{page_id}:{offset + limit}"
            meta["remainingItemCount"] = len(items) - offset - limit
        else:
            page = items[offset:]
        return {"apiVersion": res.api_version, "kind": f"{res.kind}List", "metadata": meta, "items": page}

    @staticmethod
    def _strip(obj: dict) -> dict:
        # Shallow: stored objects are never changed in place (every write stores a new copy),
        # and a list of 10,000 must not deep-copy them all on its first page.
        return {k: v for k, v in obj.items() if k not in ("apiVersion", "kind")}

    async def _watch(self, request: web.Request, res: Res, ns: str | None, query: dict) -> web.StreamResponse:
        fields = _parse_fields(query.get("fieldSelector"))
        rv_s = query.get("resourceVersion") or ""
        from_rv = int(rv_s) if rv_s not in ("", "0") else None
        if from_rv is not None and from_rv < self.compacted_rv:
            message = f"too old resource version: {from_rv} ({self.compacted_rv})"
            if self.gone_mode == "status":
                raise ApiFailure(410, message, "Expired")
        timeout = float(query.get("timeoutSeconds") or self.default_watch_timeout)
        if self.max_watch_seconds is not None:  # a proxy in the way that cuts streams short
            timeout = min(timeout, self.max_watch_seconds)
        bookmarks = query.get("allowWatchBookmarks") == "true"
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)

        async def send(type_: str, obj: dict) -> None:
            await resp.write(json.dumps({"type": type_, "object": obj}).encode() + b"\n")

        if from_rv is not None and from_rv < self.compacted_rv:
            await send("ERROR", status_obj(410, message, "Expired"))
            await resp.write_eof()
            return resp
        watcher = _Watcher(res, ns, query.get("labelSelector"), fields, request)
        self.watchers.add(watcher)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        sent_rv = from_rv if from_rv is not None else self.rv
        try:
            if from_rv is None:  # "start at most recent": synthetic ADDED for what exists
                for obj in self._matching(res, ns, query):
                    await send("ADDED", obj)
            else:
                for ev in list(self.history):
                    if ev.rv > from_rv:
                        sent_rv = ev.rv
                        if seen := watcher.translate(ev):
                            await send(*seen)
            while True:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                wait = min(remaining, self.bookmark_interval) if bookmarks and self.bookmark_interval else remaining
                try:
                    item = await asyncio.wait_for(watcher.queue.get(), wait)
                except asyncio.TimeoutError:
                    item = "BOOKMARK" if bookmarks and self.bookmark_interval else None
                    if item is None:
                        break
                if item is None:
                    break
                if item == "BOOKMARK":
                    if bookmarks and watcher.queue.empty():
                        sent_rv = self.rv
                        await send("BOOKMARK", {"kind": res.kind, "apiVersion": res.api_version,
                                                "metadata": {"resourceVersion": str(self.rv)}})
                    continue
                if item.rv <= sent_rv:
                    continue  # already replayed from history
                seen = watcher.translate(item)
                sent_rv = item.rv
                if seen:
                    await send(*seen)
            await resp.write_eof()
        except (ConnectionError, RuntimeError):
            pass  # the client went away, or we cut it
        finally:
            self.watchers.discard(watcher)
        return resp


# -- helpers for the tests ----------------------------------------------------------------------------

import contextlib  # noqa: E402

import pytest  # noqa: E402

from polling import eventually  # noqa: E402,F401  (the kube tests import it from here)


@contextlib.asynccontextmanager
async def running(coro):
    """Run a coroutine as a task for the block; cancel it (and let it clean up) afterwards."""
    task = asyncio.ensure_future(coro)
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 5)
        if not task.cancelled() and task.exception() is not None:
            raise task.exception()


def apiendpoint(ns: str, name: str, **spec: Any) -> dict:
    spec.setdefault("path", f"/{name}")
    spec.setdefault("backendService", "svc")
    return {"apiVersion": "crdgate.io/v1", "kind": "APIEndpoint", "metadata": {"namespace": ns, "name": name},
            "spec": spec}


def service(ns: str, name: str, **spec: Any) -> dict:
    spec.setdefault("ports", [{"port": 80}])
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"namespace": ns, "name": name}, "spec": spec}


def secret(ns: str, name: str, labels: dict | None = None, **data: str) -> dict:
    meta: dict = {"namespace": ns, "name": name}
    if labels:
        meta["labels"] = labels
    return {"apiVersion": "v1", "kind": "Secret", "metadata": meta, "type": "Opaque", "data": data}


def referencegrant(ns: str, name: str, from_namespace: str, to_kind: str = "Service", to_name: str | None = None,
                   from_kind: str = "APIEndpoint", version: str = "v1beta1") -> dict:
    to: dict = {"group": "", "kind": to_kind}
    if to_name:
        to["name"] = to_name
    from_group = "crdgate.io" if from_kind == "APIEndpoint" else "networking.k8s.io"
    return {"apiVersion": f"gateway.networking.k8s.io/{version}", "kind": "ReferenceGrant",
            "metadata": {"namespace": ns, "name": name},
            "spec": {"from": [{"group": from_group, "kind": from_kind, "namespace": from_namespace}], "to": [to]}}


def namespace(name: str, labels: dict | None = None) -> dict:
    meta: dict = {"name": name}
    if labels:
        meta["labels"] = labels
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": meta}


def gatewayclass(name: str, controller: str = "crdgate.io/gateway-controller") -> dict:
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass", "metadata": {"name": name},
            "spec": {"controllerName": controller}}


def gateway(ns: str, name: str, class_name: str = "crdgate", **spec: Any) -> dict:
    spec.setdefault("listeners", [{"name": "http", "port": 80, "protocol": "HTTP"}])
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway", "metadata": {"namespace": ns, "name": name},
            "spec": {"gatewayClassName": class_name, **spec}}


def httproute(ns: str, name: str, gateway: str = "gw", gateway_namespace: str | None = None, **spec: Any) -> dict:
    parent: dict = {"name": gateway}
    if gateway_namespace:
        parent["namespace"] = gateway_namespace
    spec.setdefault("parentRefs", [parent])
    spec.setdefault("rules", [{"backendRefs": [{"name": "svc", "port": 80}]}])
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"namespace": ns, "name": name}, "spec": spec}


def ingress(ns: str, name: str, class_name: str | None = "crdgate", tls: list[str] = (),
            annotations: dict | None = None) -> dict:
    spec: dict = {"rules": [{"host": f"{name}.example.com"}]}
    if class_name:
        spec["ingressClassName"] = class_name
    if tls:
        spec["tls"] = [{"hosts": [f"{name}.example.com"], "secretName": s} for s in tls]
    meta: dict = {"namespace": ns, "name": name}
    if annotations:
        meta["annotations"] = annotations
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": meta, "spec": spec}


@pytest.fixture
async def fake_kube():
    """A FakeKube on a random loopback port; adjust its attributes before use."""
    fk = FakeKube()
    await fk.start()
    yield fk
    await fk.stop()


@pytest.fixture
async def kube_api(fake_kube, tmp_path):
    """A KubeAPI over the real kubernetes-asyncio client, configured by a kubeconfig file."""
    from controller.kube import make_api_client
    from controller.kubeapi import KubeAPI

    client = await make_api_client(fake_kube.kubeconfig(tmp_path / "kubeconfig"))
    yield KubeAPI(client)
    await client.close()
