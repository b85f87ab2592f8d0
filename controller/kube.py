"""The Kubernetes source: reflectors over the API server feeding the Store.

``make_api_client`` builds the client (kubeconfig file and context, or the
pod's service account in cluster). ``KubeSource`` starts one Reflector
(controller/reflector.py) per kind and namespace and merges them into the
Store (controller/store.py), which the publisher compiles.

Secrets are not watched wholesale; the Store holds only the ones routes use:

- Secrets referenced by name (``referenced_secrets``): APIEndpoint
  ``spec.auth.secretRef`` and ``spec.tls.secretName``; on our Ingresses,
  ``spec.tls[].secretName`` and the ``crdgate.io/auth-secret`` /
  ``nginx.ingress.kubernetes.io/auth-secret`` annotations; the gateway's
  ``--default-auth-secret``. Each gets a reflector of its own, a list/watch in
  its namespace with ``fieldSelector=metadata.name=<name>``: no labels needed
  on user Secrets, and nothing cached that no route names. The set is
  recomputed whenever APIEndpoints, Ingresses or IngressClasses change, and
  reflectors start and stop to follow it. The cost is one watch connection
  per referenced Secret.
- Namespace-default auth Secrets, which users opt in with the label
  ``crdgate.io/default-auth`` (controller/authbuild.py): one label-selector
  list/watch per watched namespace.

Both need only get/list/watch on Secrets (RBAC cannot narrow list/watch to
names, so the ClusterRole grants them on all Secrets; the cache stays narrow).

Gateway API's kinds (ReferenceGrant, controller/refgrant.py; GatewayClass,
Gateway and HTTPRoute, controller/gatewayapi/) are CRDs the cluster may not
have. One mechanism serves them all (``OPTIONAL_KINDS``): discovery picks the
version served (v1 preferred, else v1beta1) and one reflector per watched
namespace follows it (one in all for the cluster-scoped GatewayClass). The
kinds not served are logged once, in one line, and count as listed with no
objects (no grants: every cross-namespace reference is refused; no routes from
them), so the first table never waits for them; discovery is tried again every
``rediscover_seconds``, so installing the CRDs later takes effect without a
restart. Namespaces are read too (their labels decide which routes a Gateway
listener admits with ``from: Selector``): all of them, or only the watched
ones, by name. A 403 on the first list of any of these (a ClusterRole older than
this version) counts as an empty list, logged, and retried: it never holds
back the first table (controller/reflector.py, ``forbidden_is_empty``).

``wire`` assembles everything ``crdgate run --kube`` needs: the source, the
status writer (controller/status.py) and leader election (controller/leader.py).
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from typing import Callable, Iterable, Sequence

from aiohttp import BasicAuth
from aiohttp.helpers import get_env_proxy_for_url
from kubernetes_asyncio.client import ApiClient, Configuration
from kubernetes_asyncio.config import (
    ConfigException,
    load_incluster_config,
    load_kube_config,
    refresh_token,
)

from controller.authbuild import A_SECRET, DEFAULT_AUTH_LABEL, NGINX_SECRET
from controller.backoff import Backoff
from controller.gatewayapi.objects import CONTROLLER_NAME
from controller.ingressclass import is_default_class, owns_ingress
from controller.kubeapi import (
    APIENDPOINTS,
    ENDPOINTSLICES,
    GATEWAYCLASSES,
    GATEWAYS,
    GRPCROUTES,
    HTTPROUTES,
    INGRESSCLASSES,
    INGRESSES,
    NAMESPACES,
    REFERENCEGRANTS,
    SECRETS,
    SERVICES,
    KubeAPI,
    Resource,
)
from controller.leader import LeaderElector, without_election
from controller.reflector import Reflector
from controller.status import DEFAULT_BURST, DEFAULT_QPS, StatusWriter
from controller.store import (
    APIENDPOINT,
    GATEWAY,
    INGRESS,
    INGRESSCLASS,
    NAMESPACE,
    REFERENCEGRANT,
    SECRET,
    SERVICE,
    Snapshot,
    Store,
    object_key,
    same_input,
)
from gateway.errors import KubeConfigError
from yarl import URL

log = logging.getLogger("crdgate.controller.kube")


# Kinds watched per namespace, with the label selector that narrows them.
# EndpointSlices without a Service (hand-made, or for headless mirrors) can
# never back a route: the slice controller labels the ones that can.
NAMESPACED = (
    (APIENDPOINTS, None),
    (SERVICES, None),
    (ENDPOINTSLICES, "kubernetes.io/service-name"),
    (INGRESSES, None),
)

# CRDs the cluster may not have (Gateway API's): kind -> the versions to try, preferred first.
# Discovered and followed by KubeSource._follow_optional, all alike.
OPTIONAL_KINDS: dict[str, tuple[Resource, ...]] = {
    resources[0].kind: resources for resources in (REFERENCEGRANTS, GATEWAYCLASSES, GATEWAYS, HTTPROUTES, GRPCROUTES)
}

DEFAULT_INGRESS_CLASS = "crdgate"

# Object names are RFC 1123 subdomains; anything else could not be a Secret and
# must not reach a field selector (where "," and "=" mean something).
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


class _ApiClient(ApiClient):
    """An ApiClient that also stops its token refresher when closed."""

    _refresher: asyncio.Task | None = None

    async def close(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
        await super().close()


async def make_api_client(kubeconfig: str | None = None, context: str | None = None) -> ApiClient:
    """A client for the cluster: ``kubeconfig`` (or $KUBECONFIG) if given, else in cluster, else ~/.kube/config.

    The connection pool is unbounded: every reflector holds one connection for
    the life of its watch, and a pool cap would starve lists and status patches
    behind them.
    """
    cfg = Configuration()
    loader = None
    path = kubeconfig or os.environ.get("KUBECONFIG")
    in_cluster = not (path or context) and bool(os.environ.get("KUBERNETES_SERVICE_HOST"))
    try:
        if in_cluster:
            load_incluster_config(client_configuration=cfg)  # re-reads the rotated token itself
        else:
            loader = await load_kube_config(
                config_file=path, context=context, client_configuration=cfg, persist_config=False
            )
    except (ConfigException, OSError, KeyError, ValueError, TypeError) as exc:
        where = "the in-cluster service account" if in_cluster else (path or "~/.kube/config")
        if context:
            where += f" (context {context!r})"
        raise KubeConfigError(f"cannot load Kubernetes client configuration from {where}: {exc}") from exc
    cfg.connection_pool_maxsize = 0
    proxy = None if cfg.proxy else _env_proxy(cfg.host)
    if proxy is not None:
        cfg.proxy = str(proxy[0])
        if proxy[1] is not None:
            cfg.proxy_headers = {"Proxy-Authorization": proxy[1].encode()}
    client = _ApiClient(configuration=cfg)
    # kubernetes-asyncio opens its aiohttp session with trust_env=True: every request then
    # looks up ~/.netrc and the proxy variables in a worker thread, two thread hand-offs per
    # request (a third of a status write's CPU at 10,000 objects). The proxy variables were
    # read once above, as client-go reads them (HTTPS_PROXY, NO_PROXY); netrc was never
    # meant for the API server (tokens and client certificates authenticate to it).
    client.rest_client.pool_manager._trust_env = False
    if loader is not None:
        # Exec-plugin and GCP tokens expire; the library's refresher renews them
        # (it returns at once for static tokens and client certificates).
        client._refresher = asyncio.create_task(refresh_token(loader, cfg), name="kube-token-refresh")
        client._refresher.add_done_callback(_log_refresher_end)
    return client


def _env_proxy(host: str | None) -> tuple[URL, BasicAuth | None] | None:
    """The proxy the environment names for the API server (HTTPS_PROXY, honouring NO_PROXY), if any."""
    if not host:
        return None
    try:
        return get_env_proxy_for_url(URL(host))
    except LookupError:
        return None


def _log_refresher_end(task: asyncio.Task) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("kubeconfig token refresh stopped: %s", task.exception())


# -- which Secrets routes reference ----------------------------------------------


def _objects(source: Store | Snapshot, kind: str) -> Iterable[dict]:
    if isinstance(source, Snapshot):
        return source.of(kind).values()
    found = []
    for key in source.keys(kind):
        ns, _, name = key.partition("/")
        obj = source.get(kind, ns, name)
        if obj is not None:
            found.append(obj)
    return found


def _name(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def referenced_secrets(
    source: Store | Snapshot,
    defaults: Iterable[tuple[str, str]] = (),
    ingress_class: str = DEFAULT_INGRESS_CLASS,
) -> set[tuple[str, str]]:
    """``(namespace, name)`` of every Secret that a route of this gateway names, plus ``defaults``.

    Reads raw objects, so an invalid spec still has its Secret watched: once
    the spec is fixed, the Secret is already there.
    """
    refs = set(defaults)
    for ep in _objects(source, APIENDPOINT):
        refs |= object_secret_refs(APIENDPOINT, ep, ingress_class, False)
    default_class = is_default_class(_objects(source, INGRESSCLASS), ingress_class)
    for ing in _objects(source, INGRESS):
        refs |= object_secret_refs(INGRESS, ing, ingress_class, default_class)
    for gw in _objects(source, GATEWAY):
        refs |= object_secret_refs(GATEWAY, gw, ingress_class, default_class)
    return refs


def object_secret_refs(kind: str, obj: dict, ingress_class: str, default_class: bool) -> frozenset[tuple[str, str]]:
    """The Secrets one APIEndpoint, Ingress or Gateway names (an Ingress only if it is ours)."""
    refs: set[tuple[str, str]] = set()
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace") or ""
    if kind == GATEWAY:  # every Gateway's: whether its class is ours is the compile's business
        spec = obj.get("spec")
        for listener in (spec.get("listeners") if isinstance(spec, dict) else None) or ():
            tls = listener.get("tls") if isinstance(listener, dict) else None
            for ref in (tls.get("certificateRefs") if isinstance(tls, dict) else None) or ():
                if isinstance(ref, dict) and _name(ref.get("name")) and ref.get("kind", "Secret") == "Secret":
                    refs.add((_name(ref.get("namespace")) or ns, ref["name"]))
        return frozenset(refs)
    if kind == APIENDPOINT:
        spec = obj.get("spec")
        if not isinstance(spec, dict):
            return frozenset()
        auth = spec.get("auth")
        ref = auth.get("secretRef") if isinstance(auth, dict) else None
        if isinstance(ref, dict) and _name(ref.get("name")):
            refs.add((_name(ref.get("namespace")) or ns, ref["name"]))
        tls = spec.get("tls")
        if isinstance(tls, dict) and _name(tls.get("secretName")):
            refs.add((ns, tls["secretName"]))
        return frozenset(refs)
    if not owns_ingress(obj, ingress_class, default_class):
        return frozenset()
    spec = obj.get("spec") or {}
    for tls in (spec.get("tls") if isinstance(spec, dict) else None) or ():
        if isinstance(tls, dict) and _name(tls.get("secretName")):
            refs.add((ns, tls["secretName"]))
    annotations = meta.get("annotations") or {}
    for annotation in (A_SECRET, NGINX_SECRET):
        value = _name(annotations.get(annotation))
        if value:
            ref_ns, sep, ref_name = value.strip().rpartition("/")
            refs.add((ref_ns if sep else ns, ref_name))
    return frozenset(refs)


class SecretReferences:
    """``referenced_secrets`` of a Store, kept up to date object by object.

    A watch event costs a look at that one object, not at every route: with
    10,000 APIEndpoints, recomputing the whole set on each event would sit on
    the event loop in front of the next request.
    """

    def __init__(self, store: Store, ingress_class: str = DEFAULT_INGRESS_CLASS):
        self.store = store
        self.ingress_class = ingress_class
        self._by_object: dict[tuple[str, str], frozenset[tuple[str, str]]] = {}
        self._counts: dict[tuple[str, str], int] = {}
        self._dirty: set[tuple[str, str]] = set()  # (kind, key) to look at again
        self._dirty_kinds: set[str] = set()  # kinds to look at whole

    def changed(self, kind: str, keys: Iterable[str] | None = None) -> None:
        """Objects of ``kind`` changed (``keys``; None: any of them)."""
        if kind == INGRESSCLASS:
            self._dirty_kinds.add(INGRESS)  # the default class decides which Ingresses are ours
        elif keys is None:
            self._dirty_kinds.add(kind)
        else:
            self._dirty.update((kind, key) for key in keys)

    def current(self) -> set[tuple[str, str]]:
        """Bring the set up to date with the changes reported; the Secrets named now."""
        default_class = is_default_class(_objects(self.store, INGRESSCLASS), self.ingress_class)
        dirty = self._dirty
        for kind in self._dirty_kinds:
            dirty |= {k for k in self._by_object if k[0] == kind}
            dirty |= {(kind, key) for key in self.store.keys(kind)}
        self._dirty, self._dirty_kinds = set(), set()
        for kind, key in dirty:
            ns, _, name = key.partition("/")
            obj = self.store.get(kind, ns, name)
            refs = frozenset() if obj is None else object_secret_refs(kind, obj, self.ingress_class, default_class)
            self._set(kind, key, refs)
        return set(self._counts)

    def _set(self, kind: str, key: str, refs: frozenset[tuple[str, str]]) -> None:
        old = self._by_object.get((kind, key), frozenset())
        if old == refs:
            return
        for ref in old - refs:
            self._counts[ref] -= 1
            if not self._counts[ref]:
                del self._counts[ref]
        for ref in refs - old:
            self._counts[ref] = self._counts.get(ref, 0) + 1
        if refs:
            self._by_object[(kind, key)] = refs
        else:
            self._by_object.pop((kind, key), None)


# -- merging several reflectors into one Store kind --------------------------------


class KindFeed:
    """One kind of the Store, fed by several reflectors ("parts": namespaces, or Secrets).

    A relist of one part must only replace that part, and the kind counts as
    synced only once every part expected at start has listed: so the Store
    gets ``replace`` with the union of all parts, first when the last expected
    part has listed, then on each relist or when a part goes away. An object
    seen by two parts (a Secret both named by a route and labelled as a
    namespace default) stays while either still has it.
    """

    def __init__(self, store: Store, kind: str, on_change: Callable[[str, list[str] | None], None] | None = None):
        self.store = store
        self.kind = kind
        self.on_change = on_change
        self.parts: dict[str, dict[str, dict]] = {}
        self.pending: set[str] = set()
        self.synced = asyncio.Event()

    def expect(self, part: str) -> "_PartSink":
        """Register a part; before the first sync, the kind waits for its list."""
        if not self.synced.is_set():
            self.pending.add(part)
        return _PartSink(self, part)

    def drop(self, part: str) -> None:
        """Forget a part (and the objects only it had); also releases a part never listed."""
        self.pending.discard(part)
        had = self.parts.pop(part, None)
        if had or not self.synced.is_set():
            self._publish()

    def _replace(self, part: str, objects: list[dict]) -> None:
        self.parts[part] = {object_key(o): o for o in objects}
        self.pending.discard(part)
        self._publish()

    def settle(self, obj: dict) -> dict:
        """An object as it arrives, made as cheap to keep as the Store can (``Store.settle``):
        in a relist, an unchanged object costs a lookup and nothing more."""
        return self.store.settle(self.kind, obj)

    def _apply(self, part: str, event_type: str, obj: dict) -> None:
        key = object_key(obj)
        cached = self.store.get(self.kind, *key.split("/", 1)) if event_type != "DELETED" else None
        bucket = self.parts.setdefault(part, {})
        if event_type == "DELETED":
            bucket.pop(key, None)
        else:
            bucket[key] = obj
        if not self.synced.is_set():
            return  # the first publish takes the union of the parts
        if event_type == "DELETED":
            for other in self.parts.values():
                if key in other:  # gone from this part only
                    event_type, obj = "MODIFIED", other[key]
                    break
        self.store.apply(self.kind, event_type, obj)
        if self.on_change and not (cached is not None and same_input(cached, obj)):  # a status echo names no Secret
            self.on_change(self.kind, [key])

    def _publish(self) -> None:
        if self.pending:
            return
        self.store.replace(self.kind, [o for part in self.parts.values() for o in part.values()])
        self.synced.set()
        if self.on_change:
            self.on_change(self.kind, None)


class _PartSink:
    """The Sink a Reflector writes into: one part of a KindFeed."""

    def __init__(self, feed: KindFeed, part: str):
        self.feed = feed
        self.part = part
        self.closed = False

    def replace(self, objects: list[dict]) -> None:
        if not self.closed:
            self.feed._replace(self.part, objects)

    def apply(self, event_type: str, obj: dict) -> None:
        if not self.closed:
            self.feed._apply(self.part, event_type, obj)

    def settle(self, obj: dict) -> dict:
        return self.feed.settle(obj)


# -- the source ----------------------------------------------------------------------

_REFERENCES = "references"  # the gate part: Secrets sync only after the first reference scan


class KubeSource:
    """Every reflector of the process, feeding one Store. ``await run()`` until cancelled.

    ``namespaces``: the namespaces to watch (empty: all, which needs cluster-wide
    list/watch). Referenced Secrets outside them are not watched (the compiler
    reports them as not found), except ``default_secrets``. ``publish_service``
    (namespace, name) is watched even outside ``namespaces``, for the status
    writer. The other keyword arguments tune the reflectors (tests shorten them).
    """

    def __init__(
        self,
        store: Store,
        api: KubeAPI | ApiClient,
        namespaces: Sequence[str] = (),
        *,
        ingress_class: str = DEFAULT_INGRESS_CLASS,
        default_secrets: Iterable[tuple[str, str]] = (),
        publish_service: tuple[str, str] | None = None,
        timeout_seconds: int = 300,
        page_size: int = 500,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        min_watch_seconds: float = 1.0,
        rediscover_seconds: float = 60.0,
        sleep: Callable | None = None,
    ):
        self.store = store
        self.api = KubeAPI.of(api)
        self.namespaces = tuple(dict.fromkeys(namespaces))
        self.ingress_class = ingress_class
        self.default_secrets = frozenset(default_secrets)
        self.publish_service = publish_service
        self._reflector_args = dict(
            timeout_seconds=timeout_seconds, page_size=page_size, min_watch_seconds=min_watch_seconds
        )
        self._backoff_args: dict = dict(base=backoff_base, cap=backoff_cap)
        if sleep is not None:
            self._backoff_args["sleep"] = sleep
        self.rediscover_seconds = rediscover_seconds
        self.served: dict[str, Resource] = {}  # optional kind -> the version watched, once discovered
        self._refs_changed = asyncio.Event()
        self._refs = SecretReferences(store, ingress_class)
        self.feeds: dict[str, KindFeed] = {}
        self.reflectors: list[Reflector] = []
        self._secret_tasks: dict[tuple[str, str], tuple[asyncio.Task, _PartSink]] = {}
        self._tg: asyncio.TaskGroup | None = None

    @property
    def grant_resource(self) -> Resource | None:
        """The ReferenceGrant version watched, once discovered."""
        return self.served.get(REFERENCEGRANT)

    @property
    def watched_secrets(self) -> frozenset[tuple[str, str]]:
        """``(namespace, name)`` of the Secrets watched by name right now."""
        return frozenset(self._secret_tasks)

    def _start(self, resource: Resource, sink: _PartSink, **kw) -> asyncio.Task:
        r = Reflector(self.api, resource, sink, backoff=Backoff(**self._backoff_args), transform=sink.settle,
                      **self._reflector_args, **kw)
        self.reflectors.append(r)
        assert self._tg is not None
        task = self._tg.create_task(r.run(), name=f"reflector {r}")
        task.add_done_callback(lambda _t: self.reflectors.remove(r) if r in self.reflectors else None)
        return task

    async def run(self) -> None:
        def refs_changed(kind: str, keys: list[str] | None) -> None:
            self._refs.changed(kind, keys)
            self._refs_changed.set()

        for resource, _ in NAMESPACED:
            follow = resource.kind in (APIENDPOINT, INGRESS)
            self.feeds[resource.kind] = KindFeed(self.store, resource.kind, refs_changed if follow else None)
        self.feeds[INGRESSCLASS] = KindFeed(self.store, INGRESSCLASS, refs_changed)
        self.feeds[SECRET] = secrets = KindFeed(self.store, SECRET)
        secrets.expect(_REFERENCES)
        self.feeds[NAMESPACE] = KindFeed(self.store, NAMESPACE)
        optional_sinks: dict[str, list[tuple[str | None, _PartSink]]] = {}
        for kind, resources in OPTIONAL_KINDS.items():
            # A Gateway's HTTPS listeners name their certificates' Secrets.
            self.feeds[kind] = feed = KindFeed(self.store, kind, refs_changed if kind == GATEWAY else None)
            parts = self.namespaces if resources[0].namespaced and self.namespaces else (None,)
            optional_sinks[kind] = [(ns, feed.expect(ns or "*")) for ns in parts]
        try:
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                for ns in self.namespaces or (None,):
                    for resource, selector in NAMESPACED:
                        self._start(resource, self.feeds[resource.kind].expect(ns or "*"),
                                    namespace=ns, label_selector=selector)
                    self._start(SECRETS, secrets.expect(f"label:{ns or '*'}"),
                                namespace=ns, label_selector=DEFAULT_AUTH_LABEL)
                self._start(INGRESSCLASSES, self.feeds[INGRESSCLASS].expect("*"))
                # Namespaces: only the watched ones (routes elsewhere are not read), by name.
                for ns in self.namespaces or (None,):
                    self._start(NAMESPACES, self.feeds[NAMESPACE].expect(ns or "*"),
                                field_selector=f"metadata.name={ns}" if ns else None, forbidden_is_empty=True)
                if self.publish_service and self.namespaces and self.publish_service[0] not in self.namespaces:
                    ns, name = self.publish_service
                    self._start(SERVICES, self.feeds[SERVICE].expect(f"publish:{ns}/{name}"),
                                namespace=ns, field_selector=f"metadata.name={name}")
                tg.create_task(self._follow_secrets(), name="secret references")
                tg.create_task(self._follow_optional(optional_sinks), name="optional kinds")
        finally:
            self._tg = None
            self._secret_tasks.clear()

    async def _follow_secrets(self) -> None:
        """Keep one reflector per referenced Secret, following the objects that reference them."""
        for kind in (APIENDPOINT, INGRESS, INGRESSCLASS, GATEWAY):  # a Gateway names its certificates
            await self.feeds[kind].synced.wait()
        while True:
            self._refs_changed.clear()
            try:
                wanted = self._refs.current()
            except Exception:  # noqa: BLE001 — a bug here must not stop every reflector
                log.exception("computing referenced Secrets failed; keeping the current set")
                wanted = set(self._secret_tasks) - self.default_secrets
            if self.namespaces:
                wanted = {ref for ref in wanted if ref[0] in self.namespaces}
            self._reconcile_secrets(wanted | self.default_secrets)
            self.feeds[SECRET].drop(_REFERENCES)  # from now on the Secret kind may sync
            await self._refs_changed.wait()

    async def _follow_optional(self, sinks: dict[str, list[tuple[str | None, _PartSink]]]) -> None:
        """Find the version served of each optional kind, then start its reflectors (one per part).

        Kinds not served yet are tried again every ``rediscover_seconds``; the
        first time, they are logged (once, together) and listed as empty, so
        that the first table need not wait for them."""
        backoff = Backoff(**self._backoff_args)
        missing = list(sinks)
        told = False
        while missing:
            found: dict[str, Resource] = {}
            try:
                for kind in missing:
                    resource = await self._discover(OPTIONAL_KINDS[kind])
                    if resource is not None:
                        found[kind] = resource
            except Exception as exc:  # noqa: BLE001 — retried like a failed list; never fatal to the source
                delay = backoff.next_delay()
                log.warning("discovery of %s failed: %s; retrying in %.1fs", ", ".join(missing), exc, delay)
                await backoff.sleep(delay)
                continue
            backoff.reset()
            for kind, resource in found.items():
                self.served[kind] = resource
                log.info("watching %s at %s", kind, resource.api_version)
                for ns, sink in sinks[kind]:
                    self._start(resource, sink, namespace=ns, forbidden_is_empty=True)
            missing = [kind for kind in missing if kind not in found]
            if not missing:
                return
            if not told:
                log.warning("%s", _not_served_message(missing))
                told = True
                for kind in missing:
                    for _, sink in sinks[kind]:
                        sink.replace([])  # listed, empty: the first table need not wait for it
            await backoff.sleep(self.rediscover_seconds)

    async def _discover(self, resources: tuple[Resource, ...]) -> Resource | None:
        for resource in resources:  # preferred first
            if await self.api.serves(resource):
                return resource
        return None

    def _reconcile_secrets(self, wanted: set[tuple[str, str]]) -> None:
        feed = self.feeds[SECRET]
        for ref in self._secret_tasks.keys() - wanted:
            task, sink = self._secret_tasks.pop(ref)
            sink.closed = True
            task.cancel()
            feed.drop(f"{ref[0]}/{ref[1]}")
            log.debug("stopped watching Secret %s/%s", *ref)
        for ref in sorted(wanted - self._secret_tasks.keys()):
            ns, name = ref
            if not (_DNS_SUBDOMAIN.fullmatch(ns or "") and _DNS_SUBDOMAIN.fullmatch(name or "")):
                continue  # cannot name a Secret; the compiler reports the reference
            sink = feed.expect(f"{ns}/{name}")
            task = self._start(SECRETS, sink, namespace=ns, field_selector=f"metadata.name={name}")
            self._secret_tasks[ref] = (task, sink)
            log.debug("watching Secret %s/%s", ns, name)


def _not_served_message(kinds: Sequence[str]) -> str:
    """The one warning for the optional kinds the API server does not serve: what it means, what to do."""
    group = OPTIONAL_KINDS[kinds[0]][0].group
    text = f"{', '.join(kinds)} ({group}) not served by the API server"
    if REFERENCEGRANT in kinds:
        text += (
            "; no ReferenceGrants, so references to Services and Secrets in other namespaces are refused "
            "(RefNotPermitted): run with --allow-cross-namespace-refs on to allow them all"
        )
    routed = [kind for kind in kinds if kind != REFERENCEGRANT]
    if routed:
        text += f"; no {', '.join(routed)} objects are read"
    return text + ". Install the Gateway API CRDs to use them (docs/gateway-api.md); they are picked up without a restart"


# -- wiring for `crdgate run --kube` ------------------------------------------------------


def _ns_name(value: str, flag: str) -> tuple[str, str]:
    ns, sep, name = value.partition("/")
    if not sep or not _DNS_SUBDOMAIN.fullmatch(ns) or not _DNS_SUBDOMAIN.fullmatch(name):
        raise ValueError(f"{flag}: expected NAMESPACE/NAME, got {value!r}")
    return ns, name


async def wire(
    store: Store,
    api: ApiClient,
    namespaces: Sequence[str] = (),
    *,
    ingress_class: str = DEFAULT_INGRESS_CLASS,
    gateway_controller_name: str = CONTROLLER_NAME,
    identity: str | None = None,
    lease_namespace: str = "crdgate-system",
    lease_name: str = "crdgate-leader",
    publish_address: str | None = None,
    publish_service: str | None = None,
    default_auth_secret: str | None = None,
    default_certificate: tuple[str, str] | None = None,
    leader_elect: bool = True,
    status_qps: float = DEFAULT_QPS,
    status_burst: int = DEFAULT_BURST,
) -> tuple[KubeSource, Callable, list[asyncio.Task]]:
    """The Kubernetes source, the status sink for the publisher, and the started side tasks.

    Returns ``(source, submit, tasks)``: schedule ``source.run()``; give
    ``submit`` to the publisher as its statuses callback; cancel ``tasks`` on
    shutdown (the elector's task then releases the Lease and closes ``api``).
    ``leader_elect=False``: no Lease; this replica writes status on its own
    (for a single replica: two such replicas would write over each other).
    ``default_auth_secret`` (``NAMESPACE/NAME``) and ``default_certificate``
    (``(namespace, name)``) are watched by name whatever ``namespaces`` says:
    they are the operator's, not a route's, references.
    ``publish_address`` may list several addresses, comma-separated; it wins
    over ``publish_service`` (``NAMESPACE/NAME``). ValueError names a bad flag.
    """
    pub_service = _ns_name(publish_service, "--publish-service") if publish_service else None
    defaults = {_ns_name(default_auth_secret, "--default-auth-secret")} if default_auth_secret else set()
    if default_certificate is not None:
        defaults.add(default_certificate)
    addresses = [a.strip() for a in (publish_address or "").split(",") if a.strip()]
    kube_api = KubeAPI.of(api)
    source = KubeSource(store, kube_api, namespaces, ingress_class=ingress_class,
                        default_secrets=defaults, publish_service=None if addresses else pub_service)
    elector = LeaderElector(kube_api, lease_namespace, lease_name, identity) if leader_elect else None
    writer = StatusWriter(kube_api, elector, store=store, ingress_class=ingress_class, qps=status_qps,
                          burst=status_burst, gateway_controller_name=gateway_controller_name,
                          publish_addresses=addresses, publish_service=None if addresses else pub_service)

    async def lead() -> None:
        try:
            if elector is not None:
                await elector.run()  # releases the Lease when cancelled
            else:
                await without_election()
        finally:
            await kube_api.client.close()

    tasks = [
        asyncio.ensure_future(writer.run()),
        asyncio.ensure_future(lead()),
    ]
    return source, writer.submit, tasks
