"""Conflict settling: two objects claiming exactly the same match.

The older (creationTimestamp, then namespace/name) keeps it; the other is
``Conflicted``, naming the winner. An APIEndpoint is all or nothing; an
Ingress loses only its conflicting paths, and only the oldest defaultBackend
is used. Neighbours: candidates come from objects.py; the full compile
(full.py) settles every candidate in ``candidate_order``, the incremental
driver (incremental.py) only those a change can reach, with the same ``settle``.
"""

from __future__ import annotations

from controller.compile.context import Candidate
from controller.compile.status import CONFLICTED, ObjectStatus, Routed, error_status
from controller.store import GRPCROUTE, HTTPROUTE
from gateway.routing import PATH_PREFIX, Route



def match_keys(r: Route) -> list[tuple]:
    """What a route claims, once per host: two routes with a key in common claim
    exactly the same match, and only the older keeps it.

    An HTTPRoute's (or GRPCRoute's) routes claim nothing: Gateway API has no conflicts between
    routes, an identical match goes to the oldest by the table's precedence
    (gateway/routing.py) and the others stay Accepted."""
    if r.kind == HTTPROUTE or r.kind == GRPCROUTE:
        return []
    path = r.prefix_key if r.path_type == PATH_PREFIX else r.path
    # () rather than an empty frozenset: one is kept per route in the compiler's index.
    headers = frozenset((h.name, h.value, h.regex is not None) for h in r.headers) if r.headers else ()
    query = frozenset((q.name, q.value, q.regex is not None) for q in r.query) if r.query else ()
    return [
        (host, r.wildcard_single_label, r.path_type, path, r.methods, headers, query) for host in (r.hosts or ("",))
    ]


def candidate_order(c: Candidate) -> tuple:
    """The order in which candidates claim matches: the oldest first."""
    return (c.created, c.owner, c.status_key)


def _winner_text(winner: Candidate, winner_rule: str, loser: Candidate) -> str:
    if winner is loser:
        return f"{winner_rule} of the same object"
    age = "older" if winner.created < loser.created else "same age, first by namespace/name"
    return f"{winner.owner} ({age})"


def settle(
    cand: Candidate,
    route_keys: list[list[tuple]],
    claimed: dict[tuple, tuple[Candidate, str]],
    fallback_owner: Candidate | None,
) -> tuple[tuple[Route, ...], Routed | None, ObjectStatus | None]:
    """Settle one candidate's conflicts, after every candidate before it in ``candidate_order``.

    ``route_keys``: ``match_keys`` of each of its routes; ``claimed``: the keys
    taken so far, with who took them (updated here); ``fallback_owner``: the
    oldest candidate with a defaultBackend, whose defaultBackend is the one in use.

    Returns the routes it keeps in the table (its defaultBackend aside) and its
    routed info, or ``((), None, error status)`` when it is left out entirely.
    An APIEndpoint is all or nothing; an Ingress loses only its conflicting
    paths (a path can lose to an earlier path of the same Ingress).
    """
    problems = list(cand.routed.problems)
    kept: list[Route] = []
    kept_keys: list[tuple] = []
    for r, keys in zip(cand.routes, route_keys):
        hit = next((claimed[k] for k in keys if k in claimed), None)
        if hit is None:
            kept.append(r)
            if cand.whole:
                kept_keys.extend(keys)
            else:
                claimed.update((k, (cand, r.rule)) for k in keys)
            continue
        winner, winner_rule = hit
        where = "" if cand.whole else f"spec.{r.rule}: "
        problems.append((CONFLICTED, f"{where}conflicts with {_winner_text(winner, winner_rule, cand)}"))
    r0 = cand.routed
    if cand.whole:
        if problems:
            return (), None, error_status(
                r0.kind, r0.namespace, r0.name, r0.generation, r0.origin, CONFLICTED, problems[0][1]
            )
        claimed.update((k, (cand, "")) for k in kept_keys)
        return cand.routes, r0, None
    uses_fallback = False
    if cand.fallback is not None:
        if fallback_owner is cand:
            uses_fallback = True
        else:
            assert fallback_owner is not None
            problems.append(
                (CONFLICTED, f"spec.defaultBackend: conflicts with {_winner_text(fallback_owner, 'defaultBackend', cand)}")
            )
    used = kept + [cand.fallback] if uses_fallback else kept
    if not used:
        return (), None, error_status(
            r0.kind, r0.namespace, r0.name, r0.generation, r0.origin, problems[0][0], "; ".join(p[1] for p in problems)
        )
    keys = tuple(dict.fromkeys(b.key for r in used for b in r.backends))
    info = r0._replace(backends=keys, problems=tuple(problems), routes=len(used))
    return tuple(kept), info, None

