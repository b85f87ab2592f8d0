"""Gateway API status bodies: GatewayClass, Gateway and HTTPRoute ``status`` as the API wants them.

Neighbours: the compile (controller/compile/listeners.py, gateways.py) says
what each object is told, as an ``ObjectStatus`` with ``listeners`` (a
Gateway) or ``parents`` (an HTTPRoute); the status writer
(controller/status.py) calls ``desired_status`` with what the object shows now
and merge-patches the result onto the ``status`` subresource when it differs.

- GatewayClass: ``conditions`` (Accepted).
- Gateway: ``conditions`` (Accepted, Programmed), ``listeners[]`` (name,
  supportedKinds, attachedRoutes, conditions) and ``addresses`` (the
  gateway's own: ``--publish-address`` / ``--publish-service``, as for Ingress).
- HTTPRoute: ``parents[]``, one entry per parentRef naming one of our Gateways,
  with our ``controllerName`` and conditions Accepted and ResolvedRefs. A merge
  patch replaces the whole list, so the entries of other controllers are read
  from the object and written back untouched; ours that no longer apply go,
  all of them once the route names none of our Gateways (``without_controller``).

Every condition carries ``observedGeneration``, and ``lastTransitionTime``
from ``stamp`` (the writer keeps it while the condition's status holds).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Mapping, Sequence

from controller.store import GATEWAY, GATEWAYCLASS, GRPCROUTE, HTTPROUTE

KINDS = frozenset({GATEWAYCLASS, GATEWAY, HTTPROUTE, GRPCROUTE})
ROUTE_GROUP = "gateway.networking.k8s.io"

# (previous conditions, desired conditions) -> desired with lastTransitionTime
Stamp = Callable[[Iterable[Mapping] | None, list[dict]], list[dict]]


def _conditions(conds, generation: int | None) -> list[dict]:
    return [
        {"type": c.type, "status": c.status, "reason": c.reason, "message": c.message[:32768],
         "observedGeneration": generation}
        for c in conds
    ]


def gateway_addresses(addresses: Sequence[str]) -> list[dict]:
    """``status.addresses`` entries: IPAddress for addresses, Hostname otherwise."""
    out = []
    for addr in addresses:
        try:
            ipaddress.ip_address(addr)
            out.append({"type": "IPAddress", "value": addr})
        except ValueError:
            out.append({"type": "Hostname", "value": addr})
    return out


def desired_status(status, have: Mapping, stamp: Stamp, controller_name: str, addresses: Sequence[str] | None) -> dict:
    """The ``status`` fields to write for ``status`` (an ``ObjectStatus``), given the
    object's current ``have``; ``addresses`` None: not known, left as they are."""
    gen = status.generation
    if status.kind in (HTTPROUTE, GRPCROUTE):
        return {"parents": _parents(status, have.get("parents"), stamp, controller_name)}
    out = {"conditions": stamp(have.get("conditions"), _conditions(status.conditions, gen))}
    if status.kind == GATEWAY:
        previous = {ls.get("name"): ls for ls in have.get("listeners") or () if isinstance(ls, Mapping)}
        out["listeners"] = [
            {
                "name": ls.name,
                "supportedKinds": [{"group": ROUTE_GROUP, "kind": k} for k in ls.supported_kinds],
                "attachedRoutes": ls.attached_routes,
                "conditions": stamp((previous.get(ls.name) or {}).get("conditions"), _conditions(ls.conditions, gen)),
            }
            for ls in status.listeners
        ]
        if addresses is not None:
            out["addresses"] = gateway_addresses(addresses)
    return out


def _parent_ref(p) -> dict:
    return dict(p.ref)


def _parents(status, current, stamp: Stamp, controller_name: str) -> list[dict]:
    current = [e for e in current or () if isinstance(e, Mapping)]
    others = [dict(e) for e in without_controller(current, controller_name)]
    mine = {_ref_key(e.get("parentRef")): e for e in current if e.get("controllerName") == controller_name}
    refs = next((c for c in status.conditions if c.type == "ResolvedRefs"), None)
    out = others
    for p in status.parents:
        ref = _parent_ref(p)
        accepted = {"type": "Accepted", "status": "True" if p.accepted else "False", "reason": p.reason,
                    "message": p.message, "observedGeneration": status.generation}
        conds = [accepted]
        if refs is not None:
            conds.append({"type": "ResolvedRefs", "status": refs.status, "reason": refs.reason,
                          "message": refs.message, "observedGeneration": status.generation})
        previous = mine.get(_ref_key(ref))
        out.append({
            "parentRef": ref,
            "controllerName": controller_name,
            "conditions": stamp(previous.get("conditions") if previous else None, conds),
        })
    return out


def without_controller(parents, controller_name: str) -> list[dict]:
    """``status.parents`` without the entries of ``controller_name``."""
    return [p for p in parents or () if isinstance(p, Mapping) and p.get("controllerName") != controller_name]


def _ref_key(ref) -> tuple:
    if not isinstance(ref, Mapping):
        return ()
    return tuple(sorted((k, v) for k, v in ref.items() if isinstance(v, (str, int))))
