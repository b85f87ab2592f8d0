"""One HTTPRoute (gateway.networking.k8s.io/v1) -> a candidate with one table route per match.

Neighbours: the model and its validation are controller/gatewayapi/; where
the route attaches (and under which host names) is gateways.py's answer; its
filters become the same policies as an APIEndpoint's fields (policies.py,
whose builders read the Gateway API filter models as they read ours); its
backend keys come from backends.py, cross-namespace ones checked through
controller/refgrant.py. Each match of each rule is one table route (several
matches are ORed); ``Route.rule`` names the rule ("rules[1]", or its name)
and the match, and ``/routes`` shows it.

A route that names our Gateways but attaches to none of their listeners is
left out with its status (each parentRef's reason); an ExtensionRef filter is
an unresolved reference (``InvalidKind``) and its rule answers 500. The
statuses carry the per-parentRef outcomes that controller/gatewaystatus.py
writes as ``status.parents``.

Like an Ingress, an HTTPRoute loses only its conflicting matches in
conflicts.py (the older object keeps an identical match, as Gateway API's
tie-break says). An invalid backendRef (unknown kind, missing Service, a
cross-namespace Service without a ReferenceGrant) keeps its weight and
answers 500 for its share; a rule whose backends all weigh 0, or that has
none, answers 500.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

import controller.compile.policies as policies
from controller import models as m
from controller.compile.backends import backend_ref, one, refused_key, service_key
from controller.compile.context import Candidate, ObjectContext, object_meta
from controller.compile.gateways import UNSUPPORTED_VALUE, Attachment, ParentOutcome, attach
from controller.compile.status import ERROR, INVALID_SPEC, ObjectStatus, Routed, conditions
from controller.gatewayapi.httproute import DEFAULT_MATCH, HTTPRoute, HTTPRouteMatch, HTTPRouteRule
from controller.gatewayapi.objects import InvalidObject as InvalidGatewayAPIObject, parse
from controller.refgrant import CORE_GROUP, GRANT_GROUP, REF_NOT_PERMITTED, References
from controller.store import GRPCROUTE, HTTPROUTE, SERVICE
from gateway.errors import InvalidObject
from gateway.routing import (
    NO_POLICY,
    PATH_EXACT,
    PATH_PREFIX,
    PATH_REGEX,
    BackendRef,
    CorsPolicy,
    Mirror,
    Route,
    RoutePolicy,
    StringMatch,
)

INVALID_KIND = "InvalidKind"  # HTTPRoute ResolvedRefs reason: a backendRef of a kind crdgate cannot route to

MAX_MATCHES = 64  # matches per rule (the CRD's limit): a route's order is rule * 64 + match
_PATH_TYPES = {"Exact": PATH_EXACT, "PathPrefix": PATH_PREFIX, "RegularExpression": PATH_REGEX}


def compile_httproute(ctx: ObjectContext, key: str, obj: Mapping, status_key: str) -> Candidate | ObjectStatus | None:
    """None when the HTTPRoute names none of our Gateways; its status (left out)
    when it attaches to none of their listeners."""
    namespace, _, _, created = object_meta(obj)
    try:
        route = parse(HTTPROUTE, obj)
    except InvalidGatewayAPIObject as e:
        raise InvalidObject(INVALID_SPEC, str(e)) from None
    assert isinstance(route, HTTPRoute)
    spec = route.spec
    where = attach(ctx, namespace, spec.parent_refs, list(spec.hostnames))
    if where is None:
        return None  # another controller's route
    refs = ctx.references(GRANT_GROUP, HTTPROUTE, namespace)
    problems: list[tuple[str, str]] = []
    ref_errors: list[tuple[str, str]] = []
    routes: list[Route] = []
    traffic: list[str] = []
    extra: list[str] = []
    unsupported_rules = 0
    for i, rule in enumerate(spec.rules):
        rule_name = f"rules[{i}]" if rule.name is None else f"rules[{i}]({rule.name})"
        first_problem = len(problems)
        backends = _backends(ctx, rule, namespace, refs, f"spec.rules[{i}]", ref_errors, problems)
        before = len(problems)
        policy, mirror_key, unresolved = _policy(ctx, rule, namespace, refs, f"spec.rules[{i}]", ref_errors, problems)
        if len(problems) > before or unresolved:
            backends = ()  # a filter crdgate cannot apply: the rule answers 500 rather than skip it
        if len(problems) > first_problem:
            unsupported_rules += 1
        for b in backends:
            (traffic if b.weight > 0 else extra).append(b.key)
        if mirror_key is not None:
            extra.append(mirror_key)
        if all(b.weight == 0 for b in backends):
            backends = ()  # Gateway API: no traffic can go anywhere, 500
        for j, match in enumerate(rule.matches or (DEFAULT_MATCH,)):
            name_of = f"{rule_name}.matches[{j}]"
            routes.append(_route(key, match, where.hosts, backends, policy, created, name_of, i * MAX_MATCHES + j))
    return route_outcome(ctx, HTTPROUTE, key, obj, status_key, where, routes, traffic, extra, problems, ref_errors,
                         unsupported_rules == len(spec.rules))


def route_outcome(
    ctx: ObjectContext, kind: str, key: str, obj: Mapping, status_key: str, where: Attachment,
    routes: list[Route], traffic: list[str], extra: list[str], problems: list[tuple[str, str]],
    ref_errors: list[tuple[str, str]], every_rule_unsupported: bool,
) -> Candidate | ObjectStatus:
    """What an HTTPRoute or GRPCRoute (``kind``) comes to once its rules are compiled: its
    routes, or its status alone when it attaches to none of our listeners."""
    namespace, name, generation, created = object_meta(obj)
    parents = parents_with_problems(where.parents, problems, every_rule_unsupported)
    if not where.listeners:
        return detached_status(ctx, kind, key, obj, where, ref_errors, parents)
    routed = Routed(
        kind=kind,
        namespace=namespace,
        name=name,
        generation=generation,
        origin=ctx.origin(kind, key),
        backends=tuple(dict.fromkeys(traffic)),
        extra_refs=tuple(dict.fromkeys(k for k in extra if k not in traffic)),
        problems=tuple(problems),
        ref_errors=tuple(ref_errors),
        parents=parents,
    )
    return Candidate(status_key, routed, created, key, tuple(routes), whole=False)


def parents_with_problems(
    parents: tuple[ParentOutcome, ...], problems: list[tuple[str, str]], every_rule: bool
) -> tuple[ParentOutcome, ...]:
    """Each accepted parent told about rules crdgate cannot implement (they answer 500).

    Gateway API: a route is Accepted when at least one of its rules is
    implemented; when none is, ``Accepted`` is False with ``UnsupportedValue``."""
    if not problems:
        return parents
    text = "; ".join(msg for _, msg in problems)
    out = []
    for p in parents:
        if not p.accepted:
            out.append(p)
        elif every_rule:
            out.append(replace(p, accepted=False, reason=UNSUPPORTED_VALUE, message=text))
        else:
            out.append(replace(p, message=f"{p.message}; answered with 500: {text}"))
    return tuple(out)


def detached_status(
    ctx: ObjectContext, kind: str, key: str, obj: Mapping, where: Attachment, ref_errors: list[tuple[str, str]],
    parents: tuple[ParentOutcome, ...],
) -> ObjectStatus:
    """The status of a route (HTTPRoute, GRPCRoute) that names our Gateways but attaches to none of their listeners."""
    namespace, name, generation, _ = object_meta(obj)
    reason, message = where.reason
    not_accepted = ("False", reason, message)
    if ref_errors:
        refs = ("False", ref_errors[0][0], "; ".join(msg for _, msg in ref_errors))
    else:
        refs = ("True", "ResolvedRefs", "all references resolved")
    return ObjectStatus(
        kind, namespace, name, ERROR, reason, message, generation,
        conditions(not_accepted, refs, not_accepted), ctx.origin(kind, key), parents,
    )


def _route(
    owner: str,
    match: HTTPRouteMatch,
    hosts: tuple[str, ...],
    backends: tuple[BackendRef, ...],
    policy: RoutePolicy,
    created: str,
    rule: str,
    order: int,
) -> Route:
    path_type = _PATH_TYPES[match.path.type]
    return Route(
        name=owner,
        kind=HTTPROUTE,
        path=match.path.value,
        path_type=path_type,
        hosts=hosts,
        methods=frozenset((match.method,)) if match.method else None,
        headers=tuple(
            StringMatch(h.name.lower(), h.value, m.compile_regex(h.value) if h.type == "RegularExpression" else None)
            for h in match.headers
        ),
        query=tuple(
            StringMatch(q.name, q.value, m.compile_regex(q.value) if q.type == "RegularExpression" else None)
            for q in match.query_params
        ),
        backends=one(backends[0]) if len(backends) == 1 else backends,
        policy=policy,
        created=created,
        regex=m.compile_regex(match.path.value) if path_type == PATH_REGEX else None,
        rule=rule,
        order=order,
    )


def backend_key(
    ctx: ObjectContext, b, namespace: str, refs: References, where: str, ref_errors: list[tuple[str, str]],
    kind: str = HTTPROUTE,
) -> str:
    """The EndpointSet key of a backendRef (or of a mirror's); an invalid one gets a key that answers 500.

    A GRPCRoute's (``kind``) refs are Services spoken to in HTTP/2 (gRPC is HTTP/2)."""
    ns = b.namespace or namespace
    if (b.group or CORE_GROUP) != CORE_GROUP or b.kind != "Service":
        ref_errors.append((INVALID_KIND, f"{where}: {b.group or 'core'}/{b.kind} is not a kind crdgate routes to"))
        return refused_key(ns, b.name, b.port)
    if not refs.permitted(CORE_GROUP, SERVICE, ns, b.name):
        ref_errors.append((REF_NOT_PERMITTED, f"{refs.refusal(SERVICE, ns, b.name)} ({where})"))
        return refused_key(ns, b.name, b.port)
    return service_key(ns, b.name, b.port, ctx.services, http2=kind == GRPCROUTE)


def _backends(
    ctx: ObjectContext,
    rule: HTTPRouteRule,
    namespace: str,
    refs: References,
    where: str,
    ref_errors: list[tuple[str, str]],
    problems: list[tuple[str, str]],
) -> tuple[BackendRef, ...]:
    out: list[BackendRef] = []
    for k, b in enumerate(rule.backend_refs):
        at = f"{where}.backendRefs[{k}]"
        key = backend_key(ctx, b, namespace, refs, at, ref_errors)
        out.append(with_backend_filters(key, b, namespace, at, problems))
    return tuple(out)


def with_backend_filters(key: str, b, namespace: str, at: str, problems: list[tuple[str, str]]) -> BackendRef:
    """The BackendRef of an HTTPRoute or GRPCRoute backendRef, with its own header filters.

    RequestHeaderModifier and ResponseHeaderModifier apply after the rule's when this
    backend is picked. Any other filter on a backendRef fails closed for this share (500)
    rather than send it on without the redirect, rewrite or mirror it asked for."""
    if not b.filters:
        return backend_ref(key, b.weight)
    mods: dict = {}
    for j, f in enumerate(b.filters):
        if f.type == "RequestHeaderModifier":
            mods["request_headers"] = policies.header_modifier(f.request_header_modifier)
        elif f.type == "ResponseHeaderModifier":
            mods["response_headers"] = policies.header_modifier(f.response_header_modifier)
        else:
            problems.append((UNSUPPORTED_VALUE, f"{at}.filters[{j}]: {f.type} is not supported on a backendRef"))
            return backend_ref(refused_key(b.namespace or namespace, b.name, b.port), b.weight)
    return BackendRef(key, b.weight, **mods)


def _policy(
    ctx: ObjectContext,
    rule: HTTPRouteRule,
    namespace: str,
    refs: References,
    where: str,
    ref_errors: list[tuple[str, str]],
    problems: list[tuple[str, str]],
) -> tuple[RoutePolicy, str | None, bool]:
    """The rule's filters and timeouts as one RoutePolicy, the mirror's backend key, and
    whether a filter names what crdgate cannot resolve (an ExtensionRef: the rule answers 500)."""
    if not rule.filters and rule.timeouts is None:
        return NO_POLICY, None, False
    settings: dict = {}
    mirror_key = None
    unresolved = False
    for k, f in enumerate(rule.filters):
        at = f"{where}.filters[{k}]"
        t = f.type
        if t == "RequestHeaderModifier":
            settings["request_headers"] = policies.header_modifier(f.request_header_modifier)
        elif t == "ResponseHeaderModifier":
            settings["response_headers"] = policies.header_modifier(f.response_header_modifier)
        elif t == "RequestRedirect":
            settings["redirect"] = policies.redirect(f.request_redirect)
        elif t == "URLRewrite":
            settings["rewrite"] = policies.rewrite(f.url_rewrite)
        elif t == "RequestMirror" and mirror_key is None and f.request_mirror is not None:
            mf = f.request_mirror
            mirror_key = backend_key(ctx, mf.backend_ref, namespace, refs, f"{at}.requestMirror.backendRef", ref_errors)
            settings["mirror"] = Mirror(backend=BackendRef(mirror_key), percent=mf.share * 100)
        elif t == "CORS" and f.cors is not None:
            c = f.cors
            settings["cors"] = CorsPolicy(
                allow_origins=tuple(c.allow_origins),
                allow_methods=tuple(c.allow_methods),
                allow_headers=tuple(c.allow_headers),
                expose_headers=tuple(c.expose_headers),
                allow_credentials=bool(c.allow_credentials),
                max_age=c.max_age,
            )
        elif t == "ExtensionRef" and f.extension_ref is not None:
            # A reference to a filter of a kind crdgate does not know: never skipped (Gateway API).
            e = f.extension_ref
            ref_errors.append((INVALID_KIND, f"{at}.extensionRef: {e.group}/{e.kind} {e.name} is not a kind of "
                                             "filter crdgate knows (the rule answers 500)"))
            unresolved = True
        else:
            what = "a second RequestMirror" if t == "RequestMirror" else f"filter type {t}"
            problems.append((UNSUPPORTED_VALUE, f"{at}: {what} is not supported"))
    if rule.timeouts is not None:
        settings["timeouts"] = policies.timeouts(rule.timeouts)
    return RoutePolicy(**settings), mirror_key, unresolved
