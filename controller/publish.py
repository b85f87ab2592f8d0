"""Turn store changes into published routing tables, then hand statuses on.

Neighbours: waits on ``controller.store.Store.dirty`` (set by the sources),
compiles with ``controller.compile``, publishes through ``on_table`` (the
gateway's reference swap) and delivers statuses through ``on_statuses`` (the
status writer, controller/status.py, on the leader).

One task, woken by the dirty signal, so bursts of watch events coalesce and the
newest snapshot wins. Before the first publish it waits until every required
kind has been listed once, so the first table is never built from half a
cluster. A compile builds on the previous one (controller/compile/incremental.py):
the snapshot says which objects changed since the last compile, and only what
they touch is redone. A change to a few routes compiles on the event loop
(``small_change``: cheaper than a trip to a thread); anything bigger runs in a
worker thread, so the loop keeps serving requests. When only EndpointSlices
moved it takes the cheap path (same routes, new endpoints). A compile that
raises (a bug, since compile isolates bad objects itself) is logged and the
previous table keeps serving.

An object whose only change is its status (the echo of a status write: the
store says which, controller/store.py) is not compiled and swaps no table; the
compiler is only told to hold the new dicts (``adopt``), so the old ones go.

Statuses never sit on the propagation path: the table is swapped first, and
statuses go to a separate task that sends only those that changed. Nothing
here looks at every object per publish: the compile says which statuses
changed, and the per-state object counts are kept up to date from that.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping

from controller.compile import ERROR, READY, CompileOptions, CompileResult, Compiler, ObjectStatus
from controller.store import APIENDPOINT, ENDPOINT_KINDS, GRPCROUTE, HTTPROUTE, INGRESS, KINDS, NOT_COMPILED_KINDS, Snapshot, Store
from gateway import metrics
from gateway.routing import RouteTable

log = logging.getLogger("crdgate.controller")

STATES = ("Ready", "Pending", "Error")
STATUS_KINDS = (APIENDPOINT, INGRESS)
# The kinds that are routes: what they compile to depends on nothing else changing with them.
ROUTE_KINDS = frozenset({APIENDPOINT, INGRESS, HTTPROUTE, GRPCROUTE})
INLINE_OBJECTS = 8  # see small_change

OnTable = Callable[[RouteTable], None]
# None: the object has no status from us any more (an HTTPRoute no longer naming our Gateways).
OnStatuses = Callable[[Mapping[str, ObjectStatus | None]], "Awaitable[None] | None"]
OnResult = Callable[[CompileResult], None]


def small_change(snapshot: Snapshot) -> bool:
    """True when the snapshot changes at most INLINE_OBJECTS routes and nothing else.

    Such a compile builds on the previous one (controller/compile/incremental.py):
    it compiles those objects, settles the few that share their match keys and
    patches the table, a fraction of a millisecond per object. It runs on the
    event loop itself: in a worker thread it would hold the GIL for as long all
    the same, and the hand-off to the thread and back (two wake-ups) would add
    to it. Anything else (a Service, Secret or grant that many routes read, a
    burst, a first compile) still goes to a thread, so that the loop gets its
    turn every switch interval however long the compile takes.
    """
    changes = snapshot.changes
    if changes is None:
        return False
    count = 0
    for kind, keys in changes.items():
        if keys and kind not in ROUTE_KINDS:
            return False
        count += len(keys)
    return 0 < count <= INLINE_OBJECTS


def _settle_heap() -> None:
    """Once the first table is served: collect once, then take everything alive
    (modules, caches, the object cache, the compiled state: it all lives long) out
    of the cyclic collector's sight. At 10,000 routes a full collection walks over
    a million objects, a 100-200 ms stall of the proxy each time; frozen objects
    are still freed by reference counting, only never walked again."""
    started = time.perf_counter()
    gc.collect()
    gc.freeze()
    log.debug("froze %d long-lived objects in %.0f ms", gc.get_freeze_count(), (time.perf_counter() - started) * 1000)


def _log_served(generation: int, kind: str, routes: int, snapshot: Snapshot, elapsed: float) -> None:
    """One line per table served: what a user watching the log wants to know about a change."""
    if snapshot.changes is not None:
        what = f"{sum(len(keys) for keys in snapshot.changes.values())} object(s) changed"
    else:  # the first compile (or one after a failure): everything was read
        what = f"from {sum(len(objects) for objects in snapshot.objects.values())} object(s)"
    log.info(
        "serving routing table generation %d: %d route(s), %s, compiled in %.1f ms%s",
        generation, routes, what, elapsed * 1000, " (endpoints only)" if kind == "endpoints" else "",
        extra={"crdgate_generation": generation, "crdgate_routes": routes, "crdgate_update": kind,
               "crdgate_compile_ms": round(elapsed * 1000, 1)},
    )


def _log_transition(old: ObjectStatus | None, new: ObjectStatus, first: bool) -> None:
    """One line when an object's state (or the reason for it) changes, never per compile.

    On the first table the Ready objects are left to the table's line (a cluster
    may hold thousands); what needs attention is still named one by one.
    """
    if old is not None and old.state == new.state and old.reason == new.reason:
        if new.state != ERROR or old.message == new.message:
            return
    if first and new.state == READY:
        return
    where = f" ({new.origin})" if new.origin else ""
    was = f", was {old.state}" if old is not None and old.state != new.state else ""
    reason = f" ({new.reason}{was})" if new.reason != new.state else f" (was {old.state})" if was else ""
    log.log(
        logging.WARNING if new.state == ERROR else logging.INFO,
        "%s %s/%s%s: %s%s: %s",
        new.kind, new.namespace, new.name, where, new.state, reason, new.message,
        extra={"crdgate_object": f"{new.kind}:{new.namespace}/{new.name}", "crdgate_state": new.state,
               "crdgate_reason": new.reason},
    )


class Publisher:
    def __init__(
        self,
        store: Store,
        options: CompileOptions = CompileOptions(),
        on_table: OnTable = lambda table: None,
        on_statuses: OnStatuses | None = None,
        required_kinds: Iterable[str] = KINDS,
        *,
        compiler: Callable[[Snapshot, CompileOptions, int], CompileResult] | None = None,
        refresh: Callable[[CompileResult, Snapshot, int], CompileResult] | None = None,
        adopt: Callable[[Snapshot, Mapping[str, set[str]]], None] | None = None,
        on_result: OnResult | None = None,
        settle_heap: bool = False,
    ):
        """``compiler``/``refresh``/``adopt``: seams for tests and TLS (controller/certs.py);
        by default one incremental ``Compiler`` does all three. ``settle_heap``: see
        ``_settle_heap`` (the gateway process sets it; tests leave the GC alone)."""
        self.store = store
        self.options = options
        self.on_table = on_table
        self.on_statuses = on_statuses
        # After each swap, the whole result (e.g. the TLS certificates that came with it).
        self.on_result = on_result
        self.required_kinds = tuple(required_kinds)
        self.settle_heap = settle_heap
        self._compiler = Compiler(options)
        self._compile = compiler or self._compiler.compile
        self._refresh = refresh or self._compiler.refresh
        self._adopt = adopt or (self._compiler.adopt if compiler is None else None)
        self._compiled_version: int | None = None  # store version of the snapshot last compiled
        self.generation = 0
        self.table: RouteTable | None = None
        self.result: CompileResult | None = None
        self.last_statuses: Mapping[str, ObjectStatus] = {}
        self._counts: dict[tuple[str, str], int] = {}  # (kind, state) -> objects
        self.first_published = asyncio.Event()
        self.compiles = 0  # full compiles published
        self.refreshes = 0  # endpoint-only updates published
        self.failures = 0
        self._full_next = True  # after a failure, do not trust the cheap path
        self._status_outbox: dict[str, ObjectStatus | None] = {}
        self._status_wake = asyncio.Event()

    @property
    def ready(self) -> bool:
        """True once a first table has been published."""
        return self.table is not None

    # -- main loop -----------------------------------------------------------------

    async def run(self) -> None:
        """Publish forever; cancel to stop."""
        status_task = asyncio.create_task(self._deliver_statuses(), name="crdgate-status-delivery")
        try:
            pending: set[str] = set()
            while True:
                await self.store.dirty.wait()
                # Let events already queued on the loop land, so a burst becomes one compile.
                await asyncio.sleep(0)
                pending |= self.store.take_changes()
                if not self.store.synced(self.required_kinds):
                    continue  # the first table waits for every kind's first list
                try:
                    await self.publish_once(pending)
                    self._adopt_status_only()
                except Exception:  # e.g. on_table raised: keep the loop alive
                    log.exception("publishing the routing table failed")
                    self._full_next = True
                pending = set()
        finally:
            status_task.cancel()
            await asyncio.gather(status_task, return_exceptions=True)

    async def publish_once(self, changed: set[str] | frozenset[str] | None = None) -> bool:
        """Compile (or refresh endpoints of) the current snapshot and publish it.

        ``changed``: the kinds changed since the last publish (None = unknown,
        recompile). Returns True when a table was published.
        """
        previous = self.result
        if changed is not None:
            changed = frozenset(changed) - NOT_COMPILED_KINDS  # the compile would not look at them
        if previous is not None and changed is not None and not changed and not self._full_next:
            return False  # woken with nothing changed (e.g. only statuses came back)
        # Taken on the loop (the store is not thread-safe), with what changed since the last compile.
        snapshot = self.store.snapshot(since=self._compiled_version)
        generation = self.generation + 1
        cheap = previous is not None and not self._full_next and changed is not None and changed <= ENDPOINT_KINDS
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        try:
            if cheap:
                assert previous is not None
                result = await loop.run_in_executor(None, self._refresh, previous, snapshot, generation)
            elif previous is not None and not self._full_next and small_change(snapshot):
                result = self._compile(snapshot, self.options, generation)  # see small_change
            else:
                result = await loop.run_in_executor(None, self._compile, snapshot, self.options, generation)
        except Exception:
            self.failures += 1
            self._full_next = True
            self._compiler.reset()  # do not build on a compile that failed
            log.exception(
                "compiling the routing table failed; still serving generation %d", self.generation
            )
            return False
        elapsed = time.perf_counter() - started
        self._compiled_version = snapshot.version
        self._full_next = False
        self.generation = generation
        self.result = result
        self.table = result.table
        first = not self.first_published.is_set()
        self.on_table(result.table)  # routing first; everything below is bookkeeping
        if first and self.settle_heap:
            _settle_heap()  # after the swap: a worker that listens already must not answer 503 longer
        if self.on_result is not None:
            self.on_result(result)
        self.first_published.set()

        # "incremental": a compile that built on the previous one; "full": one from scratch.
        kind = "endpoints" if cheap else "incremental" if result.incremental else "full"
        if cheap:
            self.refreshes += 1
        else:
            self.compiles += 1
            metrics.COMPILE_DURATION.observe(elapsed)
        metrics.TABLE_SWAPS.labels(kind).inc()
        metrics.TABLE_GENERATION.set(generation)
        metrics.TABLE_ROUTES.set(len(result.table))
        _log_served(generation, kind, len(result.table), snapshot, elapsed)
        self._queue_statuses(result, first)
        return True

    def _adopt_status_only(self) -> None:
        """Objects that changed only in status: nothing to compile, but the compiler
        lets go of their previous versions (at 10,000 routes, after every status
        write, those would be a second copy of the cache)."""
        keys = self.store.take_status_only()
        if keys and self._adopt is not None:
            self._adopt(self.store.snapshot(), keys)

    # -- statuses ------------------------------------------------------------------

    def _queue_statuses(self, result: CompileResult, first: bool = False) -> None:
        statuses = result.statuses
        if result.changed_statuses is not None and result.status_base is self.last_statuses:
            changes: Mapping[str, ObjectStatus | None] = result.changed_statuses
        else:  # a full compile, or one that did not build on what we published last: compare all
            changes = {k: s for k, s in statuses.items() if self.last_statuses.get(k) != s}
            changes.update((k, None) for k in self.last_statuses.keys() - statuses.keys())
        changed: dict[str, ObjectStatus] = {}
        removed: dict[str, None] = {}
        for key, st in changes.items():
            old = self.last_statuses.get(key)
            self._count(old, -1)
            self._count(st, +1)
            if st is None:
                if old is not None:
                    log.info("%s %s/%s: removed", old.kind, old.namespace, old.name)
                    if old.kind in (HTTPROUTE, GRPCROUTE):
                        removed[key] = None  # the writer drops our status.parents entries
                continue
            changed[key] = st
            _log_transition(old, st, first)
        self.last_statuses = statuses  # never changed once handed out
        self._export_counts()
        if (changed or removed) and self.on_statuses is not None:
            # Newest wins per object if the writer is still busy with an older batch.
            self._status_outbox.update(changed)
            self._status_outbox.update(removed)
            self._status_wake.set()

    def _count(self, status: ObjectStatus | None, delta: int) -> None:
        if status is not None:
            key = (status.kind, status.state)
            self._counts[key] = self._counts.get(key, 0) + delta

    def _export_counts(self) -> None:
        for kind in STATUS_KINDS:
            for state in STATES:
                metrics.OBJECTS.labels(kind, state).set(self._counts.get((kind, state), 0))

    async def _deliver_statuses(self) -> None:
        while True:
            await self._status_wake.wait()
            self._status_wake.clear()
            batch, self._status_outbox = self._status_outbox, {}
            if not batch or self.on_statuses is None:
                continue
            try:
                outcome = self.on_statuses(batch)
                if inspect.isawaitable(outcome):
                    await outcome
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("delivering %d statuses failed", len(batch))
