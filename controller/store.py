"""The object cache every source feeds and the compiler reads.

One ``Store`` per process holds plain JSON-shaped dicts keyed by kind, then by
``namespace/name``. Sources (controller/files.py, controller/kube.py) call
``replace`` after a full list and ``apply`` for each watch event; either marks
the store dirty and wakes the publisher (controller/publish.py), which takes a
``snapshot`` and compiles it. Which kinds changed since the last snapshot is
recorded so the publisher can take the cheap path when only endpoints moved.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Iterable, Mapping

APIENDPOINT = "APIEndpoint"
SERVICE = "Service"
ENDPOINTSLICE = "EndpointSlice"
INGRESS = "Ingress"
INGRESSCLASS = "IngressClass"
SECRET = "Secret"

KINDS = (APIENDPOINT, SERVICE, ENDPOINTSLICE, INGRESS, INGRESSCLASS, SECRET)
# Kinds whose changes only move addresses: no route needs recompiling for them.
ENDPOINT_KINDS = frozenset({ENDPOINTSLICE})


def object_key(obj: Mapping) -> str:
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace") or ""
    return f"{ns}/{meta.get('name', '')}"


@dataclass(frozen=True)
class Snapshot:
    """A consistent, read-only view of every cached object at one moment."""

    objects: Mapping[str, Mapping[str, dict]]
    # Where each object came from (file path for the manifests source), for error messages.
    origins: Mapping[str, str] = field(default_factory=dict)

    def of(self, kind: str) -> Mapping[str, dict]:
        return self.objects.get(kind, MappingProxyType({}))

    def get(self, kind: str, namespace: str, name: str) -> dict | None:
        return self.of(kind).get(f"{namespace}/{name}")


class Store:
    def __init__(self, kinds: Iterable[str] = KINDS):
        self._objects: dict[str, dict[str, dict]] = {k: {} for k in kinds}
        self._origins: dict[str, str] = {}
        self._synced: set[str] = set()
        self._changed: set[str] = set()
        self.dirty = asyncio.Event()
        self.version = 0  # bumped on every change; lets tests and the publisher see progress

    # -- writes (sources) ------------------------------------------------------

    def replace(self, kind: str, objects: Iterable[dict], origins: Mapping[str, str] | None = None) -> None:
        """Set the whole content of ``kind`` (a list, or a relist after 410)."""
        old = self._objects.get(kind, {})
        new = {}
        for o in objects:
            key = object_key(o)
            prev = old.get(key)
            # Keep the cached dict when nothing changed: the compiler reuses work
            # for objects it has seen by identity, so a relist stays cheap.
            new[key] = prev if prev is not None and prev == o else o
        self._objects[kind] = new
        for key in old.keys() - new.keys():
            self._origins.pop(f"{kind}:{key}", None)
        if origins:
            for key, origin in origins.items():
                self._origins[f"{kind}:{key}"] = origin
        first = kind not in self._synced
        self._synced.add(kind)
        if first or old != new:
            self._mark(kind)

    def apply(self, kind: str, event_type: str, obj: dict) -> None:
        """One watch event: ADDED / MODIFIED / DELETED."""
        key = object_key(obj)
        bucket = self._objects.setdefault(kind, {})
        if event_type == "DELETED":
            if bucket.pop(key, None) is None:
                return
            self._origins.pop(f"{kind}:{key}", None)
        else:
            if bucket.get(key) == obj:
                return
            bucket[key] = obj
        self._mark(kind)

    def _mark(self, kind: str) -> None:
        self._changed.add(kind)
        self.version += 1
        self.dirty.set()

    # -- reads (publisher) -----------------------------------------------------

    def synced(self, kinds: Iterable[str] | None = None) -> bool:
        """True once every kind (or the ones named) has been listed once."""
        return all(k in self._synced for k in (kinds or self._objects))

    def get(self, kind: str, namespace: str, name: str) -> dict | None:
        return self._objects.get(kind, {}).get(f"{namespace}/{name}")

    def keys(self, kind: str) -> list[str]:
        return list(self._objects.get(kind, {}))

    def take_changes(self) -> set[str]:
        """The kinds changed since the last call; clears the dirty signal."""
        changed, self._changed = self._changed, set()
        self.dirty.clear()
        return changed

    def snapshot(self) -> Snapshot:
        # Shallow copies: objects themselves are never mutated in place (sources
        # replace whole objects), so sharing them with the compiler is safe.
        return Snapshot(
            objects=MappingProxyType({k: MappingProxyType(dict(v)) for k, v in self._objects.items()}),
            origins=MappingProxyType(dict(self._origins)),
        )
