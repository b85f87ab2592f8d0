"""One GRPCRoute (gateway.networking.k8s.io/v1) -> a candidate with one table route per match.

The same path as an HTTPRoute (httproute.py): attachment by gateways.py, backend
keys by ``backend_key``, header modifiers by policies.py, one table route per
match, the same ``Routed`` status. What is gRPC's own:

- a call is ``POST /<service>/<method>``, so a method match is a path match:
  service and method Exact -> the Exact path ``/S/M``; the service alone -> the
  Prefix ``/S`` (element-wise: ``/S/...``); the method alone, or a
  RegularExpression -> the regular expression ``/(S)/(M)`` (a missing part is
  ``[^/]+``); no method match -> every path;
- backends are spoken to in HTTP/2 (cleartext with prior knowledge unless the
  Service port says otherwise): their keys end in ``#h2`` (backends.py);
- filters: RequestHeaderModifier and ResponseHeaderModifier. RequestMirror is
  refused (the mirror speaks HTTP/1.1, which no gRPC server answers), as is
  ExtensionRef: either makes the rule answer 500 rather than run without it.

Like HTTPRoute's, its routes claim nothing in conflicts.py: an identical
match goes to the oldest route by the table's precedence.
"""

from __future__ import annotations

from collections.abc import Mapping

import controller.compile.policies as policies
from controller import models as m
from controller.compile.backends import one
from controller.compile.context import Candidate, ObjectContext, object_meta
from controller.compile.gateways import UNSUPPORTED_VALUE, attach
from controller.compile.httproute import (
    MAX_MATCHES,
    backend_key,
    route_outcome,
    with_backend_filters,
)
from controller.compile.status import INVALID_SPEC, ObjectStatus
from controller.gatewayapi.grpcroute import DEFAULT_MATCH, GRPCRoute, GRPCRouteMatch, GRPCRouteRule
from controller.gatewayapi.objects import InvalidObject as InvalidGatewayAPIObject, parse
from controller.refgrant import GRANT_GROUP, References
from controller.store import GRPCROUTE
from gateway.errors import InvalidObject
from gateway.routing import NO_POLICY, PATH_EXACT, PATH_PREFIX, PATH_REGEX, BackendRef, Route, RoutePolicy, StringMatch

ANY_PART = "[^/]+"  # a service or method a RegularExpression match leaves open


def compile_grpcroute(ctx: ObjectContext, key: str, obj: Mapping, status_key: str) -> Candidate | ObjectStatus | None:
    """None when the GRPCRoute names none of our Gateways; its status (left out)
    when it attaches to none of their listeners."""
    namespace, _, _, created = object_meta(obj)
    try:
        route = parse(GRPCROUTE, obj)
    except InvalidGatewayAPIObject as e:
        raise InvalidObject(INVALID_SPEC, str(e)) from None
    assert isinstance(route, GRPCRoute)
    spec = route.spec
    where = attach(ctx, namespace, spec.parent_refs, list(spec.hostnames), kind=GRPCROUTE)
    if where is None:
        return None  # another controller's route
    refs = ctx.references(GRANT_GROUP, GRPCROUTE, namespace)
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
        policy = _policy(rule, f"spec.rules[{i}]", problems)
        if len(problems) > before:
            backends = ()  # a filter crdgate cannot apply: the rule answers 500 rather than skip it
        if len(problems) > first_problem:
            unsupported_rules += 1
        for b in backends:
            (traffic if b.weight > 0 else extra).append(b.key)
        if all(b.weight == 0 for b in backends):
            backends = ()  # Gateway API: no traffic can go anywhere, 500
        for j, match in enumerate(rule.matches or (DEFAULT_MATCH,)):
            name_of = f"{rule_name}.matches[{j}]"
            routes.append(_route(key, match, where.hosts, backends, policy, created, name_of, i * MAX_MATCHES + j))
    return route_outcome(ctx, GRPCROUTE, key, obj, status_key, where, routes, traffic, extra, problems, ref_errors,
                         unsupported_rules == len(spec.rules))


def method_path(match: GRPCRouteMatch) -> tuple[str, str]:
    """(path type, path) of a match's service and method: see the module docstring."""
    mm = match.method
    if mm is None:
        return PATH_PREFIX, "/"
    if mm.type == "Exact":
        if mm.service and mm.method:
            return PATH_EXACT, f"/{mm.service}/{mm.method}"
        if mm.service:
            return PATH_PREFIX, f"/{mm.service}"
        return PATH_REGEX, f"/{ANY_PART}/{mm.method}"  # a method name has no regex metacharacter
    service = f"(?:{mm.service})" if mm.service else ANY_PART
    method = f"(?:{mm.method})" if mm.method else ANY_PART
    return PATH_REGEX, f"/{service}/{method}"


def _route(
    owner: str,
    match: GRPCRouteMatch,
    hosts: tuple[str, ...],
    backends: tuple[BackendRef, ...],
    policy: RoutePolicy,
    created: str,
    rule: str,
    order: int,
) -> Route:
    path_type, path = method_path(match)
    return Route(
        name=owner,
        kind=GRPCROUTE,
        path=path,
        path_type=path_type,
        hosts=hosts,
        headers=tuple(
            StringMatch(h.name.lower(), h.value, m.compile_regex(h.value) if h.type == "RegularExpression" else None)
            for h in match.headers
        ),
        backends=one(backends[0]) if len(backends) == 1 else backends,
        policy=policy,
        created=created,
        regex=m.compile_regex(path) if path_type == PATH_REGEX else None,
        rule=rule,
        order=order,
    )


def _backends(
    ctx: ObjectContext,
    rule: GRPCRouteRule,
    namespace: str,
    refs: References,
    where: str,
    ref_errors: list[tuple[str, str]],
    problems: list[tuple[str, str]],
) -> tuple[BackendRef, ...]:
    out: list[BackendRef] = []
    for k, b in enumerate(rule.backend_refs):
        at = f"{where}.backendRefs[{k}]"
        key = backend_key(ctx, b, namespace, refs, at, ref_errors, kind=GRPCROUTE)
        out.append(with_backend_filters(key, b, namespace, at, problems))
    return tuple(out)


def _policy(rule: GRPCRouteRule, where: str, problems: list[tuple[str, str]]) -> RoutePolicy:
    if not rule.filters:
        return NO_POLICY
    settings: dict = {}
    for k, f in enumerate(rule.filters):
        at = f"{where}.filters[{k}]"
        if f.type == "RequestHeaderModifier":
            settings["request_headers"] = policies.header_modifier(f.request_header_modifier)
        elif f.type == "ResponseHeaderModifier":
            settings["response_headers"] = policies.header_modifier(f.response_header_modifier)
        elif f.type == "RequestMirror":
            problems.append((UNSUPPORTED_VALUE, f"{at}: RequestMirror is not supported on a GRPCRoute "
                                                "(mirrored copies are sent in HTTP/1.1)"))
        else:
            problems.append((UNSUPPORTED_VALUE, f"{at}: filter type {f.type} is not supported"))
    return RoutePolicy(**settings)
