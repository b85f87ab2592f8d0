"""What one object's compile sees: the snapshot, the options, and what it read.

Neighbours: ``ObjectContext`` is handed to each per-kind step
(apiendpoint.py, ingress.py, httproute.py), which returns a
``Candidate`` (waiting for conflicts.py) or raises ``InvalidObject``
(gateway/errors.py) to be left out with an error status; objects.py runs the
steps and turns what the context noted (``Reads``) into the object's
dependencies, which the incremental driver (incremental.py) indexes.
"""

from __future__ import annotations

import gc
from collections.abc import Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from controller import authbuild
from controller import models as m
from controller.compile.backends import Services
from controller.compile.options import CompileOptions
from controller.compile.status import AUTH_NOT_CONFIGURED, RefError, Routed
from controller.refgrant import References, ReferenceGrants, Referrer, grants_of
from controller.store import Snapshot
from gateway.routing import Route


@dataclass(frozen=True, slots=True)
class Candidate:
    """A compiled object waiting for conflict resolution (reused across compiles: never mutated)."""

    status_key: str
    routed: Routed
    created: str
    owner: str  # "ns/name"
    routes: tuple[Route, ...]
    whole: bool  # APIEndpoint: all or nothing; Ingress: path by path
    fallback: Route | None = None


def object_meta(obj: Mapping) -> tuple[str, str, int | None, str]:
    """(namespace, name, generation, creationTimestamp as a string) of a plain object."""
    meta = obj.get("metadata") or {}
    created = meta.get("creationTimestamp") or ""
    if not isinstance(created, str):
        created = created.isoformat().replace("+00:00", "Z") if hasattr(created, "isoformat") else str(created)
    gen = meta.get("generation")
    return meta.get("namespace") or "", meta.get("name") or "", gen if isinstance(gen, int) else None, created


def lower_host(host: str) -> str:
    low = host.lower()
    return host if low == host else low  # keep the object's own string when it is already lower-case


class Reads:
    """Where the dependencies of the object being compiled are noted (a separate
    object, so that the compiler's helpers do not hold the compiler in a cycle)."""

    __slots__ = ("deps",)

    def __init__(self) -> None:
        self.deps: set[tuple[str, str]] | None = None

    def note(self, dep: tuple[str, str]) -> None:
        if self.deps is not None:
            self.deps.add(dep)


class Tracked:
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
def gc_paused():
    """A compile allocates many small objects but no cycles worth collecting midway;
    the cyclic collector's full passes over them would cost about a third of the time."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class ObjectContext:
    """One snapshot as the per-kind steps see it, one object at a time.

    ``reads`` collects what the object being compiled looked up (objects.py
    sets it up around each object); ``services`` and ``tracked`` note into it."""

    def __init__(self, snapshot: Snapshot, options: CompileOptions, slices: Mapping[str, list[str]] | None = None):
        self.snapshot = snapshot
        self.options = options
        self.reads = Reads()
        self.services = Services(snapshot, self.reads.note, slices)
        self.tracked = Tracked(snapshot, self.reads.note)
        self.default_class: bool | None = None  # is our IngressClass the default? (ingress.py, once per compile)
        # Our GatewayClass names and the parsed Gateways, once per compile (gateways.py).
        self.gateway_classes: frozenset[str] | None = None
        self.gateways: dict[str, Any] = {}
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
                note=self.reads.note,
            )
        return refs

    def origin(self, kind: str, key: str) -> str | None:
        return self.snapshot.origins.get(f"{kind}:{key}")

    def build_auth(
        self,
        auth: m.AuthSpec | None,
        namespace: str,
        references: References,
        *,
        auth_required: bool = False,
        field: str = "spec.auth",
    ) -> tuple[Any | None, RefError | None]:
        """The authenticator for a route's validated ``auth`` (or the default that ``authRequired`` means).

        The one place the compiler meets authentication; controller/authbuild.py
        does the work. Outcomes, and what the caller does with them:

        - ``(None, None)``: no auth on this route;
        - ``(authenticator, None)``: authenticate with it;
        - ``(unavailable, RefError)``: keep the route with an authenticator that
          answers 503 (fail closed: leaving it out could let its requests fall
          through to a broader route without auth), status Error with the reason.
        """
        authenticator, err = authbuild.build_auth(
            auth,
            auth_required,
            namespace,
            self.tracked,
            self.options.auth_defaults,
            field=field,
            references=references,
        )
        if err is None and authenticator is None and (auth is not None or auth_required):
            # Never serve a route that asked for auth without it.
            return None, RefError(AUTH_NOT_CONFIGURED, "auth could not be built")
        return authenticator, (RefError(*err) if err is not None else None)
