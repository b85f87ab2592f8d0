"""The object cache every source feeds and the compiler reads.

One ``Store`` per process holds plain JSON-shaped dicts keyed by kind, then by
``namespace/name``. Sources (controller/files.py, controller/kube.py) call
``replace`` after a full list and ``apply`` for each watch event; either marks
the store dirty and wakes the publisher (controller/publish.py), which takes a
``snapshot`` and compiles it.

What changed is recorded twice: the kinds since the last ``take_changes`` (the
publisher takes the cheap path when only endpoints moved), and each object's
key in a short log by ``version``, so that ``snapshot(since=v)`` can say which
objects changed after version ``v`` and the compiler redoes only those.

Sources hand in objects made with ``compact`` (what no reader needs dropped,
strings interned), the Kubernetes source through ``settle`` as they arrive: at 10,000
routes the cached objects are the largest thing the process holds, and a relist
must not hold them twice. ``settle`` gives back the cached dict itself when an
object came back unchanged, and for one whose only change is its status or the
server's bookkeeping (``same_input``: the echo of our own status write), a
dict that shares every other part with the cached one.

Such a status-only change updates the cache (the status writer compares with
it) but is not a change for the compiler: it bumps no version, marks no kind
changed and is counted apart (``crdgate_store_status_only_updates_total``). It
still wakes the publisher, which lets the compiler drop the superseded dicts
(``take_status_only``, controller/publish.py) without compiling or swapping.
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Iterable, Mapping

from gateway.metrics import STATUS_ONLY_UPDATES

APIENDPOINT = "APIEndpoint"
SERVICE = "Service"
ENDPOINTSLICE = "EndpointSlice"
INGRESS = "Ingress"
INGRESSCLASS = "IngressClass"
SECRET = "Secret"
REFERENCEGRANT = "ReferenceGrant"  # gateway.networking.k8s.io: permission across namespaces
# Gateway API (controller/gatewayapi/): read into the store; the compile does not route them yet.
GATEWAYCLASS = "GatewayClass"
GATEWAY = "Gateway"
HTTPROUTE = "HTTPRoute"
GRPCROUTE = "GRPCRoute"
NAMESPACE = "Namespace"  # its labels decide a listener's allowedRoutes.namespaces.from: Selector

KINDS = (
    APIENDPOINT, SERVICE, ENDPOINTSLICE, INGRESS, INGRESSCLASS, SECRET, REFERENCEGRANT,
    GATEWAYCLASS, GATEWAY, HTTPROUTE, GRPCROUTE, NAMESPACE,
)  # fmt: skip
# Kinds whose changes only move addresses: no route needs recompiling for them.
ENDPOINT_KINDS = frozenset({ENDPOINTSLICE})
# Kinds read and kept, but that the compile does not read: a change of only these publishes
# nothing new, and the offline reports count them with the kinds crdgate ignores. Every kind
# read is compiled today (Gateway API's by controller/compile/httproute.py and gateways.py).
NOT_COMPILED_KINDS: frozenset[str] = frozenset()

# Written by the API server for its own bookkeeping and read by nobody here;
# on a cluster they are often larger than the rest of the object together.
DROPPED_METADATA = ("managedFields",)
DROPPED_ANNOTATIONS = ("kubectl.kubernetes.io/last-applied-configuration",)
# Strings longer than this are rarely repeated across objects: not worth interning.
_INTERN_MAX = 256
# The change log keeps at most this many entries (see Store._log): a compile needs
# only the changes since the previous one, and diffs by identity when the log is short.
_LOG_MAX = 4096

_EMPTY: Mapping[str, dict] = MappingProxyType({})
# Metadata the compiler never reads: written by the server on every change, ours included.
VOLATILE_METADATA = frozenset({"resourceVersion", "managedFields"})


def same_input(a: Mapping, b: Mapping) -> bool:
    """True when two versions of an object compile the same: only their ``status``
    or the server's bookkeeping (``VOLATILE_METADATA``) differ.

    Nothing that compiles reads an object's status (statuses are what the
    compile writes); labels, annotations and the generation do count.
    """
    if a is b:
        return True
    for k in a.keys() | b.keys():
        if k == "status":
            continue
        va, vb = a.get(k), b.get(k)
        if k == "metadata" and isinstance(va, Mapping) and isinstance(vb, Mapping):
            if any(va.get(f) != vb.get(f) for f in va.keys() | vb.keys() if f not in VOLATILE_METADATA):
                return False
        elif va != vb:
            return False
    return True


def _sharing(cached: dict, new: dict) -> dict:
    """``new`` (whose input is the same as ``cached``'s) built from ``cached``'s parts
    wherever they are equal: only its status and bookkeeping cost memory."""
    out = {k: (cached[k] if k in cached and k not in ("status", "metadata") else v) for k, v in new.items()}
    meta, old_meta = new.get("metadata"), cached.get("metadata")
    if isinstance(meta, dict) and isinstance(old_meta, dict):
        out["metadata"] = {f: (old_meta[f] if f in old_meta and f not in VOLATILE_METADATA else v)
                           for f, v in meta.items()}
    return out


def object_key(obj: Mapping) -> str:
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace") or ""
    # Interned: the store, the kube source's per-reflector caches and the compiled
    # routes (Route.name) all keep this key; one string serves them all.
    return sys.intern(f"{ns}/{meta.get('name', '')}")


def compact(obj: Any) -> Any:
    """A copy of a JSON-shaped object that costs less to keep.

    Dict keys and short strings are interned (every object repeats the same keys
    and most of the same values: kinds, namespaces, condition texts, timestamps),
    ``metadata.managedFields`` and kubectl's last-applied annotation are dropped,
    and a ``status`` equal to one seen recently is that very dict (our own status
    writes give thousands of objects the same few statuses). Everything a reader
    of the store looks at is kept as it was; like every object in the store, the
    result must never be changed in place (parts of it are shared).
    """
    if not isinstance(obj, dict):
        return _compact(obj)
    out = _compact(obj)
    meta = out.get("metadata")
    if isinstance(meta, dict):
        for name in DROPPED_METADATA:
            meta.pop(name, None)
        annotations = meta.get("annotations")
        if isinstance(annotations, dict) and any(a in annotations for a in DROPPED_ANNOTATIONS):
            meta["annotations"] = {k: v for k, v in annotations.items() if k not in DROPPED_ANNOTATIONS}
    if "status" in out:
        out["status"] = _shared(out["status"])
    return out


def _compact(value: Any) -> Any:
    if type(value) is str:
        return sys.intern(value) if len(value) <= _INTERN_MAX else value
    if isinstance(value, dict):
        return {(sys.intern(k) if type(k) is str else k): _compact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_compact(v) for v in value]
    return value


# Recently seen statuses by their hashable form (see compact); cleared when full.
_SHARED: dict[Any, Any] = {}
_SHARED_MAX = 1024


def _frozen(value: Any) -> Any:
    """A hashable form of a JSON value, equal exactly when the values are (key order included)."""
    if isinstance(value, dict):
        return ("{", *((k, _frozen(v)) for k, v in value.items()))
    if isinstance(value, list):
        return ("[", *map(_frozen, value))
    if type(value) is str or value is None:
        return value
    return (type(value), value)  # True == 1 == 1.0 in Python, not in JSON


def _shared(value: Any) -> Any:
    key = _frozen(value)
    found = _SHARED.get(key)
    if found is not None:
        return found
    if len(_SHARED) >= _SHARED_MAX:
        _SHARED.clear()
    _SHARED[key] = value
    return value


@dataclass(frozen=True)
class Snapshot:
    """A consistent, read-only view of every cached object at one moment."""

    objects: Mapping[str, Mapping[str, dict]]
    # Where each object came from (file path for the manifests source), for error messages.
    origins: Mapping[str, str] = field(default_factory=dict)
    version: int = 0  # the store's version when taken
    # The keys changed (added, modified, deleted, or given another origin) after
    # store version ``since``, by kind; None when not asked for or not known.
    since: int | None = None
    changes: Mapping[str, frozenset[str]] | None = None

    def of(self, kind: str) -> Mapping[str, dict]:
        return self.objects.get(kind, _EMPTY)

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
        # (kind, key) -> version of its latest change, oldest first (a key moves to
        # the end when it changes again). Trimmed from the front; changes at or
        # before _log_floor may be missing.
        self._log: dict[tuple[str, str], int] = {}
        self._log_floor = 0
        # Read-only copies handed to snapshots, reused until their kind changes.
        self._views: dict[str, Mapping[str, dict]] = {}
        self._origins_view: Mapping[str, str] | None = None
        # Keys replaced by a status-only change since the last take_status_only, by kind.
        self._status_only_keys: dict[str, set[str]] = {}

    # -- writes (sources) ------------------------------------------------------

    def replace(self, kind: str, objects: Iterable[dict], origins: Mapping[str, str] | None = None) -> None:
        """Set the whole content of ``kind`` (a list, or a relist after 410)."""
        old = self._objects.get(kind, {})
        new: dict[str, dict] = {}
        changed: list[str] = []
        quiet = 0
        for o in objects:
            key = object_key(o)
            prev = old.get(key)
            # Keep the cached dict when nothing changed: the compiler skips objects
            # it has seen by identity, so a relist stays cheap.
            if prev is not None and (prev is o or prev == o):
                new[key] = prev
            elif prev is not None and same_input(prev, o):
                new[key] = o
                self._status_only(kind, key)
                quiet += 1
            else:
                new[key] = o
                changed.append(key)
        gone = [key for key in old if key not in new]
        self._objects[kind] = new
        for key in gone:
            self._drop_origin(kind, key)
        changed += gone
        changed += self._set_origins(kind, origins or {}, new)
        first = kind not in self._synced
        self._synced.add(kind)
        if first or changed:
            self._mark(kind, changed)
        elif quiet:
            self.dirty.set()

    def apply(self, kind: str, event_type: str, obj: dict) -> None:
        """One watch event: ADDED / MODIFIED / DELETED."""
        key = object_key(obj)
        bucket = self._objects.setdefault(kind, {})
        if event_type == "DELETED":
            if bucket.pop(key, None) is None:
                return
            self._drop_origin(kind, key)
        else:
            prev = bucket.get(key)
            if prev is not None and (prev is obj or prev == obj):
                return
            bucket[key] = obj
            if prev is not None and same_input(prev, obj):
                self._status_only(kind, key)
                self.dirty.set()
                return
        self._mark(kind, (key,))

    def update(self, kind: str, upserts: Mapping[str, dict], deletes: Iterable[str] = (),
               origins: Mapping[str, str] | None = None) -> None:
        """Several objects of one kind at once (a manifests file changed): ``upserts``
        by key, ``deletes`` by key, ``origins`` of the upserted ones."""
        bucket = self._objects.setdefault(kind, {})
        changed: list[str] = []
        for key in deletes:
            if bucket.pop(key, None) is not None:
                self._drop_origin(kind, key)
                changed.append(key)
        for key, obj in upserts.items():
            prev = bucket.get(key)
            if prev is None or (prev is not obj and prev != obj):
                bucket[key] = obj
                changed.append(key)
        changed += self._set_origins(kind, origins or {}, bucket)
        if changed:
            self._mark(kind, changed)

    def settle(self, kind: str, raw: dict) -> dict:
        """A raw object from the API server as the cache should keep it (``compact``).

        The cached dict itself when the object is the version cached (same
        resourceVersion: the server gives every write a new one, so the content
        is the same; nothing is copied or compared) or equal to it; a dict that
        shares the cached one's parts when only its status or bookkeeping moved;
        else the compacted object. Sources call it as each object arrives, so a
        relist costs a lookup per unchanged object and holds only what changed,
        never a second copy of the cache."""
        prev = self._objects.get(kind, _EMPTY).get(object_key(raw))
        if prev is not None:
            rv = (raw.get("metadata") or {}).get("resourceVersion")
            if rv and rv == (prev.get("metadata") or {}).get("resourceVersion"):
                return prev
        obj = compact(raw)
        if prev is None:
            return obj
        if prev == obj:
            return prev
        if same_input(prev, obj):
            return _sharing(prev, obj)
        return obj

    def _status_only(self, kind: str, key: str) -> None:
        """A cached object replaced by one with the same input: snapshots must show
        it (the view is rebuilt on the next one), the compiler need not look."""
        self._views.pop(kind, None)
        self._status_only_keys.setdefault(kind, set()).add(key)
        STATUS_ONLY_UPDATES.labels(kind).inc()

    def _set_origins(self, kind: str, origins: Mapping[str, str], present: Mapping[str, dict]) -> list[str]:
        """Record where objects came from; the keys whose origin changed (it shows in their status)."""
        changed = []
        for key, origin in origins.items():
            okey = f"{kind}:{key}"
            if key in present and self._origins.get(okey) != origin:
                self._origins[okey] = origin
                self._origins_view = None
                changed.append(key)
        return changed

    def _drop_origin(self, kind: str, key: str) -> None:
        if self._origins.pop(f"{kind}:{key}", None) is not None:
            self._origins_view = None

    def _mark(self, kind: str, keys: Iterable[str]) -> None:
        self._changed.add(kind)
        self.version += 1
        self._views.pop(kind, None)
        log = self._log
        for key in keys:
            entry = (kind, key)
            log.pop(entry, None)  # to the end: the log stays ordered by version
            log[entry] = self.version
        if len(log) > _LOG_MAX:
            self._trim_log()
        self.dirty.set()

    def _trim_log(self) -> None:
        """Forget the older half of the log: a compile that needs it diffs by identity instead."""
        entries = list(self._log.items())
        half = len(entries) // 2
        self._log_floor = max(self._log_floor, entries[half - 1][1])
        self._log = dict(entries[half:])

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

    def take_status_only(self) -> dict[str, set[str]]:
        """The keys whose object changed only in status or bookkeeping since the last call, by kind."""
        taken, self._status_only_keys = self._status_only_keys, {}
        return taken

    def changes_since(self, version: int) -> dict[str, frozenset[str]] | None:
        """The keys changed after ``version``, by kind; None when the log no longer reaches back."""
        if version < self._log_floor:
            return None
        out: dict[str, set[str]] = {}
        for (kind, key), v in reversed(self._log.items()):
            if v <= version:
                break
            out.setdefault(kind, set()).add(key)
        return {kind: frozenset(keys) for kind, keys in out.items()}

    def snapshot(self, since: int | None = None) -> Snapshot:
        """The current content; with ``since``, also what changed after that version.

        Each kind is copied once per change of that kind, not per snapshot: an
        APIEndpoint event does not copy the Services (sources replace whole
        objects, never edit one in place, so sharing them with the compiler is safe).
        """
        views = self._views
        for kind, objects in self._objects.items():
            if kind not in views:
                views[kind] = MappingProxyType(objects.copy())  # copy(): fast even after deletions
        if self._origins_view is None:
            self._origins_view = MappingProxyType(self._origins.copy())
        return Snapshot(
            objects=MappingProxyType(dict(views)),
            origins=self._origins_view,
            version=self.version,
            since=since,
            changes=self.changes_since(since) if since is not None else None,
        )
