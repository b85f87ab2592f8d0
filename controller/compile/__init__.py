"""The compiler: a store snapshot -> an immutable RouteTable and a status per object.

Pure: no I/O, inputs never mutated, never raises for one bad object. The
steps, one module each (they import one another directly, never this file):

- status.py      statuses and reasons (ObjectStatus, Condition, READY ... InvalidSpec)
- backends.py    Services and EndpointSlices -> EndpointSets (cross-namespace
                 references checked through controller/refgrant.py)
- policies.py    route policies from the spec models, shared by APIEndpoint
                 fields and Ingress annotations (controller/compile/annotations.py)
- context.py     what one object's compile sees and notes (its dependencies)
- apiendpoint.py, ingress.py, httproute.py   one object of each kind -> a candidate
- gateways.py    which Gateways are ours and where an HTTPRoute attaches (per parentRef)
- listeners.py   our GatewayClasses' and Gateways' statuses (listeners, attached routes)
- objects.py     runs the step of an object's kind, one bad object costs only itself
- conflicts.py   the older of two identical claims wins; the other is Conflicted
- full.py        every object from scratch (``compile_snapshot``)
- incremental.py the driver the publisher keeps (``Compiler``): redo what a change touched
- result.py      ``CompileResult``; ``refresh_endpoints`` for EndpointSlice churn

Callers (controller/publish.py, report.py, certs.py, the command line, bench/)
use the names below.
"""

from controller.compile.backends import resolve_endpoints
from controller.compile.full import compile_snapshot
from controller.compile.incremental import Compiler
from controller.compile.options import CompileOptions
from controller.compile.result import CompileResult, refresh_endpoints
from controller.compile.status import (
    AUTH_NOT_CONFIGURED,
    BACKEND_NOT_FOUND,
    CONFLICTED,
    ERROR,
    INVALID_SPEC,
    NO_READY_ENDPOINTS,
    PENDING,
    READY,
    SECRET_NOT_FOUND,
    Condition,
    ObjectStatus,
)

__all__ = [
    "AUTH_NOT_CONFIGURED",
    "BACKEND_NOT_FOUND",
    "CONFLICTED",
    "ERROR",
    "INVALID_SPEC",
    "NO_READY_ENDPOINTS",
    "PENDING",
    "READY",
    "SECRET_NOT_FOUND",
    "CompileOptions",
    "CompileResult",
    "Compiler",
    "Condition",
    "ObjectStatus",
    "compile_snapshot",
    "refresh_endpoints",
    "resolve_endpoints",
]
