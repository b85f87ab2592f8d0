"""The status writer: APIEndpoint status and Ingress addresses, written by the leader only.

The publisher (controller/publish.py) hands each compile's statuses to
``submit``, which only records them and wakes this task: routing never waits
on the API server. The task writes them one object at a time with JSON merge
patches on the ``status`` subresource, and

- writes nothing when the object already has that status: it compares with
  the object in the Store (controller/store.py, fed by the watch), or with
  what it wrote itself when the watch has not caught up yet;
- keeps each condition's ``lastTransitionTime`` while its status holds;
- coalesces: a newer status for an object replaces one not yet written;
- is rate-limited (token bucket, ``qps``/``burst``) with up to ``concurrency``
  patches in flight, and backs off when the server fails (see "Load on the API
  server" below);
- writes only while ``elector.is_leader`` (controller/leader.py), and on
  becoming leader re-checks every object it knows.

Gateway API kinds (GatewayClass, Gateway, HTTPRoute) go the same way; the
shape of their status (listeners, route parents, other controllers' parent
entries kept) is controller/gatewaystatus.py's.

It also sets ``status.loadBalancer.ingress`` of our Ingresses to the
gateway's publish address(es) (controller/ingressclass.py says which are ours),
and empties it again on an Ingress it wrote that has left our class (while it
still shows our address): an address nobody serves that Ingress on would
mislead whoever reads it. Only Ingresses this process saw in our class are
released, and each once, so two gateways that publish the same address never undo each
other's writes in a loop; after a restart, an Ingress that left our class
before it keeps the address it had.

Load on the API server. A status patch is one small write; the writer's own
limit is the client-side one client-go gives every client (``rest.Config``'s
QPS/Burst, 5/10 by default, kube-controller-manager's 20/30), while API
Priority and Fairness shares the server between clients on its side (a
controller's service account lands in ``workload-low``, and the server answers
429 with Retry-After when that level is full, which we honour). At client-go's
defaults 10,000 routes would take half an hour to show Ready; the defaults here
(``DEFAULT_QPS``/``DEFAULT_BURST``, ``--status-qps``/``--status-burst``) write
them in under a minute, and ``DEFAULT_CONCURRENCY`` patches in flight (APF
counts one seat per request executing) are what a round trip of a few
milliseconds needs to sustain that rate, a small part of a priority level's seats.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Iterable, Mapping, Protocol, Sequence

from kubernetes_asyncio.client import ApiClient

from controller import gatewaystatus
from controller.backoff import Backoff
from controller.ingressclass import is_default_class, owns_ingress
from controller.kubeapi import (
    APIENDPOINTS, GATEWAYCLASSES, GATEWAYS, GRPCROUTES, HTTPROUTES, INGRESSES, MERGE_PATCH, ApiError, KubeAPI,
)  # fmt: skip
from controller.store import APIENDPOINT, GATEWAY, GATEWAYCLASS, GRPCROUTE, HTTPROUTE, INGRESS, INGRESSCLASS, SERVICE, Store
from gateway.metrics import STATUS_WRITES

log = logging.getLogger("crdgate.controller.status")

RESOURCES = {APIENDPOINT: APIENDPOINTS, INGRESS: INGRESSES}
# Gateway API kinds: each version the cluster may serve, the object's apiVersion picks (v1 by default).
GATEWAY_API_RESOURCES = {GATEWAYCLASS: GATEWAYCLASSES, GATEWAY: GATEWAYS, HTTPROUTE: HTTPROUTES, GRPCROUTE: GRPCROUTES}
# Kinds whose compiled status is written (Ingress: only its addresses, below).
WRITTEN_KINDS = frozenset({APIENDPOINT, *GATEWAY_API_RESOURCES})

# Writes per second on average and at once (see "Load on the API server" above), and
# patches in flight: a round trip of 5-20 ms at 16 in flight sustains well over 250/s.
DEFAULT_QPS = 250.0
DEFAULT_BURST = 500
DEFAULT_CONCURRENCY = 16


class ObjectStatus(Protocol):
    """What the compiler hands over per object (controller/compile/)."""

    kind: str
    namespace: str
    name: str

    def to_status_dict(self) -> dict: ...


class Elector(Protocol):
    @property
    def is_leader(self) -> bool: ...

    async def wait_leading(self) -> None: ...

    async def wait_following(self) -> None: ...


def rfc3339(at: datetime) -> str:
    return at.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def with_transition_times(previous: Iterable[Mapping] | None, desired: Iterable[Mapping], now: str) -> list[dict]:
    """``desired`` conditions with ``lastTransitionTime``: the previous one while the status holds, else now."""
    before = {c.get("type"): c for c in previous or () if isinstance(c, Mapping)}
    out = []
    for cond in desired:
        cond = dict(cond)
        prev = before.get(cond.get("type"))
        if prev is not None and prev.get("status") == cond.get("status") and prev.get("lastTransitionTime"):
            cond["lastTransitionTime"] = prev["lastTransitionTime"]
        else:
            cond["lastTransitionTime"] = now
        out.append(cond)
    return out


def service_addresses(svc: Mapping) -> list[str]:
    """Where clients reach a Service, as ingress-nginx's --publish-service reads it:
    the load balancer's ips/hostnames, else external IPs, else the ExternalName, else the cluster IP."""
    spec = svc.get("spec") or {}
    found = []
    for lb in ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or ():
        addr = lb.get("ip") or lb.get("hostname")
        if addr:
            found.append(addr)
    found += [a for a in spec.get("externalIPs") or () if a]
    if not found and spec.get("type") == "ExternalName" and spec.get("externalName"):
        found.append(spec["externalName"])
    if not found and spec.get("type") in (None, "ClusterIP", "NodePort") and spec.get("clusterIP") not in (None, "", "None"):
        found.append(spec["clusterIP"])
    return list(dict.fromkeys(found))


def load_balancer_entries(addresses: Sequence[str]) -> list[dict]:
    """``status.loadBalancer.ingress`` entries: ``{"ip": ...}`` for addresses, ``{"hostname": ...}`` otherwise."""
    entries = []
    for addr in addresses:
        try:
            ipaddress.ip_address(addr)
            entries.append({"ip": addr})
        except ValueError:
            entries.append({"hostname": addr})
    return entries


def _objects(store: Store, kind: str) -> list[dict]:
    found = []
    for key in store.keys(kind):
        ns, _, name = key.partition("/")
        obj = store.get(kind, ns, name)
        if obj is not None:
            found.append(obj)
    return found


class TokenBucket:
    """``rate`` writes per second on average, up to ``burst`` at once.

    Each ``take`` reserves its token, even one not yet refilled (the count goes
    below zero) and then sleeps until that token's time: several writers taking
    at once queue up one after the other, and never share a token.
    """

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Any] = asyncio.sleep):
        if rate <= 0 or burst < 1:
            raise ValueError(f"a token bucket needs rate > 0 and burst >= 1, got {rate} and {burst}")
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self.sleep = sleep
        self._tokens = float(burst)
        self._at = clock()

    async def take(self) -> None:
        now = self.clock()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate) - 1
        self._at = now
        if self._tokens < 0:
            await self.sleep(-self._tokens / self.rate)


@dataclass(frozen=True, slots=True)
class _Write:
    kind: str  # APIEndpoint (conditions) or Ingress (load balancer)
    namespace: str
    name: str
    status: ObjectStatus | None = None
    lb_entries: tuple = ()
    # Ingress left our class: empty its address if it still shows ``lb_entries``;
    # HTTPRoute no longer ours: drop our status.parents entries.
    release: bool = False
    # "Kind:namespace/name"; given by the caller when it has the string already
    # (one of these is kept per object: at 10,000 routes the copies add up).
    key: str = ""

    def __post_init__(self) -> None:
        if not self.key:
            object.__setattr__(self, "key", f"{self.kind}:{self.namespace}/{self.name}")


class StatusWriter:
    def __init__(
        self,
        api: KubeAPI | ApiClient,
        elector: Elector | None = None,
        *,
        store: Store | None = None,
        publish_addresses: Sequence[str] = (),
        publish_service: tuple[str, str] | None = None,
        ingress_class: str = "crdgate",
        gateway_controller_name: str = "crdgate.io/gateway-controller",
        qps: float = DEFAULT_QPS,
        burst: int = DEFAULT_BURST,
        concurrency: int = DEFAULT_CONCURRENCY,
        backoff: Backoff | None = None,
        resync_seconds: float | None = 60.0,
        now: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
    ):
        """``store``: the watch-fed cache, to compare with what objects already have (without it,
        each write is preceded by a GET). ``elector``: None writes unconditionally (single replica).
        Ingress addresses come from ``publish_addresses``, else from the Service ``publish_service``
        (namespace, name) in the store; with neither, Ingress status is left alone.
        Every ``resync_seconds`` everything known is compared again (against the cache, so
        it costs no request unless something drifted: a foreign edit, a new Service address)."""
        self.api = KubeAPI.of(api)
        self.elector = elector
        self.store = store
        self.publish_addresses = tuple(publish_addresses)
        self.publish_service = publish_service
        self.ingress_class = ingress_class
        self.gateway_controller_name = gateway_controller_name  # our HTTPRoute status.parents entries
        self.bucket = TokenBucket(qps, burst)
        self.concurrency = max(1, concurrency)
        self.backoff = backoff or Backoff()
        self.now = now
        self.resync_seconds = resync_seconds
        self._pending: dict[str, _Write] = {}
        self._latest: dict[str, ObjectStatus] = {}  # every status known, to recheck on becoming leader
        # key -> (resourceVersion the cache had when we wrote, what we wrote): until the
        # watch brings our own write back, compare with what we wrote, not the stale cache.
        self._written: dict[str, tuple[str | None, Any]] = {}
        self._published: set[str] = set()  # keys of the Ingresses of our class at the last pass
        self._ingresses_dirty = self._publishes
        self._in_flight: set[str] = set()  # keys being written now: never two writes of one object at once
        self._wake = asyncio.Event()
        if self._ingresses_dirty:
            self._wake.set()

    # -- the publisher's side -----------------------------------------------------------

    def submit(self, statuses: Mapping[str, ObjectStatus | None]) -> None:
        """Record the newest statuses and wake the writer; never blocks, never does I/O."""
        for key, status in statuses.items():
            if status is None:  # no status from us any more
                self._release(key)
                continue
            if status.kind not in WRITTEN_KINDS:
                continue
            w = _Write(status.kind, status.namespace, status.name, status=status, key=key)
            self._latest[key] = status
            self._pending[key] = w
        if self._publishes:
            self._ingresses_dirty = True
        self._wake.set()

    def _release(self, key: str) -> None:
        """An object we no longer give a status: stop writing it; an HTTPRoute that names
        none of our Gateways any more loses our ``status.parents`` entries (Gateway API:
        controllers clean up the entries they wrote)."""
        self._latest.pop(key, None)
        self._pending.pop(key, None)
        kind, _, ref = key.partition(":")
        if kind in (HTTPROUTE, GRPCROUTE):
            namespace, _, name = ref.partition("/")
            self._pending[key] = _Write(kind, namespace, name, release=True, key=key)

    @property
    def _publishes(self) -> bool:
        return bool(self.publish_addresses or self.publish_service)

    @property
    def idle(self) -> bool:
        """Nothing waiting to be written (tests and shutdown)."""
        return not self._pending and not self._ingresses_dirty and not self._in_flight

    # -- the writer task -------------------------------------------------------------------

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            if self.elector is not None:
                tg.create_task(self._follow_leadership(self.elector))
            if self.resync_seconds and self.store is not None:  # without a cache, a resync would GET everything
                tg.create_task(self._resync_forever(self.resync_seconds))
            tg.create_task(self._write_forever())

    async def _resync_forever(self, period: float) -> None:
        while True:
            await asyncio.sleep(period)
            if self.elector is None or self.elector.is_leader:
                self._requeue_all()
                self._wake.set()

    async def _follow_leadership(self, elector: Elector) -> None:
        """Each time we become leader, everything may be out of date (from us or another leader)."""
        while True:
            await elector.wait_leading()
            self._requeue_all()
            self._wake.set()
            await elector.wait_following()

    async def _write_forever(self) -> None:
        slots = asyncio.Semaphore(self.concurrency)
        async with asyncio.TaskGroup() as writes:
            while True:
                await self._wake.wait()
                self._wake.clear()
                if self.elector is not None and not self.elector.is_leader:
                    continue  # _follow_leadership wakes us when we lead
                if self._ingresses_dirty:
                    self._ingresses_dirty = False
                    self._queue_ingresses()
                while self._pending:
                    await slots.acquire()
                    # Skips at most ``concurrency`` keys: those being written wait for their write to end.
                    key = next((k for k in self._pending if k not in self._in_flight), None)
                    if key is None or (self.elector is not None and not self.elector.is_leader):
                        slots.release()
                        break
                    write = self._pending.pop(key)
                    self._in_flight.add(key)
                    writes.create_task(self._write_one(write, slots))

    async def _write_one(self, write: _Write, slots: asyncio.Semaphore) -> None:
        try:
            await self._write(write)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 — one failure must not stop the writer
            STATUS_WRITES.labels(write.kind, "error").inc()
            self._pending.setdefault(write.key, write)  # unless a newer one came meanwhile
            retry_after = exc.retry_after if isinstance(exc, ApiError) else None
            # The slot is held while backing off: a failing server sees fewer writes in flight.
            delay = await self.backoff.wait(retry_after)
            log.warning("status of %s %s/%s not written: %s; retried after %.1fs",
                        write.kind, write.namespace, write.name, exc, delay)
        finally:
            self._in_flight.discard(write.key)
            slots.release()
            if write.key in self._pending:  # a newer status came while this one was written
                self._wake.set()

    def _requeue_all(self) -> None:
        """Everything may be out of date (another leader wrote meanwhile, or someone edited)."""
        for key, status in list(self._latest.items()):
            if self.store is not None and self.store.get(status.kind, status.namespace, status.name) is None:
                del self._latest[key]
                self._written.pop(key, None)
                continue
            self._pending.setdefault(key, _Write(status.kind, status.namespace, status.name, status=status, key=key))
        self._forget_echoed_writes()
        if self._publishes:
            self._ingresses_dirty = True

    def _forget_echoed_writes(self) -> None:
        """Drop what we wrote once the watch has brought a newer version: from then on
        the cache is compared, and at 10,000 objects the copies would add up."""
        if self.store is None:
            return
        for key, (rv, _) in list(self._written.items()):
            kind, _, ref = key.partition(":")
            namespace, _, name = ref.partition("/")
            obj = self.store.get(kind, namespace, name)
            if obj is None or (obj.get("metadata") or {}).get("resourceVersion") != rv:
                del self._written[key]

    def _addresses(self) -> list[str] | None:
        """Where clients reach this gateway, or None when we do not know."""
        addresses = list(self.publish_addresses)
        if not addresses and self.publish_service and self.store is not None:
            svc = self.store.get(SERVICE, *self.publish_service)
            addresses = service_addresses(svc) if svc else []
        return addresses or None

    def _lb_entries(self) -> tuple | None:
        """Our ``status.loadBalancer.ingress`` (hashable), or None when we do not know our address."""
        addresses = self._addresses()
        if not addresses:
            return None
        return tuple(tuple(sorted(e.items())) for e in load_balancer_entries(addresses))

    def _queue_ingresses(self) -> None:
        if self.store is None:
            return
        entries = self._lb_entries()
        if entries is None:
            return
        default_class = is_default_class(_objects(self.store, INGRESSCLASS), self.ingress_class)
        published: set[str] = set()  # rebuilt each pass, so deleted Ingresses drop out
        for ing in _objects(self.store, INGRESS):
            meta = ing.get("metadata") or {}
            w = _Write(INGRESS, meta.get("namespace") or "", meta.get("name") or "", lb_entries=entries)
            if owns_ingress(ing, self.ingress_class, default_class):
                self._pending[w.key] = w
                published.add(w.key)
            elif w.key in self._published:  # left our class since the last pass
                self._pending[w.key] = _Write(INGRESS, w.namespace, w.name, lb_entries=entries, release=True, key=w.key)
        self._published = published

    # -- one object ---------------------------------------------------------------------------

    @staticmethod
    def _resource(kind: str, obj: Mapping | None = None):
        versions = GATEWAY_API_RESOURCES.get(kind)
        if versions is None:
            return RESOURCES[kind]
        api_version = (obj or {}).get("apiVersion")
        return next((r for r in versions if r.api_version == api_version), versions[0])

    async def _current(self, write: _Write) -> dict | None:
        if self.store is not None:
            return self.store.get(write.kind, write.namespace, write.name)
        try:
            return await self.api.request("GET", self._resource(write.kind).path(write.namespace or None, write.name))
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    async def _write(self, write: _Write) -> None:
        obj = await self._current(write)
        if obj is None:  # deleted: forget it (were it new, the compile would have seen it in the same cache)
            self._written.pop(write.key, None)
            self._latest.pop(write.key, None)
            return
        meta = obj.get("metadata") or {}
        cached_status = obj.get("status") or {}
        rv = meta.get("resourceVersion")
        written = self._written.get(write.key)
        if written is not None and written[0] == rv:
            mine = written[1]
        else:
            mine = None
        patch = self._patch_for(write, obj, cached_status, mine)
        if patch is None:
            return
        await self.bucket.take()
        if self.elector is not None and not self.elector.is_leader:
            self._pending.setdefault(write.key, write)
            return
        path = self._resource(write.kind, obj).path(write.namespace or None, write.name, "status")
        try:
            await self.api.request("PATCH", path, body={"status": patch}, content_type=MERGE_PATCH)
        except ApiError as exc:
            if exc.status == 404:
                STATUS_WRITES.labels(write.kind, "notfound").inc()
                self._written.pop(write.key, None)
                return
            if exc.status == 409:
                STATUS_WRITES.labels(write.kind, "conflict").inc()
                self._pending.setdefault(write.key, write)
                return
            if exc.status in (400, 403, 422):
                # Retrying cannot help; the next compile will submit again.
                STATUS_WRITES.labels(write.kind, "error").inc()
                log.warning("status of %s %s/%s refused: %s", write.kind, write.namespace, write.name, exc)
                return
            raise
        STATUS_WRITES.labels(write.kind, "ok").inc()
        self.backoff.reset()
        self._written[write.key] = (rv, patch)

    def _patch_for(self, write: _Write, obj: dict, cached: dict, mine: dict | None) -> dict | None:
        """The status fields to send, or None when the object already has them."""
        if write.kind == INGRESS:
            want = [dict(e) for e in write.lb_entries]
            have = mine if mine is not None else cached
            shown = (have.get("loadBalancer") or {}).get("ingress") or []
            if write.release:  # another address (another controller's) is not ours to remove
                return {"loadBalancer": {"ingress": []}} if shown == want else None
            if shown == want:
                return None
            return {"loadBalancer": {"ingress": want}}
        have = dict(cached)
        if mine is not None:
            have.update(mine)
        if write.release:  # an HTTPRoute that no longer names our Gateways
            parents = have.get("parents") or []
            kept = gatewaystatus.without_controller(parents, self.gateway_controller_name)
            return None if kept == parents else {"parents": kept}
        status = write.status
        assert status is not None
        desired = status.to_status_dict()
        generation = (obj.get("metadata") or {}).get("generation")
        observed = desired.get("observedGeneration")
        if generation is not None and observed is not None and generation > observed:
            return None  # computed from an older spec; the compile of the new one follows
        if write.kind in GATEWAY_API_RESOURCES:
            now = rfc3339(self.now())
            desired = gatewaystatus.desired_status(
                status, have, lambda prev, want: with_transition_times(prev, want, now),
                self.gateway_controller_name, self._addresses(),
            )
        elif "conditions" in desired:
            desired["conditions"] = with_transition_times(
                have.get("conditions"), desired["conditions"], rfc3339(self.now())
            )
        if all(have.get(k) == v for k, v in desired.items()):
            return None
        return desired
