"""Compile a store snapshot into a RouteTable and one status per object (pure).

Neighbours: reads a ``controller.store.Snapshot`` (plain JSON dicts), validates
objects with ``controller.models``, builds ``gateway.routing`` types; the
publisher (controller/publish.py) swaps the table in and hands the statuses to
the status writer. Nothing here does I/O or mutates its inputs.

Every semantic rule lives here:

- which objects are ours (APIEndpoint ``ingressClassName``, Ingress class,
  default IngressClass, legacy annotation) - other gateways' objects get no status;
- each object is compiled inside its own ``try``: a bad one gets an ``Error``
  status naming the field and is left out, the rest of the table stands;
- two objects claiming exactly the same match: the older (creationTimestamp,
  then namespace/name) keeps it, the other is ``Conflicted`` and left out
  (an Ingress loses only the conflicting path);
- auth goes through ``build_auth`` (controller/authbuild.py does the work): a
  missing Secret or an ``authRequired`` with no default keeps the route in the
  table with an authenticator that answers 503 (fail closed: left out, its
  requests could fall through to a broader route without auth), status Error;
- an Ingress's policies come from its ``crdgate.io/`` annotations
  (controller/annotations.py), shared by all its routes; an invalid or unknown
  one is ``InvalidSpec`` naming it and leaves the whole Ingress out (fail closed);
- backends resolve Service -> EndpointSlices -> ready addresses and the port
  the Service port maps to; a missing Service is ``BackendNotFound`` (route kept,
  the proxy answers 500), no ready endpoints is ``NoReadyEndpoints`` (503);
- a Service or Secret in another namespace is used only when a ReferenceGrant
  there permits it (controller/refgrant.py; ``allow_cross_namespace_refs``
  turns the check off): otherwise ``RefNotPermitted``, the route is kept and
  fails closed, as for a missing one (a backend answers 500, auth 503);
- ``refresh_endpoints`` redoes only that last step for EndpointSlice churn.

This module compiles one object at a time (``_Compiler.build``: an object and
what it read of the snapshot -> a candidate or an error status) and settles
conflicts (``settle``); controller/incremental.py strings them together, for
every object (``compile_snapshot``, a pure function) or for the objects a
change touched (``Compiler``, which the publisher keeps between compiles). The
cyclic GC is paused during a compile: its full passes over the many small
objects of a 10,000-route compile would cost about a third of the time.
"""

from __future__ import annotations

import gc
from collections.abc import Iterable, Mapping, Set as AbstractSet
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from pydantic import ValidationError

from controller import authbuild
from controller import models as m
from controller.annotations import AnnotationError, ingress_policy
from controller.authbuild import NO_DEFAULTS, AuthDefaults
from controller.ingressclass import owns_ingress
from controller.refgrant import (
    APIENDPOINT_GROUP,
    CORE_GROUP,
    INGRESS_GROUP,
    REF_NOT_PERMITTED,
    Referrer,
    References,
    ReferenceGrants,
    grants_of,
)
from controller.store import APIENDPOINT, ENDPOINTSLICE, INGRESS, INGRESSCLASS, SERVICE, Snapshot
from gateway.routing import (
    ENDPOINTS_NONE_READY,
    ENDPOINTS_NOT_FOUND,
    ENDPOINTS_OK,
    NO_POLICY,
    PATH_EXACT,
    PATH_PREFIX,
    PATH_REGEX,
    BackendRef,
    CorsPolicy,
    Endpoint,
    EndpointSet,
    HeaderModifier,
    Mirror,
    RateLimitPolicy,
    Redirect,
    RetryPolicy,
    Rewrite,
    Route,
    RoutePolicy,
    RouteTable,
    StringMatch,
    Timeouts,
)

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


@dataclass(frozen=True)
class CompileOptions:
    ingress_class: str = "crdgate"
    controller_name: str = "crdgate.io/gateway"
    auth_defaults: AuthDefaults = NO_DEFAULTS  # what authRequired means with no namespace default
    # --allow-cross-namespace-refs: any route may use any namespace's Services and
    # Secrets without a ReferenceGrant (single-tenant clusters only).
    allow_cross_namespace_refs: bool = False


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


class _Routed(NamedTuple):
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


@dataclass(frozen=True)
class CompileResult:
    table: RouteTable
    statuses: Mapping[str, ObjectStatus]  # "Kind:ns/name" -> status
    backend_keys: AbstractSet[str]  # the EndpointSet keys the table uses
    # Per routed object, what refresh_endpoints needs to redo its status.
    routed: Mapping[str, _Routed] = field(default_factory=dict, repr=False, compare=False)
    # What changed from ``status_base`` (the statuses of the compile this one
    # built on) to ``statuses``: new or changed statuses, None for objects gone.
    # None when not known: compare everything.
    changed_statuses: Mapping[str, ObjectStatus | None] | None = field(default=None, repr=False, compare=False)
    status_base: Mapping[str, ObjectStatus] | None = field(default=None, repr=False, compare=False)
    # Built on the previous compile, redoing only what the changes touched
    # (controller/incremental.py); False for a compile from scratch.
    incremental: bool = field(default=False, repr=False, compare=False)


@dataclass(frozen=True)
class RefError:
    """Why a reference could not be used: a status reason and a message."""

    reason: str
    message: str


class _Invalid(Exception):
    """One object's problem: becomes its status; the object is left out."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message


# -- auth seam -----------------------------------------------------------------


def build_auth(
    spec_auth: Mapping[str, Any] | None,
    namespace: str,
    snapshot: Snapshot,
    *,
    auth_required: bool = False,
    defaults: AuthDefaults = NO_DEFAULTS,
    references: References | None = None,
) -> tuple[Any | None, RefError | None]:
    """The authenticator for a route's ``auth`` (or the default that ``authRequired`` means).

    The one place the compiler meets authentication; controller/authbuild.py
    does the work. Outcomes, and what the caller does with them:

    - ``(None, None)``: no auth on this route;
    - ``(authenticator, None)``: authenticate with it;
    - ``(unavailable, RefError)``: keep the route with an authenticator that
      answers 503 (fail closed: leaving it out could let its requests fall
      through to a broader route without auth), status Error with the reason;
    - ``(None, RefError)``: the ``auth`` spec is invalid: leave the route out.
    """
    authenticator, err = authbuild.build_auth(
        spec_auth, auth_required, namespace, snapshot, defaults, references=references
    )
    if err is None and authenticator is None and (spec_auth or auth_required):
        # Never serve a route that asked for auth without it.
        return None, RefError(AUTH_NOT_CONFIGURED, "auth could not be built")
    return authenticator, (RefError(*err) if err is not None else None)


# -- backends ------------------------------------------------------------------


def slice_service(raw: Mapping | None) -> str | None:
    """The "namespace/name" of the Service an EndpointSlice belongs to (its label), if any."""
    if not isinstance(raw, Mapping):
        return None
    meta = raw.get("metadata") or {}
    svc = (meta.get("labels") or {}).get(m.SERVICE_NAME_LABEL)
    return f"{meta.get('namespace') or ''}/{svc}" if svc else None


def slice_index(snapshot: Snapshot) -> dict[str, list[str]]:
    """Service "namespace/name" -> the keys of its EndpointSlices, sorted."""
    index: dict[str, list[str]] = {}
    for key, raw in snapshot.of(ENDPOINTSLICE).items():
        svc = slice_service(raw)
        if svc:
            index.setdefault(svc, []).append(key)
    for keys in index.values():
        keys.sort()
    return index


class _Services:
    """Per-compile view of Services and their EndpointSlices, parsed on demand.

    ``note`` hears of every Service looked up (an object's compile depends on
    it); ``slices``: the slice index if the caller keeps one (else built here
    on first use, one pass over every slice)."""

    def __init__(self, snapshot: Snapshot, note=None, slices: Mapping[str, list[str]] | None = None):
        self.snapshot = snapshot
        self.note = note
        self._services: dict[str, m.Service | None] = {}
        self._slices = slices

    def service(self, namespace: str, name: str) -> m.Service | None:
        key = f"{namespace}/{name}"
        if self.note is not None:
            self.note((SERVICE, key))
        if key not in self._services:
            self._services[key] = parse_service(self.snapshot.of(SERVICE).get(key))
        return self._services[key]

    def slices(self, namespace: str, name: str) -> list[m.EndpointSlice]:
        if self._slices is None:
            self._slices = slice_index(self.snapshot)
        objects = self.snapshot.of(ENDPOINTSLICE)
        out = []
        for key in self._slices.get(f"{namespace}/{name}", ()):
            raw = objects.get(key)
            if raw is None:
                continue
            try:
                out.append(m.EndpointSlice.model_validate(raw))
            except ValidationError:
                continue
        return out


def parse_service(raw: Mapping | None) -> m.Service | None:
    if raw is None:
        return None
    try:
        return m.Service.model_validate(raw)
    except ValidationError:
        return None  # the API server never sends one; a broken file is "not found"


def service_shape(raw: Mapping | None) -> tuple | None:
    """What of a Service the routes' backend keys depend on (``service_key``): its
    type and port numbers and names. Anything else (target ports, externalName)
    only moves endpoints."""
    svc = parse_service(raw)
    if svc is None:
        return None
    return svc.spec.type, tuple((p.name, p.port) for p in svc.spec.ports)


def _find_port(svc: m.Service, port: int | str | None) -> m.ServicePort | None:
    ports = svc.spec.ports
    if port is None:
        return ports[0] if ports else None
    for p in ports:
        if (p.port == port) if isinstance(port, int) else (p.name == port):
            return p
    return None


def service_key(namespace: str, name: str, port: int | str | None, services: _Services) -> str:
    """EndpointSet key "ns/svc:port": by the Service port number when the Service is known."""
    svc = services.service(namespace, name)
    if svc is not None:
        if svc.spec.type == "ExternalName":
            if isinstance(port, int):
                return f"{namespace}/{name}:{port}"
            sp = _find_port(svc, port)
            if sp is not None:
                return f"{namespace}/{name}:{sp.port}"
            if port is None:
                return f"{namespace}/{name}:80"
        else:
            sp = _find_port(svc, port)
            if sp is not None:
                return f"{namespace}/{name}:{sp.port}"
    return f"{namespace}/{name}" + ("" if port is None else f":{port}")


# A Service reference that no ReferenceGrant permits gets a key of its own: the
# Service's real EndpointSet (which routes of its own namespace may use) stays
# as it is, and this one is always "not found" (the proxy answers 500). No
# namespace contains ":", so it can never be taken for a Service key.
REFUSED_PREFIX = "refused:"


def refused_key(namespace: str, name: str, port: int | str | None) -> str:
    return f"{REFUSED_PREFIX}{namespace}/{name}" + ("" if port is None else f":{port}")


def is_service_key(key: str) -> bool:
    """True for "ns/svc:port" keys; False for URL backends and refused references."""
    return not key.startswith(("http://", "https://", REFUSED_PREFIX))


@lru_cache(maxsize=4096)
def url_key(url: str) -> str:
    u = urlsplit(url)
    return f"{u.scheme.lower()}://{u.netloc.lower()}"


def _parse_service_key(key: str) -> tuple[str, str, int | str | None]:
    namespace, _, rest = key.partition("/")
    name, sep, port = rest.partition(":")
    if not sep:
        return namespace, name, None
    return namespace, name, int(port) if port.isdigit() else port


def _resolve_url(key: str) -> tuple[EndpointSet, str]:
    u = urlsplit(key)
    tls = u.scheme == "https"
    port = u.port or (443 if tls else 80)
    ep = Endpoint(host=u.hostname or "", port=port, tls=tls)
    return EndpointSet(key=key, endpoints=(ep,), host_header=u.netloc), ""


def _resolve_service(key: str, services: _Services) -> tuple[EndpointSet, str]:
    namespace, name, port = _parse_service_key(key)
    svc = services.service(namespace, name)
    if svc is None:
        return EndpointSet(key=key, state=ENDPOINTS_NOT_FOUND), f"Service {namespace}/{name} not found"
    if svc.spec.type == "ExternalName":
        if not svc.spec.external_name:
            return EndpointSet(key=key, state=ENDPOINTS_NOT_FOUND), f"Service {namespace}/{name} has no externalName"
        if not isinstance(port, int):
            return EndpointSet(key=key, state=ENDPOINTS_NOT_FOUND), f"Service {namespace}/{name} has no port {port}"
        # A DNS name: the upstream resolves it when it connects.
        ep = Endpoint(host=svc.spec.external_name.rstrip("."), port=port)
        return EndpointSet(key=key, endpoints=(ep,)), ""
    sp = _find_port(svc, port)
    if sp is None:
        what = "any port" if port is None else f"port {port}"
        return EndpointSet(key=key, state=ENDPOINTS_NOT_FOUND), f"Service {namespace}/{name} has no {what}"
    target = sp.target_port if sp.target_port is not None else sp.port
    port_name = sp.name or ""
    seen: set[tuple[str, int]] = set()
    endpoints: list[Endpoint] = []
    for eps in services.slices(namespace, name):
        # Kubernetes names the slice port after the Service port; a hand-written
        # slice without names falls back to the target port number.
        slice_port = None
        for p in eps.ports:
            if (p.name or "") == port_name and p.port is not None and (p.protocol or "TCP") == "TCP":
                slice_port = p.port
                break
        if slice_port is None:
            if not isinstance(target, int):
                continue
            slice_port = target
        for ep in eps.endpoints:
            c = ep.conditions
            if c is not None and (c.ready is False or (c.ready is None and c.terminating)):
                continue
            if not ep.addresses:
                continue
            # Addresses of one endpoint are fungible; like kube-proxy, use the first.
            addr = (ep.addresses[0], slice_port)
            if addr not in seen:
                seen.add(addr)
                endpoints.append(Endpoint(host=addr[0], port=addr[1]))
    if not endpoints:
        return (
            EndpointSet(key=key, state=ENDPOINTS_NONE_READY),
            f"Service {namespace}/{name} port {sp.port} has no ready endpoints",
        )
    return EndpointSet(key=key, endpoints=tuple(endpoints), state=ENDPOINTS_OK), ""


def _resolve_all(
    snapshot: Snapshot, keys: Iterable[str], services: _Services | None = None
) -> dict[str, tuple[EndpointSet, str]]:
    services = services or _Services(snapshot)
    out: dict[str, tuple[EndpointSet, str]] = {}
    for key in sorted(keys):
        if key.startswith(("http://", "https://")):
            out[key] = _resolve_url(key)
        elif key.startswith(REFUSED_PREFIX):
            out[key] = EndpointSet(key=key, state=ENDPOINTS_NOT_FOUND), ""  # the object's ref_errors say why
        else:
            out[key] = _resolve_service(key, services)
    return out


def resolve_endpoints(snapshot: Snapshot, keys: Iterable[str]) -> dict[str, EndpointSet]:
    """EndpointSets for the keys a CompileResult uses: the cheap path for slice churn."""
    return {k: es for k, (es, _) in _resolve_all(snapshot, keys).items()}


# -- statuses ------------------------------------------------------------------


@lru_cache(maxsize=4096)
def _conditions(accepted: tuple[str, str, str], refs: tuple[str, str, str], ready: tuple[str, str, str]):
    return (
        Condition("Accepted", *accepted),
        Condition("ResolvedRefs", *refs),
        Condition("Ready", *ready),
    )


def _error_status(kind, namespace, name, generation, origin, reason, message) -> ObjectStatus:
    """An object left out of the table."""
    not_evaluated = ("Unknown", "NotEvaluated", "not checked: the object was not accepted")
    if reason in _ACCEPTED_REASONS:
        conds = _conditions(("False", reason, message), not_evaluated, ("False", reason, message))
    else:
        conds = _conditions(("True", "Accepted", "spec is valid"), ("False", reason, message), ("False", reason, message))
    return ObjectStatus(kind, namespace, name, ERROR, reason, message, generation, conds, origin)


def _routed_status(r: _Routed, resolved: Mapping[str, tuple[EndpointSet, str]]) -> ObjectStatus:
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
    conds = _conditions(accepted, refs, ready)
    return ObjectStatus(r.kind, r.namespace, r.name, state, reason, msg, r.generation, conds, r.origin)


# -- per-object compilation ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Candidate:
    """A compiled object waiting for conflict resolution (reused across compiles: never mutated)."""

    status_key: str
    routed: _Routed
    created: str
    owner: str  # "ns/name"
    routes: tuple[Route, ...]
    whole: bool  # APIEndpoint: all or nothing; Ingress: path by path
    fallback: Route | None = None


def _meta(obj: Mapping) -> tuple[str, str, int | None, str]:
    meta = obj.get("metadata") or {}
    created = meta.get("creationTimestamp") or ""
    if not isinstance(created, str):
        created = created.isoformat().replace("+00:00", "Z") if hasattr(created, "isoformat") else str(created)
    gen = meta.get("generation")
    return meta.get("namespace") or "", meta.get("name") or "", gen if isinstance(gen, int) else None, created


def _string_matches(specs: list[m.StringMatchSpec], lower: bool) -> tuple[StringMatch, ...]:
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


def _header_modifier(spec: m.HeaderModifierSpec | None) -> HeaderModifier | None:
    if spec is None or not (spec.set or spec.add or spec.remove):
        return None
    return HeaderModifier(
        set=tuple((h.name, h.value) for h in spec.set),
        add=tuple((h.name, h.value) for h in spec.add),
        remove=tuple(n.lower() for n in spec.remove),
    )


# Routes mostly share a handful of settings: build each distinct one once.
DEFAULT_TIMEOUTS = Timeouts()
DEFAULT_RETRIES = RetryPolicy()
_timeouts = lru_cache(maxsize=1024)(lambda request, backend: Timeouts(request=request, backend_request=backend))
_retries = lru_cache(maxsize=1024)(
    lambda attempts, codes, on_connect, backoff, non_idem: RetryPolicy(
        attempts=attempts, status_codes=codes, on_connect_failure=on_connect, backoff=backoff, non_idempotent=non_idem
    )
)
_rate_limit = lru_cache(maxsize=1024)(
    lambda rpm, burst, key, key_header, scope: RateLimitPolicy(
        requests_per_minute=rpm, burst=burst, key=key, key_header=key_header, scope=scope
    )
)


def _policy(spec: m.APIEndpointSpec, authenticator: Any, mirror_key: str | None) -> RoutePolicy:
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
    rewrite = None
    if spec.rewrite is not None:
        p = spec.rewrite.path
        rewrite = Rewrite(
            path_type=p.type if p else None,
            replace_prefix_match=p.replace_prefix_match if p else None,
            replace_full_path=p.replace_full_path if p else None,
            hostname=spec.rewrite.hostname.lower() if spec.rewrite.hostname else None,
        )
    redirect = None
    if spec.redirect is not None:
        d, p = spec.redirect, spec.redirect.path
        redirect = Redirect(
            scheme=d.scheme,
            hostname=d.hostname.lower() if d.hostname else None,
            port=d.port,
            path_type=p.type if p else None,
            replace_prefix_match=p.replace_prefix_match if p else None,
            replace_full_path=p.replace_full_path if p else None,
            status_code=d.status_code,
        )
    timeouts = DEFAULT_TIMEOUTS
    if spec.timeouts is not None:
        t = spec.timeouts
        request = DEFAULT_TIMEOUTS.request if t.request is None else (t.request or None)  # 0 = no limit
        timeouts = _timeouts(request, t.backend_request or None)
    retries = DEFAULT_RETRIES
    if spec.retries is not None:
        r = spec.retries
        retries = _retries(
            r.attempts,
            frozenset(r.status_codes) if r.status_codes is not None else DEFAULT_RETRIES.status_codes,
            r.on_connect_failure,
            r.backoff if r.backoff is not None else DEFAULT_RETRIES.backoff,
            r.non_idempotent,
        )
    cors = None
    if spec.cors is not None:
        c = spec.cors
        cors = CorsPolicy(
            allow_origins=tuple(c.allow_origins),
            allow_methods=tuple(x.upper() for x in c.allow_methods),
            allow_headers=tuple(c.allow_headers),
            expose_headers=tuple(c.expose_headers),
            allow_credentials=c.allow_credentials,
            max_age=c.max_age,
        )
    rate_limit = None
    if spec.rate_limit is not None:
        rl = spec.rate_limit
        key_header = rl.key_header.lower() if rl.key_header else None
        rate_limit = _rate_limit(rl.requests_per_minute, rl.burst, rl.key, key_header, rl.scope)
    mirror = None
    if mirror_key is not None and spec.mirror is not None:
        mirror = Mirror(backend=BackendRef(mirror_key), percent=spec.mirror.percent)
    return RoutePolicy(
        auth=authenticator,
        rate_limit=rate_limit,
        rewrite=rewrite,
        request_headers=_header_modifier(spec.request_headers),
        response_headers=_header_modifier(spec.response_headers),
        redirect=redirect,
        timeouts=timeouts,
        retries=retries,
        cors=cors,
        max_body_bytes=spec.max_body_bytes,
        load_balancer=spec.load_balancer,
        mirror=mirror,
        https_redirect=spec.https_redirect,
    )


def _target_key(
    t: m.BackendTargetSpec,
    namespace: str,
    services: _Services,
    refs: References,
    where: str,
    refused: list[tuple[str, str]],
) -> str:
    """The EndpointSet key of a backend; a refused one is added to ``refused`` as (reason, message)."""
    if t.url is not None:
        return url_key(t.url)
    assert t.service is not None
    ns, name = t.service.namespace or namespace, t.service.name
    if not refs.permitted(CORE_GROUP, SERVICE, ns, name):
        refused.append((REF_NOT_PERMITTED, f"{refs.refusal(SERVICE, ns, name)} ({where})"))
        return refused_key(ns, name, t.service.port)  # the Service itself is not even looked up
    return service_key(ns, name, t.service.port, services)


@lru_cache(maxsize=4096)
def _backend_ref(key: str, weight: int = 1) -> BackendRef:
    """Routes to one backend share one BackendRef (and its key string)."""
    return BackendRef(key, weight)


@lru_cache(maxsize=4096)
def _one(value: Any) -> tuple:
    """A one-element tuple, shared: most routes have one backend."""
    return (value,)


def _lower(host: str) -> str:
    low = host.lower()
    return host if low == host else low  # keep the object's own string when it is already lower-case


class _Reads:
    """Where the dependencies of the object being compiled are noted (a separate
    object, so that the compiler's helpers do not hold the compiler in a cycle)."""

    __slots__ = ("deps",)

    def __init__(self) -> None:
        self.deps: set[tuple[str, str]] | None = None

    def note(self, dep: tuple[str, str]) -> None:
        if self.deps is not None:
            self.deps.add(dep)


class _Tracked:
    """The snapshot as one object's compile sees it: every Secret (or whole kind) it
    reads is noted, so that the object is compiled again when that changes.
    Namespace-default auth notes itself (controller/authbuild.py ``resolve_default``)."""

    def __init__(self, snapshot: Snapshot, note):
        self.untracked = snapshot
        self.note = note

    @property
    def objects(self):
        return self.untracked.objects

    @property
    def origins(self):
        return self.untracked.origins

    def of(self, kind: str):
        self.note((kind, "*"))
        return self.untracked.of(kind)

    def get(self, kind: str, namespace: str, name: str):
        self.note((kind, f"{namespace}/{name}"))
        return self.untracked.get(kind, namespace, name)


@contextmanager
def _gc_paused():
    """A compile allocates many small objects but no cycles worth collecting midway;
    the cyclic collector's full passes over them would cost about a third of the time."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class _Compiler:
    """Compiles one object at a time against one snapshot (``build``)."""

    def __init__(self, snapshot: Snapshot, options: CompileOptions, slices: Mapping[str, list[str]] | None = None):
        self.snapshot = snapshot
        self.options = options
        self._reads = _Reads()
        self.services = _Services(snapshot, self._reads.note, slices)
        self.tracked = _Tracked(snapshot, self._reads.note)
        self._default_class: bool | None = None
        self._grants: ReferenceGrants | None = None
        self._references: dict[tuple[str, str], References] = {}

    def grants(self) -> ReferenceGrants:
        """The snapshot's ReferenceGrants, indexed on the first cross-namespace question."""
        if self._grants is None:
            self._grants = grants_of(self.snapshot)
        return self._grants

    def references(self, group: str, kind: str, namespace: str) -> References:
        """What an object of ``kind`` in ``namespace`` may refer to; asking notes the dependency."""
        refs = self._references.get((kind, namespace))
        if refs is None:
            refs = self._references[(kind, namespace)] = References(
                Referrer(group, kind, namespace),
                self.grants,
                allow_all=self.options.allow_cross_namespace_refs,
                note=self._reads.note,
            )
        return refs

    def origin(self, kind: str, key: str) -> str | None:
        return self.snapshot.origins.get(f"{kind}:{key}")

    def build(
        self, kind: str, key: str, obj: Mapping, status_key: str | None = None
    ) -> tuple["_Candidate | ObjectStatus | None", frozenset]:
        """One object -> its candidate (waiting for conflicts to be settled), its
        error status (left out), or None (not this gateway's); and what else it
        read: ``(kind, "namespace/name")`` of the Services and Secrets it looked
        up, ``(kind, "*")`` for whole kinds, namespace-default auth."""
        self._reads.deps = reads = set()
        status_key = status_key or f"{kind}:{key}"
        try:
            if kind == INGRESS:
                reads.add((INGRESSCLASS, "*"))  # the default class decides which Ingresses are ours
                return self.ingress(key, obj, status_key), frozenset(reads)
            return self.apiendpoint(key, obj, status_key), frozenset(reads)
        except _Invalid as e:
            ns, name, gen, _ = _meta(obj)
            status = _error_status(kind, ns, name, gen, self.origin(kind, key), e.reason, e.message)
        except Exception as e:  # a bug must cost one object, not the table
            ns, name, gen, _ = _meta(obj) if isinstance(obj, Mapping) else ("", key, None, "")
            msg = f"could not compile: {type(e).__name__}: {e}"
            status = _error_status(kind, ns, name, gen, self.origin(kind, key), INVALID_SPEC, msg)
        finally:
            self._reads.deps = None
        return status, frozenset(reads)

    # -- APIEndpoint ---------------------------------------------------------

    def apiendpoint(self, key: str, obj: Mapping, status_key: str) -> _Candidate | None:
        namespace, name, generation, created = _meta(obj)
        spec_raw = obj.get("spec")
        if isinstance(spec_raw, Mapping):
            cls = spec_raw.get("ingressClassName")
            if isinstance(cls, str) and cls != self.options.ingress_class:
                return None  # another gateway's route
        elif spec_raw is None:
            raise _Invalid(INVALID_SPEC, "spec: required field is missing")
        else:
            raise _Invalid(INVALID_SPEC, f"spec: expected an object, got {type(spec_raw).__name__}")
        try:
            spec = m.APIEndpointSpec.model_validate(spec_raw)
        except ValidationError as e:
            raise _Invalid(INVALID_SPEC, "; ".join(m.describe_errors(e, "spec"))) from None

        refs = self.references(APIENDPOINT_GROUP, APIENDPOINT, namespace)
        authenticator = None
        ref_errors: tuple[tuple[str, str], ...] = ()
        if spec.auth is not None or spec.auth_required:
            authenticator, err = build_auth(
                spec_raw.get("auth"),
                namespace,
                self.tracked,
                auth_required=spec.auth_required,
                defaults=self.options.auth_defaults,
                references=refs,
            )
            if err is not None:
                if authenticator is None:
                    raise _Invalid(err.reason, err.message)
                ref_errors = ((err.reason, err.message),)

        backends: list[BackendRef] = []
        refused: list[tuple[str, str]] = []  # (RefNotPermitted, message) per refused backend
        if spec.backend_service is not None:
            backends.append(_backend_ref(service_key(namespace, spec.backend_service, None, self.services)))
        for i, b in enumerate(spec.backends or ()):
            target = _target_key(b, namespace, self.services, refs, f"spec.backends[{i}]", refused)
            backends.append(_backend_ref(target, b.weight))
        mirror_key = None
        if spec.mirror:
            mirror_key = _target_key(spec.mirror.backend, namespace, self.services, refs, "spec.mirror.backend", refused)
        if refused:
            ref_errors = (*refused, *ref_errors)
        origin = self.origin(APIENDPOINT, key)

        path_type = spec.path_type
        route = Route(
            name=key,  # "namespace/name", the store's own string
            kind=APIENDPOINT,
            path=spec.path,
            path_type=path_type,
            hosts=tuple(_lower(h) for h in spec.hosts),
            methods=spec.method_set,
            headers=_string_matches(spec.headers, lower=True),
            query=_string_matches(spec.query_params, lower=False),
            backends=_one(backends[0]) if len(backends) == 1 else tuple(backends),
            policy=_policy(spec, authenticator, mirror_key),
            created=created,
            regex=m.compile_regex(spec.path) if path_type == PATH_REGEX else None,
        )
        if len(backends) == 1 and backends[0].weight > 0 and mirror_key is None:
            traffic, extra = _one(backends[0].key), ()  # the seed form: keep the common case cheap
        else:
            # Weight 0 takes no traffic, so it cannot make the route unready; it must still exist.
            traffic = tuple(dict.fromkeys(b.key for b in backends if b.weight > 0))
            extra = tuple(dict.fromkeys([b.key for b in backends if b.weight == 0] + ([mirror_key] if mirror_key else [])))
        routed = _Routed(
            kind=APIENDPOINT,
            namespace=namespace,
            name=name,
            generation=generation,
            origin=origin,
            backends=traffic,
            extra_refs=extra,
            ref_errors=ref_errors,
        )
        return _Candidate(status_key, routed, created, key, (route,), whole=True)

    # -- Ingress -------------------------------------------------------------

    def _class_is_default(self) -> bool:
        if self._default_class is None:
            self._default_class = False
            raw = self.snapshot.of(INGRESSCLASS).get(f"/{self.options.ingress_class}")
            if raw is not None:
                try:
                    ic = m.IngressClass.model_validate(raw)
                    self._default_class = ic.is_default and ic.spec.controller == self.options.controller_name
                except ValidationError:
                    pass
        return self._default_class

    def ingress_is_ours(self, obj: Mapping) -> bool:
        if not isinstance(obj.get("spec") or {}, Mapping):
            return False
        # The default class is looked up only for Ingresses that name no class.
        spec = obj.get("spec") or {}
        annotations = (obj.get("metadata") or {}).get("annotations") or {}
        needs_default = not spec.get("ingressClassName") and not annotations.get(m.LEGACY_CLASS_ANNOTATION)
        return owns_ingress(obj, self.options.ingress_class, needs_default and self._class_is_default())

    def _ingress_backend(self, b: m.IngressBackend, namespace: str) -> str:
        if b.service is None:
            raise ValueError("only service backends are supported (resource backends are not)")
        port = b.service.port
        ref: int | str | None = None
        if port is not None:
            ref = port.number if port.number is not None else port.name
        return service_key(namespace, b.service.name, ref, self.services)

    def ingress(self, key: str, obj: Mapping, status_key: str) -> _Candidate | None:
        if not self.ingress_is_ours(obj):
            return None
        namespace, name, generation, created = _meta(obj)
        try:
            ing = m.Ingress.model_validate(obj)
        except ValidationError as e:
            raise _Invalid(INVALID_SPEC, "; ".join(m.describe_errors(e, ""))) from None
        owner = key  # "namespace/name", the store's own string
        authenticator, err = authbuild.build_ingress_auth(
            ing.metadata.annotations,
            namespace,
            self.tracked,
            self.options.auth_defaults,
            references=self.references(INGRESS_GROUP, INGRESS, namespace),
        )
        try:
            # Checked before auth's own error: a mistyped crdgate.io/auth-* name is named here.
            # An invalid auth spec still counts as auth (no second message about a Consumer key).
            policy = ingress_policy(ing.metadata.annotations, has_auth=authenticator is not None or err is not None)
        except AnnotationError as e:
            raise _Invalid(INVALID_SPEC, str(e)) from None
        if err is not None and authenticator is None:
            raise _Invalid(err[0], err[1])
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
                    backend_key = self._ingress_backend(p.backend, namespace)
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
                        backends=_one(_backend_ref(backend_key)),
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
                    backends=_one(_backend_ref(self._ingress_backend(ing.spec.default_backend, namespace))),
                    policy=policy,
                    created=created,
                    rule="defaultBackend",
                )
            except ValueError as e:
                problems.append((INVALID_SPEC, f"spec.defaultBackend: {e}"))
        if not routes and fallback is None:
            if problems:
                raise _Invalid(INVALID_SPEC, "; ".join(msg for _, msg in problems))
            raise _Invalid(INVALID_SPEC, "spec: no rules with paths and no defaultBackend")
        routed = _Routed(
            kind=INGRESS,
            namespace=namespace,
            name=name,
            generation=generation,
            origin=self.origin(INGRESS, key),
            backends=(),
            extra_refs=(),
            problems=tuple(problems),
            ref_errors=ref_errors,
        )
        return _Candidate(status_key, routed, created, owner, tuple(routes), whole=False, fallback=fallback)


# -- conflicts -------------------------------------------------------------------


def match_keys(r: Route) -> list[tuple]:
    """What a route claims, once per host: two routes with a key in common claim
    exactly the same match, and only the older keeps it."""
    path = r.prefix_key if r.path_type == PATH_PREFIX else r.path
    # () rather than an empty frozenset: one is kept per route in the compiler's index.
    headers = frozenset((h.name, h.value, h.regex is not None) for h in r.headers) if r.headers else ()
    query = frozenset((q.name, q.value, q.regex is not None) for q in r.query) if r.query else ()
    return [
        (host, r.wildcard_single_label, r.path_type, path, r.methods, headers, query) for host in (r.hosts or ("",))
    ]


def candidate_order(c: _Candidate) -> tuple:
    """The order in which candidates claim matches: the oldest first."""
    return (c.created, c.owner, c.status_key)


def _winner_text(winner: _Candidate, winner_rule: str, loser: _Candidate) -> str:
    if winner is loser:
        return f"{winner_rule} of the same object"
    age = "older" if winner.created < loser.created else "same age, first by namespace/name"
    return f"{winner.owner} ({age})"


def settle(
    cand: _Candidate,
    route_keys: list[list[tuple]],
    claimed: dict[tuple, tuple[_Candidate, str]],
    fallback_owner: _Candidate | None,
) -> tuple[tuple[Route, ...], _Routed | None, ObjectStatus | None]:
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
            return (), None, _error_status(
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
        return (), None, _error_status(
            r0.kind, r0.namespace, r0.name, r0.generation, r0.origin, problems[0][0], "; ".join(p[1] for p in problems)
        )
    keys = tuple(dict.fromkeys(b.key for r in used for b in r.backends))
    info = r0._replace(backends=keys, problems=tuple(problems), routes=len(used))
    return tuple(kept), info, None


# -- entry points ------------------------------------------------------------------


def compile_snapshot(snapshot: Snapshot, options: CompileOptions = CompileOptions(), generation: int = 0) -> CompileResult:
    """The routing table and a status for every object this gateway owns, from scratch."""
    from controller.incremental import Compiler  # it builds on this module

    return Compiler(options).compile(snapshot, options, generation)


def refresh_endpoints(previous: CompileResult, snapshot: Snapshot, generation: int) -> CompileResult:
    """Same routes, endpoints and readiness statuses redone: for EndpointSlice-only changes.

    Stateless (every backend is resolved again); the publisher's ``Compiler``
    does the same for only the backends whose Service or slices changed."""
    resolved = _resolve_all(snapshot, previous.backend_keys)
    statuses = dict(previous.statuses)
    for key, info in previous.routed.items():
        statuses[key] = _routed_status(info, resolved)
    table = previous.table.with_endpoints({k: es for k, (es, _) in resolved.items()}, generation)
    return CompileResult(table=table, statuses=statuses, backend_keys=table.endpoints.keys(), routed=previous.routed)
