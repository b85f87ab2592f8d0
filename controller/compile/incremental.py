"""Incremental compilation: redo what a change touched, reuse everything else.

Neighbours: strings together the package's steps (objects.py: one object's
compile; conflicts.py: settling; backends.py: endpoint resolution; status.py:
statuses), as the full compile (full.py) does; the publisher (controller/publish.py)
keeps one ``Compiler`` and calls it with each new store snapshot, which carries
the keys changed since the previous one (controller/store.py); the result's
table is made with ``RouteTable.updated`` (gateway/routing.py), which rebuilds
only the host groups and path buckets whose routes changed.

A compile goes through the same steps whether it starts from nothing (every
object counts as changed) or from the previous compile:

1. objects to compile: the APIEndpoints and Ingresses that changed, and those
   that read something that changed (a Service whose ports moved, a Secret, the
   namespace's default auth Secret, the IngressClass, a ReferenceGrant in a
   namespace it refers into); an object whose only
   change is its status or resourceVersion (our own status write coming back
   through the watch) keeps what it compiled to;
2. conflicts: the candidates that share a match key (host, path, type, methods,
   headers, query) with a changed one, and transitively those sharing a key
   with them, are settled again in (creationTimestamp, namespace/name) order;
   if the oldest defaultBackend changes hands, every Ingress with one too. No
   other candidate's outcome can have changed;
3. backends: EndpointSets are resolved for new backend keys and for those whose
   Service or EndpointSlices changed; statuses are redone for the objects whose
   outcome or backends changed;
4. Gateway API: the attached-route counts move with the HTTPRoute statuses
   that changed, and our Gateways' statuses are redone when those counts or a
   Gateway, GatewayClass, Secret or ReferenceGrant changed (listeners.py);
5. the table: the routes that left and those that arrived go to
   ``RouteTable.updated``; the previous table is not touched.

The result is exactly what a fresh compile of the same snapshot gives (same
table semantics and match order, same statuses): full.py's
``compile_snapshot`` shares the per-object steps but none of this
bookkeeping, and tests/test_incremental_equivalence.py compares the two after
every step of random edit sequences.

Each step costs what the change touches, not the number of routes, apart from
copying a few flat dicts: the statuses and routed maps handed out with the
result (which must not change under whoever holds them), the path index of a
host group that changed, and the store's copy of the changed kind (about 0.1 ms
each at 10,000 routes). The state is changed in place: if a step fails halfway,
the Compiler drops it and compiles from scratch.
"""

from __future__ import annotations

import bisect
import logging
from collections import Counter
from collections.abc import Mapping
from typing import NamedTuple

from controller.authbuild import DEFAULT_AUTH_LABEL, NAMESPACE_DEFAULTS
from controller.compile.backends import (
    is_service_key,
    parse_service_key,
    resolve_all,
    service_shape,
    slice_service,
)
from controller.compile.conflicts import candidate_order, match_keys, settle
from controller.compile.context import Candidate, gc_paused
from controller.compile.listeners import GATEWAY_REFERENCE_KINDS, attached_listeners, gateway_statuses
from controller.compile.objects import ObjectCompiler, Outcome
from controller.compile.options import CompileOptions
from controller.compile.result import CompileResult, refresh_endpoints
from controller.compile.status import ObjectStatus, Routed, routed_status
from controller.refgrant import REFERENCE_GRANTS
from controller.store import (
    APIENDPOINT,
    ENDPOINTSLICE,
    GATEWAY,
    GRPCROUTE,
    HTTPROUTE,
    INGRESS,
    NAMESPACE,
    REFERENCEGRANT,
    SECRET,
    SERVICE,
    Snapshot,
    same_input,
)
from gateway.routing import EndpointSet, Route, RouteTable

log = logging.getLogger("crdgate.controller.compile")

ROUTED_KINDS = (APIENDPOINT, INGRESS, HTTPROUTE, GRPCROUTE)
ROUTE_PREFIXES = (f"{HTTPROUTE}:", f"{GRPCROUTE}:")  # statuses counted in attachedRoutes
_NO_SNAPSHOT = Snapshot(objects={})


class _Entry(NamedTuple):
    """What one object compiled to, and from what."""

    obj: Mapping  # the store's object (the same dict until the object changes)
    deps: frozenset  # what else it read (see ObjectCompiler.build)
    outcome: Outcome


class _State:
    """Everything a compile leaves for the next one."""

    def __init__(self, options: CompileOptions):
        self.options = options
        self.snapshot: Snapshot = _NO_SNAPSHOT
        self.entries: dict[str, _Entry] = {}  # status key -> entry
        self.dependents: dict[tuple, set[str]] = {}  # dep -> status keys that read it
        self.deps_seen: dict[frozenset, frozenset] = {}  # one frozenset per distinct deps
        self.claims: dict[tuple, str | tuple[str, ...]] = {}  # match key -> candidate(s) claiming it, winner or not
        self.fallbacks: set[str] = set()  # candidates with a defaultBackend
        self.fallback: str | None = None  # the one in use
        self.kept: dict[str, tuple[Route, ...]] = {}  # candidate -> its routes in the table
        self.users: dict[str, set[str]] = {}  # backend key -> routed objects using it
        self.keys_by_service: dict[str, set[str]] = {}  # "ns/name" -> backend keys of that Service
        self.resolved: dict[str, tuple[EndpointSet, str]] = {}  # backend key -> endpoints, problem
        self.slices: dict[str, list[str]] = {}  # "ns/name" of a Service -> its slice keys, sorted
        # Handed out with each result: replaced by copies, never changed.
        self.statuses: Mapping[str, ObjectStatus] = {}
        self.routed: Mapping[str, Routed] = {}
        self.table: RouteTable | None = None
        # Gateway API: accepted HTTPRoutes per listener ("ns/gateway/listener"), and
        # the status keys of our GatewayClasses and Gateways (listeners.py).
        self.attached: Counter = Counter()
        self.gateway_keys: set[str] = set()
        self.gateway_bases: dict = {}  # see listeners.gateway_statuses


class Compiler:
    """Compiles snapshots one after the other, each from the previous one."""

    def __init__(self, options: CompileOptions = CompileOptions()):
        self.options = options
        self._state: _State | None = None
        self.failures = 0  # incremental steps that failed and were redone from scratch (a bug)

    def reset(self) -> None:
        """Forget the previous compile: the next one starts from scratch."""
        self._state = None

    def compile(self, snapshot: Snapshot, options: CompileOptions | None = None, generation: int = 0) -> CompileResult:
        options = options or self.options
        state = self._state
        if state is not None and state.options == options:
            try:
                return _Step(state, snapshot, generation).run()
            except Exception:  # a bug: the state may be half updated, do not build on it
                self.failures += 1
                log.exception("incremental compile failed; compiling everything again")
        self._state = None
        state = _State(options)
        with gc_paused():
            result = _Step(state, snapshot, generation, full=True).run()
        self._state = state
        return result

    def adopt(self, snapshot: Snapshot, keys: Mapping[str, set[str]]) -> None:
        """Objects ``keys`` (by kind) were replaced by versions with the same input
        (``controller.store.same_input``: a status write's echo): there is nothing to
        compile, but hold the new dicts, so the old ones can go. ``snapshot`` becomes
        the base of the next compile when it is of the version last compiled."""
        st = self._state
        if st is None:
            return
        for kind in ROUTED_KINDS:
            objects = snapshot.of(kind)
            for key in keys.get(kind, ()):
                sk = f"{kind}:{key}"
                entry, obj = st.entries.get(sk), objects.get(key)
                if entry is not None and obj is not None and entry.obj is not obj and same_input(entry.obj, obj):
                    st.entries[sk] = entry._replace(obj=obj)
        if snapshot.version == st.snapshot.version:
            st.snapshot = snapshot

    def refresh(self, previous: CompileResult, snapshot: Snapshot, generation: int) -> CompileResult:
        """For EndpointSlice-only changes: the same step (it resolves only the
        backends whose slices moved and keeps every route)."""
        if self._state is None:
            return refresh_endpoints(previous, snapshot, generation)
        return self.compile(snapshot, self._state.options, generation)


def _origin_of(outcome: Outcome) -> str | None:
    if isinstance(outcome, Candidate):
        return outcome.routed.origin
    if isinstance(outcome, ObjectStatus):
        return outcome.origin
    return None


def _route_fields(r: Route) -> tuple:
    return (
        r.name, r.kind, r.path, r.path_type, r.hosts, r.methods, r.headers, r.query, r.backends, r.policy,
        r.created, r.wildcard_single_label, r.rule, r.order, r.regex,
    )  # fmt: skip


def _same_candidate(a: Candidate, b: Candidate) -> bool:
    return (
        a.status_key == b.status_key
        and a.created == b.created
        and a.owner == b.owner
        and a.whole == b.whole
        and a.routed == b.routed
        and len(a.routes) == len(b.routes)
        and all(_route_fields(x) == _route_fields(y) for x, y in zip(a.routes, b.routes))
        and (a.fallback is None) == (b.fallback is None)
        and (a.fallback is None or _route_fields(a.fallback) == _route_fields(b.fallback))
    )


def _keep_if_same(old: Outcome, new: Outcome) -> Outcome:
    """The old outcome when the new one is equal: unchanged objects keep their
    route objects, so nothing downstream (table, statuses) moves for them."""
    if isinstance(old, Candidate) and isinstance(new, Candidate):
        return old if _same_candidate(old, new) else new
    if old is None and new is None:
        return None
    if isinstance(old, ObjectStatus) and old == new:
        return old
    return new


def _diff(old: Snapshot, new: Snapshot) -> dict[str, set[str]]:
    """The keys that differ between two snapshots, by identity (the store keeps an
    unchanged object's dict): used when the snapshot does not say what changed."""
    out: dict[str, set[str]] = {}
    for kind in old.objects.keys() | new.objects.keys():
        a, b = old.of(kind), new.of(kind)
        changed = {k for k in a.keys() | b.keys() if a.get(k) is not b.get(k)}
        if changed:
            out[kind] = changed
    for okey in old.origins.keys() | new.origins.keys():
        if old.origins.get(okey) != new.origins.get(okey):
            kind, _, key = okey.partition(":")
            out.setdefault(kind, set()).add(key)
    return out


def _holders(claim: str | tuple[str, ...] | None) -> tuple[str, ...]:
    if claim is None:
        return ()
    return (claim,) if isinstance(claim, str) else claim


def _refs(info: Routed | None) -> set[str]:
    return set(info.backends) | set(info.extra_refs) if info is not None else set()


class _Step:
    """One compile: from ``state`` (the previous snapshot's) to ``snapshot``'s."""

    def __init__(self, state: _State, snapshot: Snapshot, generation: int, full: bool = False):
        self.st = state
        self.snap = snapshot
        self.generation = generation
        self.full = full
        self.compiler = ObjectCompiler(snapshot, state.options, state.slices)
        self.changes = self._changes()
        # Filled as the step goes:
        self.touched: dict[str, tuple[Outcome, Outcome]] = {}  # status key -> (old, new) outcome
        self.route_keys: dict[str, list[list[tuple]]] = {}  # candidate -> match keys of each route
        self.removed: dict[int, Route] = {}  # routes leaving the table
        self.added: dict[int, Route] = {}  # routes entering it
        self.routed_changes: dict[str, Routed | None] = {}
        self.status_changes: dict[str, ObjectStatus | None] = {}
        self.status_dirty: set[str] = set()  # routed objects whose status must be redone
        self.endpoint_changes: dict[str, EndpointSet | None] = {}

    def _changes(self) -> Mapping[str, set[str] | frozenset[str]]:
        snap, st = self.snap, self.st
        if self.full:
            return {kind: set(objects) for kind, objects in snap.objects.items()}
        if snap.changes is not None and snap.since is not None and snap.since == st.snapshot.version:
            return snap.changes
        return _diff(st.snapshot, snap)

    def run(self) -> CompileResult:
        self._compile_objects()
        self._settle_conflicts()
        self._resolve_backends()
        self._redo_statuses()
        self._redo_gateway_statuses()
        return self._finish()

    # -- 1. objects ------------------------------------------------------------

    def _dependents(self, dep: tuple) -> set[str]:
        return self.st.dependents.get(dep, set())

    def _affected_by_dependencies(self) -> set[str]:
        """Objects to compile again because something they read changed."""
        st, ch = self.st, self.changes
        out: set[str] = set()
        for kind, keys in ch.items():
            if keys:
                out |= self._dependents((kind, "*"))
        for key in ch.get(SERVICE, ()):
            # Routes keep the backend key a Service port maps to; other changes only move endpoints.
            if service_shape(st.snapshot.of(SERVICE).get(key)) != service_shape(self.snap.of(SERVICE).get(key)):
                out |= self._dependents((SERVICE, key))
        for key in ch.get(SECRET, ()):
            out |= self._dependents((SECRET, key))
            for secret in (st.snapshot.of(SECRET).get(key), self.snap.of(SECRET).get(key)):
                meta = (secret or {}).get("metadata") or {}
                if DEFAULT_AUTH_LABEL in (meta.get("labels") or {}):
                    out |= self._dependents((NAMESPACE_DEFAULTS, meta.get("namespace") or ""))
        for key in ch.get(REFERENCEGRANT, ()):
            # A grant added, narrowed or removed: every object that asked about a
            # reference into its namespace is checked again (revocation is at once).
            out |= self._dependents((REFERENCE_GRANTS, key.partition("/")[0]))
        for key in ch.get(NAMESPACE, ()):
            # A URL host "name.ns" is a Service reference once namespace ns exists (backends.py).
            out |= self._dependents((NAMESPACE, key))
        return out

    def _compile_objects(self) -> None:
        st = self.st
        by_deps = self._affected_by_dependencies()
        # status key -> (kind, key), with the key string of the change (the store's own) where there is one.
        dirty = {sk: tuple(sk.partition(":")[::2]) for sk in by_deps}
        dirty.update((f"{kind}:{key}", (kind, key)) for kind in ROUTED_KINDS for key in self.changes.get(kind, ()))
        for sk in sorted(dirty):
            kind, key = dirty[sk]
            obj = self.snap.of(kind).get(key)
            old = st.entries.get(sk)
            if obj is None:
                if old is not None:
                    self._forget(sk, old)
                continue
            if (
                old is not None
                and sk not in by_deps
                and same_input(old.obj, obj)
                and _origin_of(old.outcome) == (self.compiler.origin(kind, key) if old.outcome is not None else None)
            ):
                st.entries[sk] = old._replace(obj=obj)  # hold the current dict, for identity checks
                continue
            outcome, deps = self.compiler.build(kind, key, obj, sk)
            deps = st.deps_seen.setdefault(deps, deps)
            if old is not None:
                outcome = _keep_if_same(old.outcome, outcome)
                if old.deps is not deps:
                    self._index_deps(sk, old.deps, add=False)
            if old is None or old.deps is not deps:
                self._index_deps(sk, deps, add=True)
            st.entries[sk] = _Entry(obj, deps, outcome)
            old_outcome = old.outcome if old is not None else None
            if outcome is not old_outcome:
                self.touched[sk] = (old_outcome, outcome)
        if len(st.deps_seen) > 2 * len(st.entries) + 64:  # forget dependency sets nobody has any more
            st.deps_seen = {e.deps: e.deps for e in st.entries.values()}

    def _forget(self, sk: str, old: _Entry) -> None:
        del self.st.entries[sk]
        self._index_deps(sk, old.deps, add=False)
        if old.outcome is not None:
            self.touched[sk] = (old.outcome, None)

    def _index_deps(self, sk: str, deps: frozenset, add: bool) -> None:
        dependents = self.st.dependents
        for dep in deps:
            if add:
                dependents.setdefault(dep, set()).add(sk)
            else:
                users = dependents.get(dep)
                if users is not None:
                    users.discard(sk)
                    if not users:
                        del dependents[dep]

    # -- 2. conflicts ----------------------------------------------------------

    def _keys(self, sk: str, cand: Candidate) -> list[list[tuple]]:
        """``match_keys`` of each route of a current candidate (computed once per step)."""
        keys = self.route_keys.get(sk)
        if keys is None:
            keys = self.route_keys[sk] = [match_keys(r) for r in cand.routes]
        return keys

    def _claim(self, key: tuple, sk: str, add: bool) -> None:
        claims = self.st.claims
        holders = _holders(claims.get(key))
        if add:
            if sk not in holders:
                holders += (sk,)
        elif sk in holders:
            holders = tuple(h for h in holders if h != sk)
        if not holders:
            claims.pop(key, None)
        else:
            # Most keys have one claimant: keep it as is, without a tuple around it.
            claims[key] = holders[0] if len(holders) == 1 else holders

    def _candidate(self, sk: str) -> Candidate:
        outcome = self.st.entries[sk].outcome
        assert isinstance(outcome, Candidate)
        return outcome

    def _settle_conflicts(self) -> None:
        """Settle again every candidate whose outcome a touched one can change."""
        st = self.st
        members: set[str] = set()
        pending: list[tuple] = []  # match keys whose claimants must be settled again
        fallbacks_moved = False
        for sk, (old, new) in self.touched.items():
            if isinstance(old, Candidate):
                for keys in map(match_keys, old.routes):
                    for k in keys:
                        self._claim(k, sk, add=False)
                        pending.append(k)
                if old.fallback is not None:
                    st.fallbacks.discard(sk)
                    fallbacks_moved = True
            if isinstance(new, Candidate):
                members.add(sk)
                for keys in self._keys(sk, new):
                    for k in keys:
                        self._claim(k, sk, add=True)
                if new.fallback is not None:
                    st.fallbacks.add(sk)
                    fallbacks_moved = True
        old_fallback = st.fallback
        if fallbacks_moved:
            st.fallback = min(st.fallbacks, key=lambda f: candidate_order(self._candidate(f)), default=None)
            if st.fallback != old_fallback or st.fallback in self.touched or self.full:
                members |= st.fallbacks  # every other one's status names the one in use, and its age
        if not self.full:
            members = self._closure(members, pending)
        self._settle(sorted(members, key=lambda m: candidate_order(self._candidate(m))))
        for sk, (_, new) in self.touched.items():
            if not isinstance(new, Candidate):  # gone, left out with an error, or no longer ours
                self._leave(sk, new if isinstance(new, ObjectStatus) else None)

    def _closure(self, members: set[str], pending: list[tuple]) -> set[str]:
        """``members`` and every candidate connected to them through shared match keys."""
        claims = self.st.claims
        for sk in members:
            for keys in self._keys(sk, self._candidate(sk)):
                pending.extend(keys)
        seen: set[tuple] = set()
        while pending:
            k = pending.pop()
            if k in seen:
                continue
            seen.add(k)
            for sk in _holders(claims.get(k)):
                if sk not in members:
                    members.add(sk)
                    for keys in self._keys(sk, self._candidate(sk)):
                        pending.extend(keys)
        return members

    def _settle(self, members: list[str]) -> None:
        st = self.st
        fallback_owner = self._candidate(st.fallback) if st.fallback is not None else None
        claimed: dict[tuple, tuple[Candidate, str]] = {}
        for sk in members:
            cand = self._candidate(sk)
            kept, info, error = settle(cand, self._keys(sk, cand), claimed, fallback_owner)
            self._set_kept(sk, kept)
            if error is not None:
                self._set_routed(sk, None)
                self._set_status(sk, error)
            else:
                self._set_routed(sk, info)

    def _leave(self, sk: str, status: ObjectStatus | None) -> None:
        self._set_kept(sk, ())
        self._set_routed(sk, None)
        self._set_status(sk, status)

    def _set_kept(self, sk: str, kept: tuple[Route, ...]) -> None:
        old = self.st.kept.get(sk, ())
        if old is kept:
            return
        if self.full:  # the table is built whole from st.kept: no need to track what moved
            if kept:
                self.st.kept[sk] = kept
            return
        old_ids = {id(r) for r in old}
        new_ids = {id(r) for r in kept}
        for r in old:
            if id(r) not in new_ids:
                if self.added.pop(id(r), None) is None:
                    self.removed[id(r)] = r
        for r in kept:
            if id(r) not in old_ids:
                if self.removed.pop(id(r), None) is None:
                    self.added[id(r)] = r
        if kept:
            self.st.kept[sk] = kept
        else:
            self.st.kept.pop(sk, None)

    def _set_routed(self, sk: str, info: Routed | None) -> None:
        old = self.routed_changes[sk] if sk in self.routed_changes else self.st.routed.get(sk)
        if info is not None and old is not None and info == old:
            return
        if info is None and old is None:
            return
        self.routed_changes[sk] = info
        if info is not None:
            self.status_dirty.add(sk)

    def _set_status(self, sk: str, status: ObjectStatus | None) -> None:
        old = self.st.statuses.get(sk)
        if status == old:
            self.status_changes.pop(sk, None)
        else:
            self.status_changes[sk] = status

    # -- 3. backends -----------------------------------------------------------

    def _resolve_backends(self) -> None:
        st = self.st
        moved_services = set(self.changes.get(SERVICE, ()))
        moved_services |= self._update_slice_index()
        to_resolve: set[str] = set()
        for sk, info in self.routed_changes.items():
            before, after = _refs(st.routed.get(sk)), _refs(info)
            for key in before - after:
                self._drop_user(key, sk)
            for key in after - before:
                users = st.users.get(key)
                if users is None:
                    users = st.users[key] = set()
                    to_resolve.add(key)
                    self._index_backend(key, add=True)
                users.add(sk)
        if self.changes.get(NAMESPACE):
            # An ExternalName aliasing "name.ns" is refused once namespace ns exists
            # (backends.py): namespaces come and go rarely, so check every one in use.
            services = self.snap.of(SERVICE)
            moved_services |= {
                svc for svc in st.keys_by_service
                if ((services.get(svc) or {}).get("spec") or {}).get("type") == "ExternalName"
            }
        for svc in moved_services:
            to_resolve |= st.keys_by_service.get(svc, set())
        resolved = resolve_all(self.snap, to_resolve, self.compiler.services)
        for key, value in resolved.items():
            if st.resolved.get(key) != value:
                st.resolved[key] = value
                self.endpoint_changes[key] = value[0]
                self.status_dirty |= st.users[key]

    def _drop_user(self, key: str, sk: str) -> None:
        st = self.st
        users = st.users[key]
        users.discard(sk)
        if not users:
            del st.users[key]
            del st.resolved[key]
            self._index_backend(key, add=False)
            self.endpoint_changes[key] = None

    def _index_backend(self, key: str, add: bool) -> None:
        if not is_service_key(key):
            return  # a URL, or a refused reference, depends on no Service
        namespace, name, _ = parse_service_key(key)
        svc = f"{namespace}/{name}"
        by_service = self.st.keys_by_service
        if add:
            by_service.setdefault(svc, set()).add(key)
        else:
            keys = by_service[svc]
            keys.discard(key)
            if not keys:
                del by_service[svc]

    def _update_slice_index(self) -> set[str]:
        """Keep the Service -> slices index current; the Services whose slices changed."""
        index = self.st.slices
        before, after = self.st.snapshot.of(ENDPOINTSLICE), self.snap.of(ENDPOINTSLICE)
        moved: set[str] = set()
        for key in self.changes.get(ENDPOINTSLICE, ()):
            old, new = slice_service(before.get(key)), slice_service(after.get(key))
            if old is not None:
                moved.add(old)
                keys = index.get(old, [])
                at = bisect.bisect_left(keys, key)
                if at < len(keys) and keys[at] == key:
                    del keys[at]
                if not keys:
                    index.pop(old, None)
            if new is not None:
                moved.add(new)
                keys = index.setdefault(new, [])
                at = bisect.bisect_left(keys, key)
                if at == len(keys) or keys[at] != key:
                    keys.insert(at, key)
        return moved

    # -- 4. statuses and the table ---------------------------------------------

    def _redo_statuses(self) -> None:
        st = self.st
        for sk in self.status_dirty:
            info = self.routed_changes[sk] if sk in self.routed_changes else st.routed.get(sk)
            if info is not None:
                self._set_status(sk, routed_status(info, st.resolved))

    def _redo_gateway_statuses(self) -> None:
        """Every Gateway's status again when something it shows may have moved: few
        objects, and the attached-route counts are kept up to date from the route
        statuses that changed (never recounted over every route)."""
        st = self.st
        routes_moved = False
        for sk, new in self.status_changes.items():
            if not sk.startswith(ROUTE_PREFIXES):
                continue
            old = st.statuses.get(sk)
            before = attached_listeners(old) if old is not None else frozenset()
            after = attached_listeners(new) if new is not None else frozenset()
            if before != after:
                routes_moved = True
                st.attached.subtract(before - after)
                st.attached.update(after - before)
        refs_moved = any(self.changes.get(k) for k in GATEWAY_REFERENCE_KINDS)
        if not (self.full or routes_moved or refs_moved or self.changes.get(GATEWAY)):
            return
        if refs_moved:
            st.gateway_bases.clear()  # a Secret, grant or class may change any Gateway
        st.attached = +st.attached  # drop the listeners no route attaches to any more
        fresh = gateway_statuses(self.snap, st.options, st.attached, st.gateway_bases)
        for sk in st.gateway_keys - fresh.keys():
            self._set_status(sk, None)
        for sk, status in fresh.items():
            self._set_status(sk, status)
        st.gateway_keys = set(fresh)

    def _finish(self) -> CompileResult:
        st = self.st
        base = st.statuses
        if self.full:
            statuses = dict(sorted((k, v) for k, v in self.status_changes.items() if v is not None))
            routed = {k: v for k, v in self.routed_changes.items() if v is not None}
        else:
            statuses = _patched(st.statuses, self.status_changes)
            routed = _patched(st.routed, self.routed_changes)
        table = self._table()
        st.snapshot, st.statuses, st.routed, st.table = self.snap, statuses, routed, table
        return CompileResult(
            table=table,
            statuses=statuses,
            backend_keys=table.endpoints.keys(),
            routed=routed,
            changed_statuses=None if self.full else self.status_changes,
            status_base=None if self.full else base,
            incremental=not self.full,
        )

    def _table(self) -> RouteTable:
        st = self.st
        fallback = self._candidate(st.fallback).fallback if st.fallback is not None else None
        if self.full or st.table is None:
            endpoints = {k: es for k, (es, _) in st.resolved.items()}
            routes = [r for kept in st.kept.values() for r in kept]
            return RouteTable(routes, endpoints=endpoints, fallback=fallback, generation=self.generation)
        endpoints = _patched(st.table.endpoints, self.endpoint_changes)
        return st.table.updated(
            list(self.removed.values()),
            list(self.added.values()),
            endpoints=endpoints,
            fallback=fallback,
            generation=self.generation,
        )


def _patched(base: Mapping, changes: Mapping) -> Mapping:
    """A copy of ``base`` with ``changes`` applied (None deletes); ``base`` itself
    when there are none (what is handed out is never changed, so it can be shared)."""
    if not changes:
        return base
    # dict.copy() clones the hash table even after deletions; dict(base) would
    # insert key by key once a deletion has left a hole (several times slower).
    out = base.copy() if isinstance(base, dict) else dict(base)
    for k, v in changes.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = v
    return out
