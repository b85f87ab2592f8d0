"""GatewayClass and Gateway statuses: what crdgate tells the Gateways of its classes.

Neighbours: gateways.py says which classes and Gateways are ours and where
HTTPRoutes attach; this module turns each of our Gateways into an
``ObjectStatus`` whose ``listeners`` carry Gateway API's per-listener status
(``supportedKinds``, ``attachedRoutes``, conditions ``Accepted``,
``Programmed``, ``ResolvedRefs``, ``Conflicted``), and each of our
GatewayClasses into one with ``Accepted``. Both compiles (full.py,
incremental.py) call ``gateway_statuses`` with the attached-route counts they
keep; controller/gatewaystatus.py shapes the result for the API.

Pure, like the rest of the package. A Gateway's status depends on its own
spec, its class, the Secrets its HTTPS listeners name (and the ReferenceGrants
that permit them) and the routes attached: few objects, so every Gateway is
redone whenever one of those kinds changes.

What a listener's certificate check covers here: the reference's kind, the
ReferenceGrant for another namespace, and a ``kubernetes.io/tls`` Secret
with ``tls.crt`` and ``tls.key``. Whether the PEM inside parses and matches
is controller/certs.py's check (it holds the parsed bundles); a Secret that
fails it still serves the previous certificate and is reported there.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from controller.compile.gateways import ROUTE_PROTOCOLS, conflicted_listeners
from controller.compile.options import CompileOptions
from controller.compile.status import ERROR, READY, Condition, ObjectStatus
from controller.gatewayapi.common import GROUP
from controller.gatewayapi.gateway import Gateway, Listener
from controller.gatewayapi.objects import InvalidObject as InvalidGatewayAPIObject, parse
from controller.refgrant import CORE_GROUP, REF_NOT_PERMITTED, ReferenceGrants, Referrer, grants_of
from controller.store import GATEWAY, GATEWAYCLASS, GRPCROUTE, HTTPROUTE, REFERENCEGRANT, SECRET, Snapshot

# Listener and Gateway reasons (Gateway API).
ACCEPTED = "Accepted"
PROGRAMMED = "Programmed"
RESOLVED_REFS = "ResolvedRefs"
INVALID = "Invalid"
UNSUPPORTED_PROTOCOL = "UnsupportedProtocol"
INVALID_CERTIFICATE_REF = "InvalidCertificateRef"
INVALID_ROUTE_KINDS = "InvalidRouteKinds"
PROTOCOL_CONFLICT = "ProtocolConflict"
NO_CONFLICTS = "NoConflicts"
LISTENERS_NOT_VALID = "ListenersNotValid"

TLS_SECRET_TYPE = "kubernetes.io/tls"
# The kinds crdgate's HTTP and HTTPS listeners carry.
SUPPORTED_KINDS = (HTTPROUTE, GRPCROUTE)
ROUTE_KINDS = frozenset(SUPPORTED_KINDS)
# Besides its own object and the routes attached, what a Gateway's status reads.
GATEWAY_REFERENCE_KINDS = frozenset({GATEWAYCLASS, SECRET, REFERENCEGRANT})


@dataclass(frozen=True, slots=True)
class ListenerStatus:
    name: str
    supported_kinds: tuple[str, ...]  # route kinds of group gateway.networking.k8s.io
    attached_routes: int
    conditions: tuple[Condition, ...]
    # What the listener asks for, for the offline reports (crdgate/report.py).
    protocol: str = ""
    port: int = 0
    hostname: str | None = None

    @property
    def ok(self) -> bool:
        return all(c.status == ("True" if c.type != "Conflicted" else "False") for c in self.conditions)


def attached_listeners(status: ObjectStatus) -> frozenset[str]:
    """The listeners ("ns/gateway/listener") a route is accepted on (counted once each)."""
    return frozenset(ls for p in status.parents if p.accepted for ls in p.listeners)


def count_attached(statuses: Iterable[ObjectStatus]) -> Counter:
    counts: Counter = Counter()
    for st in statuses:
        if st.kind in ROUTE_KINDS and st.parents:
            counts.update(attached_listeners(st))
    return counts


def our_class_names(snapshot: Snapshot, options: CompileOptions) -> set[str]:
    names = set()
    for key, raw in snapshot.of(GATEWAYCLASS).items():
        spec = raw.get("spec") if isinstance(raw, Mapping) else None
        if isinstance(spec, Mapping) and spec.get("controllerName") == options.gateway_controller_name:
            names.add(key.rpartition("/")[2])
    return names


def gateway_statuses(
    snapshot: Snapshot, options: CompileOptions, attached: Mapping[str, int], bases: dict | None = None
) -> dict[str, ObjectStatus]:
    """Status key -> status of each of our GatewayClasses and of every Gateway of them.

    ``bases``: what a previous call worked out per Gateway, kept by the caller
    (incremental.py) and valid while the GatewayClasses, Secrets and
    ReferenceGrants are unchanged (the caller empties it when they change): a
    Gateway whose object is the same is not parsed again, only its counts are
    redone. Parsing costs about a millisecond per Gateway; the counts move with
    every route that comes or goes."""
    out: dict[str, ObjectStatus] = {}
    bases = {} if bases is None else bases
    classes = our_class_names(snapshot, options)
    for name in sorted(classes):
        raw = snapshot.of(GATEWAYCLASS)[f"/{name}"]
        gen = _generation(raw)
        msg = f"crdgate ({options.gateway_controller_name}) serves this class"
        accepted = Condition(ACCEPTED, "True", ACCEPTED, msg)
        origin = _origin(snapshot, GATEWAYCLASS, f"/{name}")
        out[f"{GATEWAYCLASS}:/{name}"] = ObjectStatus(
            GATEWAYCLASS, "", name, READY, ACCEPTED, msg, gen, (accepted,), origin)
    grants: list[ReferenceGrants] = []

    def lazy_grants() -> ReferenceGrants:
        if not grants:
            grants.append(grants_of(snapshot))
        return grants[0]

    seen = set()
    for key, raw in snapshot.of(GATEWAY).items():
        spec = raw.get("spec") if isinstance(raw, Mapping) else None
        if not isinstance(spec, Mapping) or spec.get("gatewayClassName") not in classes:
            continue
        seen.add(key)
        cached = bases.get(key)
        origin = _origin(snapshot, GATEWAY, key)
        if cached is None or cached[0] is not raw or cached[1].origin != origin:
            cached = bases[key] = (raw, _gateway(snapshot, options, key, raw, lazy_grants))
        out[f"{GATEWAY}:{key}"] = _with_counts(cached[1], key, attached)
    for key in bases.keys() - seen:
        del bases[key]
    return out


def _with_counts(base: ObjectStatus, key: str, attached: Mapping[str, int]) -> ObjectStatus:
    if not base.listeners:
        return base
    listeners = tuple(
        ls if ls.attached_routes == attached.get(f"{key}/{ls.name}", 0)
        else replace(ls, attached_routes=attached.get(f"{key}/{ls.name}", 0))
        for ls in base.listeners
    )
    return replace(base, listeners=listeners)


def _generation(raw: Mapping) -> int | None:
    gen = (raw.get("metadata") or {}).get("generation")
    return gen if isinstance(gen, int) else None


def _origin(snapshot: Snapshot, kind: str, key: str) -> str | None:
    return snapshot.origins.get(f"{kind}:{key}")


def _gateway(snapshot, options, key, raw, grants) -> ObjectStatus:
    """A Gateway's status, every listener counted with 0 attached routes (see ``_with_counts``)."""
    namespace, _, name = key.partition("/")
    gen = _generation(raw)
    origin = _origin(snapshot, GATEWAY, key)
    try:
        gw = parse(GATEWAY, raw)
    except InvalidGatewayAPIObject as e:
        msg = str(e)
        conds = (Condition(ACCEPTED, "False", INVALID, msg), Condition(PROGRAMMED, "False", INVALID, msg))
        return ObjectStatus(GATEWAY, namespace, name, ERROR, INVALID, msg, gen, conds, origin)
    assert isinstance(gw, Gateway)
    conflicts = conflicted_listeners(gw)
    listeners = tuple(
        _listener(snapshot, options, namespace, ls, ls.name in conflicts, 0, grants)
        for ls in gw.spec.listeners
    )
    bad = [ls for ls in listeners if not ls.ok]
    programmed = [ls for ls in listeners if _cond(ls, PROGRAMMED).status == "True"]
    if not bad:
        accepted = Condition(ACCEPTED, "True", ACCEPTED, "every listener is valid")
    else:
        # The Gateway itself stands: an invalid listener costs only that listener.
        names = ", ".join(ls.name for ls in bad)
        accepted = Condition(ACCEPTED, "True", LISTENERS_NOT_VALID, f"listener(s) {names} not valid")
    if programmed:
        prog = Condition(PROGRAMMED, "True", PROGRAMMED,
                         f"{len(programmed)} listener(s) served on crdgate's HTTP/HTTPS ports")
    else:
        prog = Condition(PROGRAMMED, "False", INVALID, "no listener can be served")
    if not bad:
        state, reason, msg = READY, PROGRAMMED, prog.message
    else:
        state, reason = ERROR, LISTENERS_NOT_VALID
        msg = "; ".join(f"listener {ls.name}: {_first_problem(ls)}" for ls in bad)
    return ObjectStatus(GATEWAY, namespace, name, state, reason, msg, gen, (accepted, prog), origin, (), listeners)


def _cond(ls: ListenerStatus, type_: str) -> Condition:
    return next(c for c in ls.conditions if c.type == type_)


def _first_problem(ls: ListenerStatus) -> str:
    # Programmed last: it only repeats why the listener is not served.
    for c in sorted(ls.conditions, key=lambda c: c.type == PROGRAMMED):
        if c.status != ("True" if c.type != "Conflicted" else "False"):
            return f"{c.reason}: {c.message}"
    return ""


def _listener(
    snapshot, options, namespace: str, ls: Listener, conflicted: bool, attached: int, grants
) -> ListenerStatus:
    if ls.protocol not in ROUTE_PROTOCOLS:
        msg = f"protocol {ls.protocol} is not supported (crdgate serves HTTP and HTTPS listeners)"
        return ListenerStatus(ls.name, (), attached, (
            Condition(ACCEPTED, "False", UNSUPPORTED_PROTOCOL, msg),
            Condition(PROGRAMMED, "False", INVALID, msg),
            Condition(RESOLVED_REFS, "True", RESOLVED_REFS, "no references"),
            Condition("Conflicted", "False", NO_CONFLICTS, "no conflicts"),
        ), ls.protocol, ls.port, ls.hostname)
    # Kinds: the supported ones among those asked for; any other is InvalidRouteKinds.
    asked = [(k.group or GROUP, k.kind) for k in ls.allowed_routes.kinds]
    if asked:
        kinds = tuple(dict.fromkeys(k for g, k in asked if g == GROUP and k in SUPPORTED_KINDS))
        invalid = [f"{g}/{k}" for g, k in asked if not (g == GROUP and k in SUPPORTED_KINDS)]
    else:
        kinds, invalid = SUPPORTED_KINDS, []
    problems: list[tuple[str, str]] = []
    if ls.protocol == "HTTPS":
        problems += _certificate_problems(snapshot, options, namespace, ls, grants)
    if invalid:
        problems.append((INVALID_ROUTE_KINDS, f"route kind(s) {', '.join(invalid)} not supported (only HTTPRoute)"))
    if problems:
        # RefNotPermitted first: Gateway API reserves InvalidCertificateRef for references that are allowed.
        problems.sort(key=lambda p: p[0] != REF_NOT_PERMITTED)
        refs = Condition(RESOLVED_REFS, "False", problems[0][0], "; ".join(m for _, m in problems))
    else:
        refs = Condition(RESOLVED_REFS, "True", RESOLVED_REFS, "all references resolved")
    if conflicted:
        msg = f"another listener on port {ls.port} has a different protocol"
        conflict = Condition("Conflicted", "True", PROTOCOL_CONFLICT, msg)
        accepted = Condition(ACCEPTED, "False", PROTOCOL_CONFLICT, msg)
    else:
        conflict = Condition("Conflicted", "False", NO_CONFLICTS, "no conflicts")
        accepted = Condition(ACCEPTED, "True", ACCEPTED, "listener is valid")
    cert_problem = any(r in (INVALID_CERTIFICATE_REF, REF_NOT_PERMITTED) for r, _ in problems)
    if conflicted or cert_problem or not kinds:
        programmed = Condition(PROGRAMMED, "False", INVALID, refs.message if not conflicted else conflict.message)
    else:
        port = "--listen-tls" if ls.protocol == "HTTPS" else "--listen"
        programmed = Condition(PROGRAMMED, "True", PROGRAMMED, f"served on crdgate's {port}")
    return ListenerStatus(ls.name, kinds, attached, (accepted, programmed, refs, conflict), ls.protocol, ls.port,
                          ls.hostname)


def _certificate_problems(snapshot, options, namespace: str, ls: Listener, grants) -> list[tuple[str, str]]:
    tls = ls.tls
    if tls is None or not tls.certificate_refs:
        return [(INVALID_CERTIFICATE_REF, "an HTTPS listener needs tls.certificateRefs (kubernetes.io/tls Secrets)")]
    out = []
    for i, ref in enumerate(tls.certificate_refs):
        where = f"tls.certificateRefs[{i}]"
        ns = ref.namespace or namespace
        if (ref.group or CORE_GROUP) != CORE_GROUP or ref.kind != "Secret":
            out.append((INVALID_CERTIFICATE_REF, f"{where}: {ref.group or 'core'}/{ref.kind} is not a Secret"))
            continue
        if ns != namespace and not options.allow_cross_namespace_refs and not grants().permits(
            Referrer(GROUP, GATEWAY, namespace), CORE_GROUP, SECRET, ns, ref.name
        ):
            out.append((REF_NOT_PERMITTED, f"{where}: Secret {ns}/{ref.name} is in another namespace and no "
                                           f"ReferenceGrant in namespace {ns} allows references to it from "
                                           f"Gateway in namespace {namespace}"))
            continue
        problem = tls_secret_problem(snapshot.get(SECRET, ns, ref.name))
        if problem is not None:
            out.append((INVALID_CERTIFICATE_REF, f"{where}: Secret {ns}/{ref.name} {problem}"))
    return out


def tls_secret_problem(secret: Mapping | None) -> str | None:
    """Why a Secret cannot be a listener's certificate (the shape only: certs.py parses the PEM)."""
    if secret is None:
        return "not found"
    if secret.get("type", TLS_SECRET_TYPE) != TLS_SECRET_TYPE:
        return f"is of type {secret.get('type')}, not {TLS_SECRET_TYPE}"
    data = secret.get("data")
    if not isinstance(data, Mapping) or not data.get("tls.crt") or not data.get("tls.key"):
        return "has no tls.crt and tls.key"
    return None
