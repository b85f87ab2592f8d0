"""What a compile hands out: the table, a status per object, what refresh needs.

Neighbours: made by the full compile (full.py) and the incremental driver
(incremental.py); read by the publisher (controller/publish.py), the offline
report (crdgate/report.py) and the certificate compiler (controller/certs.py).
``refresh_endpoints`` redoes only the endpoints and readiness of a result, for
EndpointSlice churn, with no compiler state at all.
"""

from __future__ import annotations

from collections.abc import Mapping, Set as AbstractSet
from dataclasses import dataclass, field

from controller.compile.backends import resolve_all
from controller.compile.status import ObjectStatus, Routed, routed_status
from controller.store import Snapshot
from gateway.routing import RouteTable


@dataclass(frozen=True)
class CompileResult:
    table: RouteTable
    statuses: Mapping[str, ObjectStatus]  # "Kind:ns/name" -> status
    backend_keys: AbstractSet[str]  # the EndpointSet keys the table uses
    # Per routed object, what refresh_endpoints needs to redo its status.
    routed: Mapping[str, Routed] = field(default_factory=dict, repr=False, compare=False)
    # What changed from ``status_base`` (the statuses of the compile this one
    # built on) to ``statuses``: new or changed statuses, None for objects gone.
    # None when not known: compare everything.
    changed_statuses: Mapping[str, ObjectStatus | None] | None = field(default=None, repr=False, compare=False)
    status_base: Mapping[str, ObjectStatus] | None = field(default=None, repr=False, compare=False)
    # Built on the previous compile, redoing only what the changes touched
    # (controller/compile/incremental.py); False for a compile from scratch.
    incremental: bool = field(default=False, repr=False, compare=False)


def refresh_endpoints(previous: CompileResult, snapshot: Snapshot, generation: int) -> CompileResult:
    """Same routes, endpoints and readiness statuses redone: for EndpointSlice-only changes.

    Stateless (every backend is resolved again); the publisher's ``Compiler``
    does the same for only the backends whose Service or slices changed."""
    resolved = resolve_all(snapshot, previous.backend_keys)
    statuses = dict(previous.statuses)
    for key, info in previous.routed.items():
        statuses[key] = routed_status(info, resolved)
    table = previous.table.with_endpoints({k: es for k, (es, _) in resolved.items()}, generation)
    return CompileResult(table=table, statuses=statuses, backend_keys=table.endpoints.keys(), routed=previous.routed)
