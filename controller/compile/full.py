"""The full compile: a store snapshot -> a RouteTable and one status per object (pure).

Every object is compiled (objects.py), every candidate settled in
``candidate_order`` (conflicts.py), every backend resolved (backends.py), and
the table built whole; then the statuses of our GatewayClasses and Gateways
(listeners.py), which count the HTTPRoutes attached. It keeps nothing between calls: the incremental driver
(incremental.py) shares these steps but not this function, and
tests/test_incremental_equivalence.py checks that both give the same result.
"""

from __future__ import annotations

from controller.compile.backends import resolve_all
from controller.compile.conflicts import candidate_order, match_keys, settle
from controller.compile.context import Candidate, gc_paused
from controller.compile.listeners import count_attached, gateway_statuses
from controller.compile.objects import ObjectCompiler
from controller.compile.options import CompileOptions
from controller.compile.result import CompileResult
from controller.compile.status import ObjectStatus, Routed, routed_status
from controller.store import APIENDPOINT, GRPCROUTE, HTTPROUTE, INGRESS, Snapshot
from gateway.routing import Route, RouteTable

ROUTED_KINDS = (APIENDPOINT, INGRESS, HTTPROUTE, GRPCROUTE)


def compile_snapshot(snapshot: Snapshot, options: CompileOptions = CompileOptions(), generation: int = 0) -> CompileResult:
    """The routing table and a status for every object this gateway owns, from scratch."""
    with gc_paused():
        return _compile(snapshot, options, generation)


def _compile(snapshot: Snapshot, options: CompileOptions, generation: int) -> CompileResult:
    objects = ObjectCompiler(snapshot, options)
    statuses: dict[str, ObjectStatus] = {}
    candidates: list[Candidate] = []
    for status_key, kind, key in sorted((f"{k}:{key}", k, key) for k in ROUTED_KINDS for key in snapshot.of(k)):
        outcome, _ = objects.build(kind, key, snapshot.of(kind)[key], status_key)
        if isinstance(outcome, Candidate):
            candidates.append(outcome)
        elif outcome is not None:
            statuses[status_key] = outcome

    candidates.sort(key=candidate_order)
    fallback_owner = next((c for c in candidates if c.fallback is not None), None)
    claimed: dict[tuple, tuple[Candidate, str]] = {}
    routed: dict[str, Routed] = {}
    routes: list[Route] = []
    for cand in candidates:
        kept, info, error = settle(cand, [match_keys(r) for r in cand.routes], claimed, fallback_owner)
        routes.extend(kept)
        if error is not None:
            statuses[cand.status_key] = error
        else:
            assert info is not None
            routed[cand.status_key] = info

    keys = {k for info in routed.values() for k in (*info.backends, *info.extra_refs)}
    resolved = resolve_all(snapshot, keys, objects.services)
    for status_key, info in routed.items():
        statuses[status_key] = routed_status(info, resolved)
    statuses.update(gateway_statuses(snapshot, options, count_attached(statuses.values())))
    table = RouteTable(
        routes,
        endpoints={k: es for k, (es, _) in resolved.items()},
        fallback=fallback_owner.fallback if fallback_owner is not None else None,
        generation=generation,
    )
    return CompileResult(
        table=table,
        statuses=dict(sorted(statuses.items())),
        backend_keys=table.endpoints.keys(),
        routed=routed,
    )
