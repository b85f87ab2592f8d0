"""One Ingress (networking.k8s.io/v1) -> a candidate with one route per path.

Neighbours: which Ingresses are ours is controller/ingressclass.py's rule (the
default IngressClass looked up once per compile); the policies of all its
routes come from its ``crdgate.io/`` annotations (controller/compile/annotations.py,
built with policies.py like an APIEndpoint's fields) and its authentication
from ``crdgate.io/auth-*`` (controller/authbuild.py, validated with the same
model as an APIEndpoint's ``auth``). An invalid or unknown annotation leaves the
whole Ingress out (fail closed); a bad path leaves out that path only, and in
conflicts.py an Ingress loses only its conflicting paths. Ingress host
wildcards cover exactly one label (unlike Gateway API's).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from pydantic import ValidationError

from controller import authbuild
from controller import models as m
from controller.compile.annotations import ingress_policy
from controller.compile.backends import backend_ref, one, service_key
from controller.compile.context import Candidate, ObjectContext, object_meta
from controller.compile.status import INVALID_SPEC, Routed
from controller.ingressclass import owns_ingress
from controller.refgrant import INGRESS_GROUP
from controller.store import INGRESS, INGRESSCLASS
from gateway.errors import AnnotationError, InvalidObject
from gateway.routing import PATH_EXACT, PATH_PREFIX, Route


def class_is_default(ctx: ObjectContext) -> bool:
    """Whether our IngressClass is the cluster's default (asked once per compile)."""
    if ctx.default_class is None:
        ctx.default_class = False
        raw = ctx.snapshot.of(INGRESSCLASS).get(f"/{ctx.options.ingress_class}")
        if raw is not None:
            try:
                ic = m.IngressClass.model_validate(raw)
                ctx.default_class = ic.is_default and ic.spec.controller == ctx.options.controller_name
            except ValidationError:
                pass
    return ctx.default_class


def ingress_is_ours(ctx: ObjectContext, obj: Mapping) -> bool:
    if not isinstance(obj.get("spec") or {}, Mapping):
        return False
    # The default class is looked up only for Ingresses that name no class.
    spec = obj.get("spec") or {}
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    needs_default = not spec.get("ingressClassName") and not annotations.get(m.LEGACY_CLASS_ANNOTATION)
    return owns_ingress(obj, ctx.options.ingress_class, needs_default and class_is_default(ctx))


def ingress_backend(ctx: ObjectContext, b: m.IngressBackend, namespace: str) -> str:
    if b.service is None:
        raise ValueError("only service backends are supported (resource backends are not)")
    port = b.service.port
    ref: int | str | None = None
    if port is not None:
        ref = port.number if port.number is not None else port.name
    return service_key(namespace, b.service.name, ref, ctx.services)


def compile_ingress(ctx: ObjectContext, key: str, obj: Mapping, status_key: str) -> Candidate | None:
    """None when the Ingress is another gateway's."""
    if not ingress_is_ours(ctx, obj):
        return None
    namespace, name, generation, created = object_meta(obj)
    try:
        ing = m.Ingress.model_validate(obj)
    except ValidationError as e:
        raise InvalidObject(INVALID_SPEC, "; ".join(m.describe_errors(e, ""))) from None
    owner = key  # "namespace/name", the store's own string
    authenticator, err = authbuild.build_ingress_auth(
        ing.metadata.annotations,
        namespace,
        ctx.tracked,
        ctx.options.auth_defaults,
        references=ctx.references(INGRESS_GROUP, INGRESS, namespace),
    )
    try:
        # Checked before auth's own error: a mistyped crdgate.io/auth-* name is named here.
        # An invalid auth spec still counts as auth (no second message about a Consumer key).
        policy = ingress_policy(ing.metadata.annotations, has_auth=authenticator is not None or err is not None)
    except AnnotationError as e:
        raise InvalidObject(INVALID_SPEC, str(e)) from None
    if err is not None and authenticator is None:
        raise InvalidObject(err[0], err[1])
    ref_errors = (tuple(err),) if err is not None else ()
    if authenticator is not None:
        policy = replace(policy, auth=authenticator)
    routes: list[Route] = []
    problems: list[tuple[str, str]] = []
    for i, rule in enumerate(ing.spec.rules):
        host = (rule.host or "").lower()
        if host and not m.valid_hostname(host):
            problems.append((INVALID_SPEC, f"spec.rules[{i}].host: {rule.host!r} is not a host name"))
            continue
        for j, p in enumerate(rule.http.paths if rule.http else ()):
            where = f"rules[{i}].paths[{j}]"
            path = p.path
            if path is None or path == "":
                if p.path_type != "ImplementationSpecific":
                    problems.append((INVALID_SPEC, f"spec.{where}.path: required for pathType {p.path_type}"))
                    continue
                path = "/"
            if not path.startswith("/"):
                problems.append((INVALID_SPEC, f"spec.{where}.path: must start with '/'"))
                continue
            try:
                backend_key = ingress_backend(ctx, p.backend, namespace)
            except ValueError as e:
                problems.append((INVALID_SPEC, f"spec.{where}.backend: {e}"))
                continue
            routes.append(
                Route(
                    name=owner,
                    kind=INGRESS,
                    path=path,
                    path_type=PATH_EXACT if p.path_type == "Exact" else PATH_PREFIX,
                    hosts=(host,) if host else (),
                    backends=one(backend_ref(backend_key)),
                    policy=policy,
                    created=created,
                    # Ingress wildcards cover exactly one label (unlike Gateway API's).
                    wildcard_single_label=host.startswith("*."),
                    rule=where,
                )
            )
    fallback = None
    if ing.spec.default_backend is not None:
        try:
            fallback = Route(
                name=owner,
                kind=INGRESS,
                path="/",
                path_type=PATH_PREFIX,
                backends=one(backend_ref(ingress_backend(ctx, ing.spec.default_backend, namespace))),
                policy=policy,
                created=created,
                rule="defaultBackend",
            )
        except ValueError as e:
            problems.append((INVALID_SPEC, f"spec.defaultBackend: {e}"))
    if not routes and fallback is None:
        if problems:
            raise InvalidObject(INVALID_SPEC, "; ".join(msg for _, msg in problems))
        raise InvalidObject(INVALID_SPEC, "spec: no rules with paths and no defaultBackend")
    routed = Routed(
        kind=INGRESS,
        namespace=namespace,
        name=name,
        generation=generation,
        origin=ctx.origin(INGRESS, key),
        backends=(),
        extra_refs=(),
        problems=tuple(problems),
        ref_errors=ref_errors,
    )
    return Candidate(status_key, routed, created, owner, tuple(routes), whole=False, fallback=fallback)

