"""What the controller knows, handed to the data plane's admin dashboard as plain data.

The dashboard (gateway/dashboard.py) shows every object's state and
conditions, the source's load errors and the compile's health, but the data
plane never imports the controller. The front door, which holds both halves,
sets ``Server.control_plane`` to the callable built here: it reads the
publisher and the source when a page polls and answers with dicts, lists and
strings only.

Statuses are converted once per published set (the publisher never changes a
set it handed out, so its identity says whether anything changed), and at most
``MAX_OBJECTS`` are sent, those needing attention first.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

from controller.compile import ObjectStatus
from controller.files import ManifestSource
from controller.publish import Publisher

MAX_OBJECTS = 1000
_ORDER = {"Error": 0, "Pending": 1, "Ready": 2}


def status_row(st: ObjectStatus) -> dict:
    """One object's status: what ``kubectl get -o yaml`` would show under ``status``, plus where it came from."""
    return {
        "kind": st.kind,
        "namespace": st.namespace,
        "name": st.name,
        "state": st.state,
        "reason": st.reason,
        "message": st.message,
        "origin": st.origin,
        "conditions": [{"type": c.type, "status": c.status, "reason": c.reason, "message": c.message}
                       for c in st.conditions],
    }


def control_plane_view(publisher: Publisher, folder: ManifestSource | None,
                       rate_limit: Mapping[str, Any] | None = None) -> Callable[[], dict]:
    """``folder``: the manifests source, whose load errors are shown (None: the Kubernetes API,
    where the API server refuses a malformed object before crdgate sees it)."""
    cache: dict[str, Any] = {"of": None, "rows": [], "counts": {}}

    def objects(statuses: Mapping[str, ObjectStatus]) -> tuple[list[dict], dict]:
        if cache["of"] is not statuses:
            ordered = sorted(statuses.values(), key=lambda s: (_ORDER.get(s.state, 3), s.kind, s.namespace, s.name))
            counts: dict[str, int] = {}
            for s in ordered:
                counts[s.state] = counts.get(s.state, 0) + 1
            cache.update(of=statuses, rows=[status_row(s) for s in ordered[:MAX_OBJECTS]], counts=counts)
        return cache["rows"], cache["counts"]

    def view() -> dict:
        rows, counts = objects(publisher.last_statuses)
        errors = folder.errors if folder is not None else ()
        return {
            "objects": rows,
            "loadErrors": [{**e.to_json(), "text": str(e)} for e in errors],
            "controller": {
                "objectCounts": counts,
                "objectsShown": len(rows),
                "compiles": publisher.compiles,
                "endpointUpdates": publisher.refreshes,
                "compileFailures": publisher.failures,
            },
            "rateLimit": dict(rate_limit or {}),
        }

    return view
