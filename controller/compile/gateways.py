"""Which Gateways are crdgate's, and which of their listeners an HTTPRoute attaches to.

Neighbours: httproute.py asks ``attach`` for each HTTPRoute; the answer is the
host names the route is served under (each listener's hostname intersected
with the route's) and, per parentRef naming one of our Gateways, what it came
to (``ParentOutcome``: the HTTPRoute's ``status.parents[]`` entry, with the
``Accepted`` reason when it attaches nowhere). listeners.py builds the
Gateways' own statuses on the same rules (``conflicted_listeners``). Gateways of our classes (GatewayClass
``controllerName`` == ``CompileOptions.gateway_controller_name``) are read
through the context's tracked snapshot, so a Gateway, GatewayClass or
Namespace change compiles the routes again (incremental.py).

crdgate has one routing table for all its ports: every accepted listener's
routes are served on ``--listen``; HTTPS listeners (tls mode Terminate)
stand for ``--listen-tls``, whatever port they declare. A listener's port
only selects listeners for a parentRef's ``port``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from controller.compile.context import ObjectContext
from controller.gatewayapi.common import GROUP
from controller.gatewayapi.gateway import Gateway, Listener
from controller.gatewayapi.objects import InvalidObject as InvalidGatewayAPIObject, parse
from controller.store import GATEWAY, GATEWAYCLASS, HTTPROUTE, NAMESPACE

# HTTPRoute Accepted reasons (Gateway API).
NOT_ALLOWED_BY_LISTENERS = "NotAllowedByListeners"
NO_MATCHING_LISTENER_HOSTNAME = "NoMatchingListenerHostname"
NO_MATCHING_PARENT = "NoMatchingParent"
UNSUPPORTED_VALUE = "UnsupportedValue"

ROUTE_PROTOCOLS = ("HTTP", "HTTPS")  # the listener protocols that carry HTTPRoutes


@dataclass(frozen=True, slots=True)
class ParentOutcome:
    """What one parentRef of ours came to: the HTTPRoute's ``status.parents[]`` entry for it.

    ``ref`` is the parentRef as written, with the CRD's defaults (group, kind)
    filled in: the status must echo it so that readers find their entry."""

    ref: tuple[tuple[str, str | int], ...]
    accepted: bool
    reason: str  # Accepted, NotAllowedByListeners, NoMatchingListenerHostname, NoMatchingParent
    message: str
    listeners: tuple[str, ...]  # "ns/gateway/listener" it attached to


@dataclass(frozen=True)
class Attachment:
    """Where an HTTPRoute is served: ``hosts`` () means any host; no ``listeners``: nowhere."""

    hosts: tuple[str, ...]
    listeners: tuple[str, ...]  # "ns/gateway/listener" it attached to
    parents: tuple[ParentOutcome, ...] = ()

    @property
    def reason(self) -> tuple[str, str]:
        """(reason, message) of a route that attaches nowhere."""
        failed = [p for p in self.parents if not p.accepted]
        return failed[0].reason, "; ".join(p.message for p in failed)


def our_classes(ctx: ObjectContext) -> frozenset[str]:
    """Names of the GatewayClasses whose controllerName is ours (looked up once per compile)."""
    classes = ctx.tracked.of(GATEWAYCLASS)  # noted as a dependency by every route that asks
    if ctx.gateway_classes is not None:
        return ctx.gateway_classes
    names = set()
    for key, raw in classes.items():
        spec = raw.get("spec") if isinstance(raw, Mapping) else None  # the store's objects are read-only mappings
        if isinstance(spec, Mapping) and spec.get("controllerName") == ctx.options.gateway_controller_name:
            names.add(key.rpartition("/")[2])
    ctx.gateway_classes = frozenset(names)
    return ctx.gateway_classes


def our_gateway(ctx: ObjectContext, namespace: str, name: str) -> Gateway | None:
    """The Gateway ``namespace/name`` when it exists, is valid and of one of our classes."""
    key = f"{namespace}/{name}"
    raw = ctx.tracked.of(GATEWAY).get(key)
    if raw is None:
        return None
    if key not in ctx.gateways:  # parsed once per compile, however many routes name it
        try:
            ctx.gateways[key] = parse(GATEWAY, raw)
        except InvalidGatewayAPIObject:
            ctx.gateways[key] = None
    gw = ctx.gateways[key]
    return gw if gw is not None and gw.spec.gateway_class_name in our_classes(ctx) else None


def listener_serves_routes(listener: Listener) -> bool:
    """HTTP, and HTTPS that terminates TLS: the listeners crdgate serves."""
    if listener.protocol not in ROUTE_PROTOCOLS:
        return False
    return listener.protocol == "HTTP" or listener.tls is None or listener.tls.mode == "Terminate"


def conflicted_listeners(gw: Gateway) -> frozenset[str]:
    """Names of the listeners that share a port with a listener of another protocol
    (Gateway API's ProtocolConflict): one port cannot speak both, so neither is served."""
    protocols: dict[int, set[str]] = {}
    for ls in gw.spec.listeners:
        protocols.setdefault(ls.port, set()).add(ls.protocol)
    return frozenset(ls.name for ls in gw.spec.listeners if len(protocols[ls.port]) > 1)


def allows_kind(listener: Listener, kind: str = HTTPROUTE) -> bool:
    kinds = listener.allowed_routes.kinds
    if not kinds:
        return True  # HTTP and HTTPS listeners take HTTPRoutes and GRPCRoutes by default
    return any(k.kind == kind and (k.group or GROUP) == GROUP for k in kinds)


def allows_namespace(ctx: ObjectContext, listener: Listener, gateway_ns: str, route_ns: str) -> bool:
    rn = listener.allowed_routes.namespaces
    if rn.from_ == "All":
        return True
    if rn.from_ == "Same":
        return route_ns == gateway_ns
    if rn.selector is None:
        return False
    ns = ctx.tracked.of(NAMESPACE).get(f"/{route_ns}") or {}
    labels = (ns.get("metadata") or {}).get("labels") or {}
    return rn.selector.matches(labels)


def _covers(wildcard: str, host: str) -> bool:
    """Whether ``*.suffix`` covers ``host`` (one or more labels, Gateway API)."""
    return host.endswith(wildcard[1:]) and len(host) > len(wildcard) - 1


def intersect(listener_host: str | None, route_hosts: list[str]) -> tuple[str, ...] | None:
    """The host names a route is served under on one listener; () is any host, None is none."""
    if not route_hosts:
        return (listener_host,) if listener_host else ()
    if not listener_host:
        return tuple(h.lower() for h in route_hosts)
    lh = listener_host.lower()
    out: list[str] = []
    for h in (h.lower() for h in route_hosts):
        if h == lh:
            out.append(h)
        elif lh.startswith("*.") and _covers(lh, h):
            out.append(h)  # the route's name is the narrower one
        elif h.startswith("*.") and _covers(h, lh):
            out.append(lh)  # the listener's name is the narrower one
    return tuple(dict.fromkeys(out)) or None


def parent_ref_echo(ref) -> tuple[tuple[str, str | int], ...]:
    """A parentRef as ``status.parents[].parentRef`` repeats it (defaults filled, unset fields left out)."""
    out: list[tuple[str, str | int]] = [("group", ref.group), ("kind", ref.kind)]
    if ref.namespace is not None:
        out.append(("namespace", ref.namespace))
    out.append(("name", ref.name))
    if ref.section_name is not None:
        out.append(("sectionName", ref.section_name))
    if ref.port is not None:
        out.append(("port", ref.port))
    return tuple(out)


def attach(ctx: ObjectContext, route_ns: str, parent_refs, route_hosts: list[str],
           kind: str = HTTPROUTE) -> Attachment | None:
    """Where the route (an HTTPRoute or a GRPCRoute: ``kind``) is served, and what each
    parentRef naming one of our Gateways came to; None when no parentRef names one of
    our Gateways (another controller's route, or a Gateway that does not exist: nobody
    can say whose it would be)."""
    hosts: list[str] = []
    any_host = False
    listeners: list[str] = []
    parents: list[ParentOutcome] = []
    for i, ref in enumerate(parent_refs):
        if ref.group != GROUP or ref.kind != "Gateway":
            continue
        ns = ref.namespace or route_ns
        gw = our_gateway(ctx, ns, ref.name)
        if gw is None:
            continue
        where = f"spec.parentRefs[{i}]"
        echo = parent_ref_echo(ref)
        candidates = [
            ls for ls in gw.spec.listeners
            if (ref.section_name is None or ls.name == ref.section_name) and (ref.port is None or ls.port == ref.port)
        ]
        if not candidates:
            parents.append(ParentOutcome(echo, False, NO_MATCHING_PARENT,
                                         f"{where}: Gateway {ns}/{ref.name} has no such listener", ()))
            continue
        conflicts = conflicted_listeners(gw)
        allowed = [
            ls for ls in candidates
            if listener_serves_routes(ls) and ls.name not in conflicts and allows_kind(ls, kind)
            and allows_namespace(ctx, ls, ns, route_ns)
        ]
        if not allowed:
            parents.append(ParentOutcome(echo, False, NOT_ALLOWED_BY_LISTENERS,
                                         f"{where}: the listeners of {ns}/{ref.name} do not allow it", ()))
            continue
        mine: list[str] = []
        for ls in allowed:
            got = intersect(ls.hostname, route_hosts)
            if got is None:
                continue
            mine.append(f"{ns}/{ref.name}/{ls.name}")
            if got == ():
                any_host = True
            hosts.extend(got)
        if not mine:
            parents.append(ParentOutcome(
                echo, False, NO_MATCHING_LISTENER_HOSTNAME,
                f"{where}: no listener hostname of {ns}/{ref.name} matches the route's", ()))
            continue
        listeners.extend(mine)
        parents.append(ParentOutcome(echo, True, "Accepted", f"attached to {ns}/{ref.name}", tuple(mine)))
    if not parents:
        return None
    return Attachment(
        () if any_host else tuple(dict.fromkeys(hosts)), tuple(dict.fromkeys(listeners)), tuple(parents)
    )
