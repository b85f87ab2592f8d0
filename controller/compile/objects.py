"""Per-object compilation: one object and what it read -> a candidate or an error status.

Neighbours: runs the step of the object's kind (apiendpoint.py, ingress.py,
httproute.py, grpcroute.py) against an ``ObjectContext`` (context.py). Both
the full compile (full.py) and the incremental driver (incremental.py) call
``ObjectCompiler.build`` for each object they compile; the driver also keeps
what each object read, to compile it again when that changes.

Fault isolation: each object is compiled inside its own ``try``. A bad one
(``InvalidObject``) gets an ``Error`` status naming the field; anything else
is a bug and costs that one object, never the table.
"""

from __future__ import annotations

from collections.abc import Mapping

from controller.compile.apiendpoint import compile_apiendpoint
from controller.compile.context import Candidate, ObjectContext, object_meta
from controller.compile.grpcroute import compile_grpcroute
from controller.compile.httproute import compile_httproute
from controller.compile.ingress import compile_ingress
from controller.compile.status import INVALID_SPEC, ObjectStatus, error_status
from controller.store import GRPCROUTE, HTTPROUTE, INGRESS, INGRESSCLASS
from gateway.errors import InvalidObject

Outcome = Candidate | ObjectStatus | None  # a candidate, left out with an error, or not ours


class ObjectCompiler(ObjectContext):
    """Compiles one object at a time against one snapshot (``build``)."""

    def build(self, kind: str, key: str, obj: Mapping, status_key: str | None = None) -> tuple[Outcome, frozenset]:
        """One object -> its candidate (waiting for conflicts to be settled), its
        error status (left out), or None (not this gateway's); and what else it
        read: ``(kind, "namespace/name")`` of the Services and Secrets it looked
        up, ``(kind, "*")`` for whole kinds, namespace-default auth."""
        self.reads.deps = reads = set()
        status_key = status_key or f"{kind}:{key}"
        try:
            if kind == INGRESS:
                reads.add((INGRESSCLASS, "*"))  # the default class decides which Ingresses are ours
                return compile_ingress(self, key, obj, status_key), frozenset(reads)
            if kind == HTTPROUTE:
                return compile_httproute(self, key, obj, status_key), frozenset(reads)
            if kind == GRPCROUTE:
                return compile_grpcroute(self, key, obj, status_key), frozenset(reads)
            return compile_apiendpoint(self, key, obj, status_key), frozenset(reads)
        except InvalidObject as e:
            ns, name, gen, _ = object_meta(obj)
            status = error_status(kind, ns, name, gen, self.origin(kind, key), e.reason, e.message)
        except Exception as e:  # a bug must cost one object, not the table
            ns, name, gen, _ = object_meta(obj) if isinstance(obj, Mapping) else ("", key, None, "")
            msg = f"could not compile: {type(e).__name__}: {e}"
            status = error_status(kind, ns, name, gen, self.origin(kind, key), INVALID_SPEC, msg)
        finally:
            self.reads.deps = None
        return status, frozenset(reads)
