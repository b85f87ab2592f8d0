"""Routing tables on the wire, from one controller to its proxy workers: a whole table once, then what changed.

With ``crdgate run --workers N`` one process (crdgate/workers.py) watches,
compiles and publishes, and N proxy workers (crdgate/proxyworker.py) only
serve. The controller's ``TableEncoder`` turns each table it publishes into an
update against the previous one: the routes removed (by number), the routes
added, the endpoint sets that changed, the fallback and the TLS certificates
when they changed. A worker's ``TableDecoder`` applies it with
``RouteTable.updated``, so a worker's cost per change follows the change, as
in the controller (endpoint churn: a few EndpointSets, no route at all). A
worker that starts, or starts again, gets the whole current table first.

Routes are numbered by the encoder (``tid``) so an update can name a removed
route without sending it; both sides keep the number -> route map of the
current table. ``RouteTable.route_changes`` finds what changed through the
host groups and path buckets two tables share, so encoding is cheap too.

The frames carry pickles (protocol 5) of the table's own types: frozen
dataclasses, authenticators with their key material (API key digests,
htpasswd hashes, JWT keys) and certificates with their private keys. Pickle
keeps the sharing inside one message (one authenticator for many routes) and
needs no second schema to keep in step with gateway/routing.py; types that
do not pickle as they are say how they travel (``__reduce__`` /
``__getstate__``: regexes compile again, caches arrive empty, JWT keys as
DER). Unpickling runs code chosen by the sender, so the channel must be
private to the two processes: a socketpair made by the controller, inherited
only by the worker it spawns. Frame: a 4-byte big-endian length, then the
payload.

Messages, as tuples (the first item names the kind):
- ``("table", generation, [(tid, route)...], endpoints, fallback, certificates)``
- ``("update", generation, [removed tid...], [(tid, route)...], {key: EndpointSet},
  [removed endpoint key...], fallback, certificates)`` where fallback is ``()``
  when unchanged, else ``(route_or_None,)``, and certificates None when unchanged;
- from a worker: ``("applied", generation)``, once a table is being served.
"""

from __future__ import annotations

import pickle
import struct
from collections.abc import Mapping
from typing import Any

from gateway.errors import ChannelError
from gateway.routing import EndpointSet, Route, RouteTable

HEADER = struct.Struct(">I")
MAX_FRAME = 1 << 30  # a frame longer than this is a broken channel, not a table
PROTOCOL = 5
TABLE, UPDATE, APPLIED = "table", "update", "applied"
UNCHANGED = ()
EMPTY = RouteTable()


def frame(message: Any) -> bytes:
    payload = pickle.dumps(message, protocol=PROTOCOL)
    return HEADER.pack(len(payload)) + payload


async def read_frame(reader) -> bytes:
    """The next frame's payload from an ``asyncio.StreamReader``; IncompleteReadError at the end."""
    (size,) = HEADER.unpack(await reader.readexactly(HEADER.size))
    if size > MAX_FRAME:
        raise ChannelError(f"frame of {size} bytes")
    return await reader.readexactly(size)


def load(payload: bytes) -> tuple:
    message = pickle.loads(payload)
    if not isinstance(message, tuple) or not message or message[0] not in (TABLE, UPDATE, APPLIED):
        raise ChannelError(f"not a table message: {type(message).__name__}")
    return message


class TableEncoder:
    """The controller's side: each published table becomes an update frame; ``snapshot`` for a worker that joins."""

    def __init__(self) -> None:
        self.table: RouteTable | None = None
        self.certificates: Mapping[str, Any] = {}
        self._tids: dict[int, int] = {}  # id(route) -> number, for the routes of self.table
        self._routes: dict[int, Route] = {}  # number -> route: the snapshot, without sorting the table
        self._next = 0
        self._snapshot: bytes | None = None

    def _number(self, route: Route) -> int:
        self._next += 1
        self._tids[id(route)] = self._next
        self._routes[self._next] = route
        return self._next

    def _forget(self, route: Route) -> int:
        tid = self._tids.pop(id(route))
        del self._routes[tid]
        return tid

    def update(self, table: RouteTable, certificates: Mapping[str, Any] | None = None) -> bytes | None:
        """The frame that takes a worker holding the previous table to this one
        (None for the first table: workers get a ``snapshot``).
        ``certificates``: None when there is no TLS listener, or unchanged."""
        previous = self.table
        certs = None
        if certificates is not None and certificates is not self.certificates and certificates != self.certificates:
            certs = dict(certificates)
            self.certificates = certs
        self.table = table
        self._snapshot = None
        if previous is None:
            for r in table.route_changes(EMPTY)[1]:
                self._number(r)
            return None
        removed, added = table.route_changes(previous)
        gone = [self._forget(r) for r in removed]
        new = [(self._number(r), r) for r in added]
        endpoints: dict[str, EndpointSet] = {}
        dropped: list[str] = []
        old_eps, new_eps = previous.endpoints, table.endpoints
        if old_eps is not new_eps:
            endpoints = {k: es for k, es in new_eps.items() if old_eps.get(k) is not es}
            dropped = [k for k in old_eps if k not in new_eps]
        fallback: tuple = UNCHANGED
        if table.fallback is not previous.fallback:  # one route, sent whole
            fallback = (table.fallback,)
        return frame((UPDATE, table.generation, gone, new, endpoints, dropped, fallback, certs))

    def snapshot(self) -> bytes | None:
        """The whole current table (None before the first): what a worker gets when it (re)starts."""
        table = self.table
        if table is None:
            return None
        if self._snapshot is None:  # workers starting together share one encoding
            routes = list(self._routes.items())
            self._snapshot = frame((TABLE, table.generation, routes, dict(table.endpoints), table.fallback,
                                    dict(self.certificates)))
        return self._snapshot


class TableDecoder:
    """A worker's side: applies table and update messages in order; ``table`` is the result."""

    def __init__(self) -> None:
        self.table: RouteTable | None = None
        self.certificates: Mapping[str, Any] = {}
        self._routes: dict[int, Route] = {}

    def apply(self, message: tuple) -> tuple[RouteTable, Mapping[str, Any] | None]:
        """The new table, and the certificates when they changed (None otherwise)."""
        if message[0] == TABLE:
            _, generation, routes, endpoints, fallback, certificates = message
            self._routes = dict(routes)
            self.table = RouteTable([r for _, r in routes], endpoints=endpoints, fallback=fallback,
                                    generation=generation)
            self.certificates = certificates
            return self.table, certificates
        if message[0] != UPDATE:
            raise ChannelError(f"unexpected {message[0]!r} message")
        if self.table is None:
            raise ChannelError("an update before the first table")
        _, generation, gone, new, endpoints, dropped, fallback, certificates = message
        table = self.table
        routes = self._routes
        removed = [routes.pop(tid) for tid in gone]
        for tid, r in new:
            routes[tid] = r
        eps = table.endpoints
        if endpoints or dropped:
            eps = eps.copy()
            eps.update(endpoints)
            for key in dropped:
                eps.pop(key, None)
        self.table = table.updated(removed, [r for _, r in new], endpoints=eps,
                                   fallback=fallback[0] if fallback else table.fallback, generation=generation)
        if certificates is not None:
            self.certificates = certificates
        return self.table, certificates
