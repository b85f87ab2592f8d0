"""Statuses and reasons: what each object this gateway owns is told.

Neighbours: the per-object steps (controller/compile/apiendpoint.py,
ingress.py) and conflict settling (conflicts.py) end an object left out with
``error_status``; an object in the table gets ``routed_status`` once its
backends are resolved (backends.py). The status writer
(controller/status.py) turns ``ObjectStatus`` into the API's ``status``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple

from controller.compile.backends import REFUSED_PREFIX
from gateway.routing import ENDPOINTS_NONE_READY, ENDPOINTS_NOT_FOUND, EndpointSet

# Object states and condition reasons (the README's status reference).
READY, PENDING, ERROR = "Ready", "Pending", "Error"
INVALID_SPEC = "InvalidSpec"
CONFLICTED = "Conflicted"
BACKEND_NOT_FOUND = "BackendNotFound"
NO_READY_ENDPOINTS = "NoReadyEndpoints"
SECRET_NOT_FOUND = "SecretNotFound"
AUTH_NOT_CONFIGURED = "AuthNotConfigured"
# REF_NOT_PERMITTED ("RefNotPermitted", controller/refgrant.py): no ReferenceGrant permits a reference.
# Reasons that leave the object out of the table, by the condition they belong to.
_ACCEPTED_REASONS = frozenset({INVALID_SPEC, CONFLICTED})

@dataclass(frozen=True, slots=True)
class Condition:
    type: str  # Accepted | ResolvedRefs | Ready
    status: str  # "True" | "False" | "Unknown"
    reason: str
    message: str


@dataclass(frozen=True, slots=True)
class ObjectStatus:
    kind: str
    namespace: str
    name: str
    state: str  # Ready | Pending | Error
    reason: str
    message: str
    generation: int | None
    conditions: tuple[Condition, ...]
    origin: str | None = None  # where the object came from (a file path), for messages
    # Gateway API: an HTTPRoute's outcome per parentRef of ours (gateways.py ``ParentOutcome``),
    # a Gateway's listeners (listeners.py ``ListenerStatus``); shaped for the API by
    # controller/gatewaystatus.py.
    parents: tuple = ()
    listeners: tuple = ()

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.namespace}/{self.name}"

    def to_status_dict(self) -> dict:
        """The ``status`` body for the API (the writer adds lastTransitionTime)."""
        return {
            "state": self.state,
            "message": self.message,
            "observedGeneration": self.generation,
            "conditions": [
                {
                    "type": c.type,
                    "status": c.status,
                    "reason": c.reason,
                    "message": c.message,
                    "observedGeneration": self.generation,
                }
                for c in self.conditions
            ],
        }


class Routed(NamedTuple):
    """What an object's final status needs once its backends are resolved.

    A NamedTuple, not a frozen dataclass: one is made per object per compile,
    and this is several times cheaper to build."""

    kind: str
    namespace: str
    name: str
    generation: int | None
    origin: str | None
    backends: tuple[str, ...]  # EndpointSet keys carrying traffic
    extra_refs: tuple[str, ...]  # keys that must exist but carry no traffic (mirror)
    problems: tuple[tuple[str, str], ...] = ()  # (reason, message): parts left out
    routes: int = 1
    # (reason, message): a reference that failed but left the route in, failing
    # closed (auth whose Secret is missing answers 503).
    ref_errors: tuple[tuple[str, str], ...] = ()
    parents: tuple = ()  # HTTPRoute: its ParentOutcomes (gateways.py)



@dataclass(frozen=True)
class RefError:
    """Why a reference could not be used: a status reason and a message."""

    reason: str
    message: str


# -- statuses ------------------------------------------------------------------


@lru_cache(maxsize=4096)
def conditions(accepted: tuple[str, str, str], refs: tuple[str, str, str], ready: tuple[str, str, str]):
    return (
        Condition("Accepted", *accepted),
        Condition("ResolvedRefs", *refs),
        Condition("Ready", *ready),
    )


def error_status(kind, namespace, name, generation, origin, reason, message) -> ObjectStatus:
    """An object left out of the table."""
    not_evaluated = ("Unknown", "NotEvaluated", "not checked: the object was not accepted")
    if reason in _ACCEPTED_REASONS:
        conds = conditions(("False", reason, message), not_evaluated, ("False", reason, message))
    else:
        conds = conditions(("True", "Accepted", "spec is valid"), ("False", reason, message), ("False", reason, message))
    return ObjectStatus(kind, namespace, name, ERROR, reason, message, generation, conds, origin)


def routed_status(r: Routed, resolved: Mapping[str, tuple[EndpointSet, str]]) -> ObjectStatus:
    """The status of an object in the table, once its backends are resolved."""
    missing = [
        resolved[k][1]
        for k in (*r.backends, *r.extra_refs)
        if resolved[k][0].state == ENDPOINTS_NOT_FOUND and not k.startswith(REFUSED_PREFIX)
    ]
    unready = [resolved[k][1] for k in r.backends if resolved[k][0].state == ENDPOINTS_NONE_READY]
    if r.problems:
        accepted = ("False", r.problems[0][0], "; ".join(msg for _, msg in r.problems))
    else:
        accepted = ("True", "Accepted", "spec is valid")
    if r.ref_errors:
        # The route is in the table but fails closed (503) until the reference resolves.
        reason = r.ref_errors[0][0]
        msg = "; ".join(msg for _, msg in r.ref_errors + tuple((BACKEND_NOT_FOUND, x) for x in missing))
        refs = ready = ("False", reason, msg)
        state = ERROR
    elif missing:
        msg = "; ".join(missing)
        refs = ready = ("False", BACKEND_NOT_FOUND, msg)
        state, reason = ERROR, BACKEND_NOT_FOUND
    elif unready and len(unready) == len(r.backends):
        msg = "; ".join(unready)
        refs = ("True", "ResolvedRefs", "all references resolved")
        ready = ("False", NO_READY_ENDPOINTS, msg)
        state, reason = PENDING, NO_READY_ENDPOINTS
    else:
        refs = ("True", "ResolvedRefs", "all references resolved")
        msg = "routed" if r.routes == 1 else f"{r.routes} routes"
        if unready:
            msg += "; " + "; ".join(unready)
        ready = ("True", "Ready", msg)
        state, reason = READY, "Ready"
    if r.problems:
        # Parts of the object are left out: the rest routes, but it needs attention.
        state, reason = ERROR, r.problems[0][0]
        msg = f"{accepted[2]}; other parts: {msg}"
    conds = conditions(accepted, refs, ready)
    return ObjectStatus(r.kind, r.namespace, r.name, state, reason, msg, r.generation, conds, r.origin, r.parents)


