"""Turn store changes into published routing tables, then hand statuses on.

Neighbours: waits on ``controller.store.Store.dirty`` (set by the sources),
compiles with ``controller.compile``, publishes through ``on_table`` (the
gateway's reference swap) and delivers statuses through ``on_statuses`` (the
status writer, controller/status.py, on the leader).

One task, woken by the dirty signal, so bursts of watch events coalesce and the
newest snapshot wins. Before the first publish it waits until every required
kind has been listed once, so the first table is never built from half a
cluster. When only EndpointSlices moved it takes the cheap path (same routes,
new endpoints); otherwise it recompiles everything in a worker thread so the
event loop keeps serving requests. A compile that raises (a bug, since compile
isolates bad objects itself) is logged and the previous table keeps serving.

Statuses never sit on the propagation path: the table is swapped first, and
statuses go to a separate task that sends only those that changed.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping

from controller.compile import (
    ERROR,
    CompileOptions,
    CompileResult,
    ObjectStatus,
    compile_snapshot,
    refresh_endpoints,
)
from controller.store import APIENDPOINT, ENDPOINT_KINDS, INGRESS, KINDS, Snapshot, Store
from gateway import metrics
from gateway.routing import RouteTable

log = logging.getLogger("crdgate.controller")

STATES = ("Ready", "Pending", "Error")
STATUS_KINDS = (APIENDPOINT, INGRESS)

OnTable = Callable[[RouteTable], None]
OnStatuses = Callable[[Mapping[str, ObjectStatus]], "Awaitable[None] | None"]
OnResult = Callable[[CompileResult], None]


class Publisher:
    def __init__(
        self,
        store: Store,
        options: CompileOptions = CompileOptions(),
        on_table: OnTable = lambda table: None,
        on_statuses: OnStatuses | None = None,
        required_kinds: Iterable[str] = KINDS,
        *,
        compiler: Callable[[Snapshot, CompileOptions, int], CompileResult] = compile_snapshot,
        refresh: Callable[[CompileResult, Snapshot, int], CompileResult] = refresh_endpoints,
        on_result: OnResult | None = None,
    ):
        self.store = store
        self.options = options
        self.on_table = on_table
        self.on_statuses = on_statuses
        # After each swap, the whole result (e.g. the TLS certificates that came with it).
        self.on_result = on_result
        self.required_kinds = tuple(required_kinds)
        self._compile = compiler
        self._refresh = refresh
        self.generation = 0
        self.table: RouteTable | None = None
        self.result: CompileResult | None = None
        self.last_statuses: dict[str, ObjectStatus] = {}
        self.first_published = asyncio.Event()
        self.compiles = 0  # full compiles published
        self.refreshes = 0  # endpoint-only updates published
        self.failures = 0
        self._full_next = True  # after a failure, do not trust the cheap path
        self._status_outbox: dict[str, ObjectStatus] = {}
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
        snapshot = self.store.snapshot()  # taken on the loop: the store is not thread-safe
        generation = self.generation + 1
        previous = self.result
        cheap = previous is not None and not self._full_next and changed is not None and changed <= ENDPOINT_KINDS
        if previous is not None and changed is not None and not changed and not self._full_next:
            return False  # woken with nothing changed
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        try:
            if cheap:
                assert previous is not None
                result = await loop.run_in_executor(None, self._refresh, previous, snapshot, generation)
            else:
                result = await loop.run_in_executor(None, self._compile, snapshot, self.options, generation)
        except Exception:
            self.failures += 1
            self._full_next = True
            log.exception(
                "compiling the routing table failed; still serving generation %d", self.generation
            )
            return False
        elapsed = time.perf_counter() - started
        self._full_next = False
        self.generation = generation
        self.result = result
        self.table = result.table
        self.on_table(result.table)  # routing first; everything below is bookkeeping
        if self.on_result is not None:
            self.on_result(result)
        self.first_published.set()

        kind = "endpoints" if cheap else "full"
        if cheap:
            self.refreshes += 1
        else:
            self.compiles += 1
            metrics.COMPILE_DURATION.observe(elapsed)
        metrics.TABLE_SWAPS.labels(kind).inc()
        metrics.TABLE_GENERATION.set(generation)
        metrics.TABLE_ROUTES.set(len(result.table))
        self._count_objects(result.statuses)
        self._queue_statuses(result.statuses)
        log.debug("published table generation %d (%s, %d routes) in %.1f ms", generation, kind, len(result.table), elapsed * 1000)
        return True

    # -- statuses ------------------------------------------------------------------

    def _queue_statuses(self, statuses: Mapping[str, ObjectStatus]) -> None:
        changed = {k: s for k, s in statuses.items() if self.last_statuses.get(k) != s}
        for key, st in changed.items():
            old = self.last_statuses.get(key)
            if st.state == ERROR and (old is None or old.state != ERROR or old.message != st.message):
                log.warning(
                    "%s %s/%s%s: %s: %s",
                    st.kind, st.namespace, st.name, f" ({st.origin})" if st.origin else "", st.reason, st.message,
                )
        self.last_statuses = dict(statuses)
        if changed and self.on_statuses is not None:
            # Newest wins per object if the writer is still busy with an older batch.
            self._status_outbox.update(changed)
            self._status_wake.set()

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

    @staticmethod
    def _count_objects(statuses: Mapping[str, ObjectStatus]) -> None:
        counts = {(k, s): 0 for k in STATUS_KINDS for s in STATES}
        for st in statuses.values():
            counts[(st.kind, st.state)] = counts.get((st.kind, st.state), 0) + 1
        for (kind, state), n in counts.items():
            metrics.OBJECTS.labels(kind, state).set(n)
