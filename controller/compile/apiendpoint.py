"""One APIEndpoint -> a candidate route (or InvalidObject naming the field).

Neighbours: validated with ``controller.models.APIEndpointSpec``; its policies
come from policies.py (shared with Ingress annotations), its authenticator
from the context's ``build_auth`` (controller/authbuild.py), its backend keys
from backends.py, cross-namespace references checked through
controller/refgrant.py. An APIEndpoint is all or nothing in conflicts.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from pydantic import ValidationError

from controller import models as m
import controller.compile.policies as policies
from controller.compile.backends import (
    backend_ref,
    cluster_service_of_url,
    gateway_local_host,
    one,
    refused_key,
    service_key,
    url_key,
)
from controller.compile.context import Candidate, ObjectContext, lower_host, object_meta
from controller.compile.status import INVALID_SPEC, Routed
from controller.refgrant import APIENDPOINT_GROUP, CORE_GROUP, REF_NOT_PERMITTED, References
from controller.store import APIENDPOINT, SERVICE
from gateway.errors import InvalidObject
from gateway.routing import (
    NO_POLICY,
    PATH_REGEX,
    BackendRef,
    Mirror,
    Route,
    RoutePolicy,
    StringMatch,
)


def compile_apiendpoint(ctx: ObjectContext, key: str, obj: Mapping, status_key: str) -> Candidate | None:
    """None when the APIEndpoint names another gateway's class."""
    namespace, name, generation, created = object_meta(obj)
    spec_raw = obj.get("spec")
    if isinstance(spec_raw, Mapping):
        cls = spec_raw.get("ingressClassName")
        if isinstance(cls, str) and cls != ctx.options.ingress_class:
            return None  # another gateway's route
    elif spec_raw is None:
        raise InvalidObject(INVALID_SPEC, "spec: required field is missing")
    else:
        raise InvalidObject(INVALID_SPEC, f"spec: expected an object, got {type(spec_raw).__name__}")
    try:
        spec = m.APIEndpointSpec.model_validate(spec_raw)
    except ValidationError as e:
        raise InvalidObject(INVALID_SPEC, "; ".join(m.describe_errors(e, "spec"))) from None

    refs = ctx.references(APIENDPOINT_GROUP, APIENDPOINT, namespace)
    authenticator = None
    ref_errors: tuple[tuple[str, str], ...] = ()
    if spec.auth is not None or spec.auth_required:
        authenticator, err = ctx.build_auth(spec.auth, namespace, refs, auth_required=spec.auth_required)
        if err is not None:
            if authenticator is None:
                raise InvalidObject(err.reason, err.message)
            ref_errors = ((err.reason, err.message),)

    backends: list[BackendRef] = []
    refused: list[tuple[str, str]] = []  # (RefNotPermitted, message) per refused backend
    if spec.backend_service is not None:
        backends.append(backend_ref(service_key(namespace, spec.backend_service, None, ctx.services)))
    for i, b in enumerate(spec.backends or ()):
        target = target_key(b, namespace, ctx, refs, f"spec.backends[{i}]", refused)
        backends.append(backend_ref(target, b.weight))
    mirror_key = None
    if spec.mirror:
        mirror_key = target_key(spec.mirror.backend, namespace, ctx, refs, "spec.mirror.backend", refused)
    if refused:
        ref_errors = (*refused, *ref_errors)
    origin = ctx.origin(APIENDPOINT, key)

    path_type = spec.path_type
    route = Route(
        name=key,  # "namespace/name", the store's own string
        kind=APIENDPOINT,
        path=spec.path,
        path_type=path_type,
        hosts=tuple(lower_host(h) for h in spec.hosts),
        methods=spec.method_set,
        headers=string_matches(spec.headers, lower=True),
        query=string_matches(spec.query_params, lower=False),
        backends=one(backends[0]) if len(backends) == 1 else tuple(backends),
        policy=route_policy(spec, authenticator, mirror_key),
        created=created,
        regex=m.compile_regex(spec.path) if path_type == PATH_REGEX else None,
    )
    if len(backends) == 1 and backends[0].weight > 0 and mirror_key is None:
        traffic, extra = one(backends[0].key), ()  # the seed form: keep the common case cheap
    else:
        # Weight 0 takes no traffic, so it cannot make the route unready; it must still exist.
        traffic = tuple(dict.fromkeys(b.key for b in backends if b.weight > 0))
        extra = tuple(dict.fromkeys([b.key for b in backends if b.weight == 0] + ([mirror_key] if mirror_key else [])))
    routed = Routed(
        kind=APIENDPOINT,
        namespace=namespace,
        name=name,
        generation=generation,
        origin=origin,
        backends=traffic,
        extra_refs=extra,
        ref_errors=ref_errors,
    )
    return Candidate(status_key, routed, created, key, (route,), whole=True)


def string_matches(specs: list[m.StringMatchSpec], lower: bool) -> tuple[StringMatch, ...]:
    if not specs:
        return ()
    return tuple(
        StringMatch(
            name=s.name.lower() if lower else s.name,
            value=s.value,
            regex=m.compile_regex(s.value) if s.type == "RegularExpression" else None,
        )
        for s in specs
    )


def route_policy(spec: m.APIEndpointSpec, authenticator: Any, mirror_key: str | None) -> RoutePolicy:
    """The RoutePolicy of an APIEndpoint's fields (``NO_POLICY`` itself when none is set)."""
    if (
        authenticator is None
        and spec.rate_limit is None
        and spec.rewrite is None
        and spec.request_headers is None
        and spec.response_headers is None
        and spec.redirect is None
        and spec.timeouts is None
        and spec.retries is None
        and spec.cors is None
        and spec.max_body_bytes is None
        and spec.load_balancer == "RoundRobin"
        and mirror_key is None
        and not spec.https_redirect
    ):
        return NO_POLICY  # shared: most routes pay nothing for policies they do not use
    mirror = None
    if mirror_key is not None and spec.mirror is not None:
        mirror = Mirror(backend=BackendRef(mirror_key), percent=spec.mirror.percent)
    return RoutePolicy(
        auth=authenticator,
        rate_limit=policies.rate_limit(spec.rate_limit),
        rewrite=policies.rewrite(spec.rewrite),
        request_headers=policies.header_modifier(spec.request_headers),
        response_headers=policies.header_modifier(spec.response_headers),
        redirect=policies.redirect(spec.redirect),
        timeouts=policies.timeouts(spec.timeouts),
        retries=policies.retries(spec.retries),
        cors=policies.cors(spec.cors),
        max_body_bytes=spec.max_body_bytes,
        load_balancer=spec.load_balancer,
        mirror=mirror,
        https_redirect=spec.https_redirect,
    )


def target_key(
    t: m.BackendTargetSpec,
    namespace: str,
    ctx: ObjectContext,
    refs: References,
    where: str,
    refused: list[tuple[str, str]],
) -> str:
    """The EndpointSet key of a backend; a refused one is added to ``refused`` as (reason, message)."""
    services = ctx.services
    if t.url is not None:
        host = urlsplit(t.url).hostname or ""
        local = gateway_local_host(host) if ctx.options.search_namespace else ""
        if local:
            # In a pod (search_namespace known) a tenant's route must not reach the gateway
            # itself or the node; outside one, loopback backends are the normal first run.
            refused.append((REF_NOT_PERMITTED, f"{where}: {t.url} is {local}: not a backend in a cluster"))
            return refused_key(namespace, host, urlsplit(t.url).port)
        named = cluster_service_of_url(t.url, services.is_namespace, ctx.options.search_namespace)
        if named is not None and not refs.permitted(CORE_GROUP, SERVICE, *named):
            refused.append((REF_NOT_PERMITTED, f"{refs.refusal(SERVICE, *named)} ({where}: {t.url})"))
            return refused_key(*named, urlsplit(t.url).port)
        return url_key(t.url, getattr(t, "protocol", None) == "HTTP/2")  # a mirror target has no protocol
    assert t.service is not None
    ns, name = t.service.namespace or namespace, t.service.name
    if not refs.permitted(CORE_GROUP, SERVICE, ns, name):
        refused.append((REF_NOT_PERMITTED, f"{refs.refusal(SERVICE, ns, name)} ({where})"))
        return refused_key(ns, name, t.service.port)  # the Service itself is not even looked up
    return service_key(ns, name, t.service.port, services)
