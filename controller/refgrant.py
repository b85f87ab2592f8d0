"""Permission for references across namespaces: Gateway API's ReferenceGrant.

A route in one namespace may use a Service or Secret of another namespace only
when a ReferenceGrant in the TARGET namespace allows it (the owner of the
target consents; the referrer cannot grant itself anything). A grant lists
``from`` entries (group, kind, namespace of the referring objects) and ``to``
entries (group and kind of the targets, optionally one ``name``; without a
name, every object of that kind in the grant's namespace). A reference is
permitted when one grant has a matching ``from`` and a matching ``to``.
Same-namespace references never need a grant.

One mechanism for every referring kind (APIEndpoint, Ingress, and HTTPRoute
next): ``ReferenceGrants`` is an immutable index built from a store snapshot
that answers one question, ``permits(referrer, to_group, to_kind, namespace,
name)``; ``References`` is what one object's compile holds: that question for
one referrer, the ``--allow-cross-namespace-refs`` switch, the message a
refusal shows in status (reason ``RefNotPermitted``), and the dependency the
incremental compiler (controller/compile/incremental.py) needs to recompile the
object when a grant in the target namespace changes.

Neighbours: controller/compile/ (backends, mirror) and controller/authbuild.py
(``secretRef``, Ingress auth-secret annotations) ask; controller/files.py
(manifests) and controller/kube.py (the API) put ReferenceGrants in the store.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from controller.store import REFERENCEGRANT, Snapshot

REF_NOT_PERMITTED = "RefNotPermitted"

GRANT_GROUP = "gateway.networking.k8s.io"
# The versions a ReferenceGrant is read at, preferred first (v1 where served).
GRANT_VERSIONS = ("v1", "v1beta1")
GRANT_API_VERSIONS = tuple(f"{GRANT_GROUP}/{v}" for v in GRANT_VERSIONS)

# What a compile that checked a reference into namespace N depends on, as the
# incremental compiler's dependency tracking names it: (REFERENCE_GRANTS, N).
REFERENCE_GRANTS = "ReferenceGrant:namespace"

CORE_GROUP = ""  # Service and Secret: Gateway API spells the core group ""


@dataclass(frozen=True, slots=True)
class Referrer:
    """The group, kind and namespace of an object that names others."""

    group: str
    kind: str
    namespace: str


APIENDPOINT_GROUP = "crdgate.io"
INGRESS_GROUP = "networking.k8s.io"


# ReferenceGrant spec entries: field -> (its keys, the ones that must be non-empty).
_ENTRY_KEYS = {
    "from": (("group", "kind", "namespace"), ("kind", "namespace")),
    "to": (("group", "kind", "name"), ("kind",)),
}


def validate_grant(obj: Mapping[str, Any]) -> None:
    """Check a ReferenceGrant's spec; ValueError names the field.

    The API server checks this with the CRD's schema; the manifests folder
    (controller/files.py) calls it so that a typo is an error, not a grant
    that silently permits nothing."""
    spec = obj.get("spec")
    if not isinstance(spec, Mapping):
        raise ValueError("spec: required")
    for field, (keys, required) in _ENTRY_KEYS.items():
        entries = spec.get(field)
        if not isinstance(entries, list) or not entries:
            raise ValueError(f"spec.{field}: expected a non-empty list")
        for i, entry in enumerate(entries):
            where = f"spec.{field}[{i}]"
            if not isinstance(entry, Mapping):
                raise ValueError(f"{where}: expected an object")
            unknown = sorted(set(entry) - set(keys))
            if unknown:
                raise ValueError(f"{where}: unknown field(s) {', '.join(unknown)}")
            for key in required:
                if not isinstance(entry.get(key), str) or not entry[key]:
                    raise ValueError(f"{where}.{key}: required (a non-empty string)")
            if entry.get("group") is not None and not isinstance(entry["group"], str):
                raise ValueError(f"{where}.group: expected a string (\"\" for the core group)")
            if field == "to" and entry.get("name") is not None and (not isinstance(entry["name"], str) or not entry["name"]):
                raise ValueError(f"{where}.name: expected a non-empty string (leave it out for every name)")


_ANY_NAME = None  # a ``to`` without a name: every object of the kind


class ReferenceGrants:
    """Every ReferenceGrant of a snapshot, indexed for ``permits`` (immutable).

    Index: (target namespace, to group, to kind, from group, from kind, from
    namespace) -> the names granted, or None for all of them. A malformed
    entry grants nothing (fail closed); the other entries of its grant stand.
    """

    __slots__ = ("_index",)

    def __init__(self, grants: Iterable[Mapping[str, Any]] = ()):
        index: dict[tuple[str, ...], frozenset[str] | None] = {}
        for grant in grants:
            for key, name in _entries(grant):
                if name is _ANY_NAME:
                    index[key] = None
                elif key not in index:
                    index[key] = frozenset((name,))
                elif index[key] is not None:
                    index[key] = index[key] | {name}
        self._index = index

    def permits(self, referrer: Referrer, to_group: str, to_kind: str, namespace: str, name: str) -> bool:
        """May ``referrer`` refer to the object ``to_group``/``to_kind`` ``namespace``/``name``?"""
        if namespace == referrer.namespace:
            return True
        key = (namespace, to_group, to_kind, referrer.group, referrer.kind, referrer.namespace)
        if key not in self._index:
            return False
        names = self._index[key]
        return names is None or name in names

    def __len__(self) -> int:
        return len(self._index)


def _entries(grant: Mapping[str, Any]) -> Iterable[tuple[tuple[str, ...], str | None]]:
    meta = grant.get("metadata") or {}
    spec = grant.get("spec")
    namespace = meta.get("namespace") if isinstance(meta, Mapping) else None
    if not isinstance(namespace, str) or not namespace or not isinstance(spec, Mapping):
        return
    froms = [f for f in spec.get("from") or () if _valid(f, ("kind", "namespace"))]
    # An empty or non-string name is malformed, not "every name".
    tos = [t for t in spec.get("to") or () if _valid(t, ("kind",)) and (t.get("name") is None or _valid(t, ("name",)))]
    for t in tos:
        name = t.get("name", _ANY_NAME)
        for f in froms:
            key = (namespace, t.get("group") or "", t["kind"], f.get("group") or "", f["kind"], f["namespace"])
            yield key, name


def _valid(entry: Any, required: tuple[str, ...]) -> bool:
    if not isinstance(entry, Mapping):
        return False
    if not isinstance(entry.get("group", ""), (str, type(None))):
        return False
    return all(isinstance(entry.get(k), str) and entry.get(k) for k in required)


NO_GRANTS = ReferenceGrants()


def grants_of(snapshot: Snapshot) -> ReferenceGrants:
    """The index of a snapshot's ReferenceGrants (a compile builds it once, on first use)."""
    objects = snapshot.of(REFERENCEGRANT)
    return ReferenceGrants(objects.values()) if objects else NO_GRANTS


class References:
    """What one object may refer to, for the compile of that object.

    ``grants``: called on the first cross-namespace question (most objects
    never ask one, and then no index is built); ``allow_all``: the
    ``--allow-cross-namespace-refs`` switch (single-tenant clusters); ``note``:
    told ``(REFERENCE_GRANTS, namespace)`` for every namespace asked about, so
    that a grant appearing, changing or going away there recompiles the object.
    """

    __slots__ = ("referrer", "_grants", "allow_all", "note")

    def __init__(
        self,
        referrer: Referrer,
        grants: Callable[[], ReferenceGrants],
        *,
        allow_all: bool = False,
        note: Callable[[tuple[str, str]], None] | None = None,
    ):
        self.referrer = referrer
        self._grants = grants
        self.allow_all = allow_all
        self.note = note

    def permitted(self, to_group: str, to_kind: str, namespace: str, name: str) -> bool:
        if namespace == self.referrer.namespace or self.allow_all:
            return True
        if self.note is not None:
            self.note((REFERENCE_GRANTS, namespace))
        return self._grants().permits(self.referrer, to_group, to_kind, namespace, name)

    def refusal(self, to_kind: str, namespace: str, name: str) -> str:
        """Why a reference was refused, naming it and what would permit it."""
        r = self.referrer
        return (
            f"{to_kind} {namespace}/{name} is in another namespace and no ReferenceGrant in namespace "
            f"{namespace} allows references to it from {r.kind} in namespace {r.namespace}"
        )
