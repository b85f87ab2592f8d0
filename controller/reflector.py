"""One Reflector: keeps a sink in step with one collection of the API server.

Three nested loops, in the manner of kopf's watching.py:

- ``run``: forever — list, then watch; back off after errors and start over;
- ``_watch``: re-open the watch from the last resourceVersion seen (an event
  or a BOOKMARK) after a dropped stream or a server-side timeout; return on
  410 Gone so that ``run`` lists again;
- ``_stream``: one HTTP watch stream, closed by the server after
  ``timeoutSeconds``.

A list replaces the sink's whole content (so objects deleted while we were
away disappear); a watch event applies one change. The sink is the
controller's Store seen through controller/kube.py, which merges several
reflectors of one kind (one per namespace, or one per referenced Secret).
HTTP goes through controller/kubeapi.py; retries through controller/backoff.py.
Each object goes through ``transform`` as it arrives (controller/kube.py passes
``Store.settle``: an object unchanged since the last list is the cached dict),
so a large list is never held twice.

Two paces of retry. A server that answered with an error (5xx, 429, 403...)
is given the long backoff (``backoff``: up to 30 s, and at least its
Retry-After). A server that could not be reached at all (connection refused or
reset: restarting, or not there yet) is asked again about once a second
(``reconnect``): a refused connection costs it nothing, and when it comes back
the gateway should see changes within a second or two, not after a backoff
that grew while it was away. Such failures are logged once, when they start,
and once when the server is back, not on every retry.

``forbidden_is_empty``: for a kind the gateway can route without (Gateway API's,
Namespaces), a 403 on the first list counts as an empty list: a ClusterRole not
yet updated for a new version of crdgate must not keep every route from being
published. The list is retried as any failure is, and takes effect once allowed.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import Callable, Protocol

import aiohttp

from controller.backoff import Backoff
from controller.kubeapi import ApiError, Gone, KubeAPI, Resource
from gateway.metrics import LAST_SYNC, RELISTS, WATCH_EVENTS, WATCH_RECONNECTS

log = logging.getLogger("crdgate.controller.reflector")

# Retries of a server that cannot be reached: 0.25-0.5 s, then 0.5-1 s at most.
RECONNECT_BASE = 0.5
RECONNECT_CAP = 1.0


def unreachable(exc: BaseException) -> bool:
    """True for a failure to reach the server at all (no answer was received and
    none was slow): retried at the reconnect pace, not with the long backoff."""
    if isinstance(exc, asyncio.TimeoutError):
        return False  # a slow or hung server: asking it faster would not help
    return isinstance(exc, (aiohttp.ClientConnectionError, ConnectionError))

CHANGE_EVENTS = frozenset({"ADDED", "MODIFIED", "DELETED"})


class Sink(Protocol):
    def replace(self, objects: list[dict]) -> None: ...

    def apply(self, event_type: str, obj: dict) -> None: ...


class Reflector:
    def __init__(
        self,
        api: KubeAPI,
        resource: Resource,
        sink: Sink,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        timeout_seconds: int = 300,
        page_size: int = 500,
        backoff: Backoff | None = None,
        min_watch_seconds: float = 1.0,
        read_grace_seconds: float = 30.0,
        transform: Callable[[dict], dict] | None = None,
        forbidden_is_empty: bool = False,
    ):
        self.api = api
        self.transform = transform
        self.resource = resource
        self.sink = sink
        self.namespace = namespace
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.timeout_seconds = timeout_seconds
        self.page_size = page_size
        self.backoff = backoff or Backoff()
        self.reconnect = Backoff(base=min(RECONNECT_BASE, self.backoff.base), cap=RECONNECT_CAP,
                                 sleep=self.backoff.sleep)
        self._unreachable_since: float | None = None  # the first failure of a run of unreachable ones
        # A stream that ends cleanly this fast without a single event is a
        # misbehaving server or proxy; without this guard we would re-open it
        # in a tight loop (client-go calls it a "very short watch").
        self.min_watch_seconds = min_watch_seconds
        self.read_grace_seconds = read_grace_seconds
        self.forbidden_is_empty = forbidden_is_empty
        self.listed = False  # a list (or, see forbidden_is_empty, a refusal) reached the sink
        self.resource_version: str | None = None
        self._events_since_list = 0
        self._stream_events = 0
        self._kind = resource.kind

    def __str__(self) -> str:
        where = f" in {self.namespace}" if self.namespace and self.resource.namespaced else ""
        sel = "".join(f" [{s}]" for s in (self.label_selector, self.field_selector) if s)
        return f"{self.resource}{where}{sel}"

    def _selectors(self) -> list[tuple[str, str]]:
        query = []
        if self.label_selector:
            query.append(("labelSelector", self.label_selector))
        if self.field_selector:
            query.append(("fieldSelector", self.field_selector))
        return query

    # -- loop 1: reconnect forever ----------------------------------------------

    async def run(self) -> None:
        while True:
            try:
                await self._list()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 — every failure is retried, none is fatal
                if (
                    self.forbidden_is_empty
                    and not self.listed
                    and isinstance(exc, ApiError)
                    and exc.status == 403
                ):
                    self.sink.replace([])
                    self.listed = True
                await self._failed("list", exc)
                continue
            await self._watch()

    async def _list(self) -> None:
        """List every page, then replace the sink's content with the result."""
        path = self.resource.path(self.namespace)
        items: list[dict] = []
        cont: str | None = None
        while True:
            query = [("limit", str(self.page_size)), *self._selectors()]
            if cont:
                query.append(("continue", cont))
            page = await self.api.request("GET", path, query=query)
            for obj in page.get("items") or ():
                # List items come without apiVersion/kind; the store keeps whole objects.
                obj["apiVersion"] = self.resource.api_version
                obj["kind"] = self._kind
                items.append(self.transform(obj) if self.transform else obj)
            meta = page.get("metadata") or {}
            cont = meta.get("continue")
            if not cont:
                break
        self.sink.replace(items)
        self._reached()
        self.listed = True
        self.resource_version = meta.get("resourceVersion") or None
        self._events_since_list = 0
        RELISTS.labels(self._kind).inc()
        LAST_SYNC.labels(self._kind).set(time.time())
        log.debug("listed %s: %d objects at resourceVersion %s", self, len(items), self.resource_version)

    # -- loop 2: watch from the last resourceVersion until 410 ------------------

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            received_before = self._events_since_list
            try:
                await self._stream()
            except asyncio.CancelledError:
                raise
            except Gone as exc:
                log.info("watch of %s: %s; listing again", self, exc)
                if self._events_since_list == 0:
                    # Gone again straight after a list: do not relist in a tight loop.
                    await self.backoff.wait(exc.retry_after)
                return
            except Exception as exc:  # noqa: BLE001
                WATCH_RECONNECTS.labels(self._kind).inc()
                await self._failed("watch", exc)
                continue
            got_events = self._events_since_list > received_before
            if not got_events and loop.time() - started < self.min_watch_seconds:
                WATCH_RECONNECTS.labels(self._kind).inc()
                await self._failed("watch", RuntimeError("stream closed at once without events"))
                continue
            self.backoff.reset()
            self._reached()

    # -- loop 3: one HTTP stream --------------------------------------------------

    async def _stream(self) -> None:
        timeout_seconds = self.timeout_seconds + random.randint(0, self.timeout_seconds // 10)
        query = [
            ("watch", "true"),
            ("allowWatchBookmarks", "true"),
            ("timeoutSeconds", str(timeout_seconds)),
            *self._selectors(),
        ]
        if self.resource_version:
            query.append(("resourceVersion", self.resource_version))
        # No total deadline (the server ends the stream); a silent connection is
        # dead once it stays quiet well past the server's own timeout.
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=10, sock_read=timeout_seconds + self.read_grace_seconds
        )
        self._stream_events = 0
        async with self.api.stream(self.resource.path(self.namespace), query, timeout) as events:
            async for event in events:
                self._handle(event)

    def _handle(self, event: dict) -> None:
        event_type = event["type"]
        obj = event["object"] or {}
        WATCH_EVENTS.labels(self._kind, event_type).inc()
        if event_type == "ERROR":
            raise ApiError.from_status(obj)  # Gone for code 410
        rv = (obj.get("metadata") or {}).get("resourceVersion")
        if event_type == "BOOKMARK":
            # Nothing changed for us, but the server vouches that everything up
            # to rv was sent: resuming from it survives history compaction.
            if rv:
                self.resource_version = rv
        elif event_type in CHANGE_EVENTS:
            obj.setdefault("apiVersion", self.resource.api_version)
            obj.setdefault("kind", self._kind)
            self.sink.apply(event_type, self.transform(obj) if self.transform else obj)
            if rv:
                self.resource_version = rv
        else:
            log.warning("watch of %s: ignoring event of unknown type %r", self, event_type)
        if self._stream_events == 0:
            self.backoff.reset()  # the stream works again
            self._reached()
        self._stream_events += 1
        self._events_since_list += 1
        LAST_SYNC.labels(self._kind).set(time.time())

    # -- errors ---------------------------------------------------------------------

    def _reached(self) -> None:
        """The server answered: the reconnect pace starts over, and a run of failures to reach it ends."""
        self.reconnect.reset()
        if self._unreachable_since is not None:
            away = time.monotonic() - self._unreachable_since
            self._unreachable_since = None
            log.info("%s: the API server is reachable again (after %.1fs)", self, away)

    async def _failed(self, what: str, exc: BaseException) -> None:
        if unreachable(exc):
            delay = self.reconnect.next_delay()
            first = self._unreachable_since is None
            if first:
                self._unreachable_since = time.monotonic()
            log.log(logging.WARNING if first else logging.DEBUG,
                    "%s of %s failed: %s; the API server is not reachable, retrying about every %.0fs%s",
                    what, self, _describe(exc), RECONNECT_CAP, " (logged again when it is back)" if first else "")
            await self.reconnect.sleep(delay)
            return
        retry_after = exc.retry_after if isinstance(exc, ApiError) else None
        delay = self.backoff.next_delay()
        if retry_after is not None and retry_after > delay:
            delay = retry_after
        hint = ""
        if isinstance(exc, ApiError) and exc.status == 404:
            hint = " (is the resource's CRD installed?)"
        elif isinstance(exc, ApiError) and exc.status in (401, 403):
            hint = " (check the service account's RBAC)"
            if exc.status == 403 and self.forbidden_is_empty:
                hint += "; until it is allowed, there are none"
        log.warning("%s of %s failed: %s%s; retrying in %.1fs",
                    what, self, _describe(exc), hint, delay)
        await self.backoff.sleep(delay)


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
