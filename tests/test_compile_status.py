"""Statuses: state, message, observedGeneration and the three conditions, as the writer sends them."""

from __future__ import annotations

from controller.compile import compile_snapshot
from kobjects import apiendpoint, backend, snapshot


def test_ready_status_dict():
    st = compile_snapshot(snapshot(apiendpoint("r", {"path": "/r", "backendService": "users"}, generation=5), *backend())).statuses[
        "APIEndpoint:shop/r"
    ]
    assert (st.kind, st.namespace, st.name, st.generation) == ("APIEndpoint", "shop", "r", 5)
    assert st.to_status_dict() == {
        "state": "Ready",
        "message": "routed",
        "observedGeneration": 5,
        "conditions": [
            {"type": "Accepted", "status": "True", "reason": "Accepted", "message": "spec is valid", "observedGeneration": 5},
            {"type": "ResolvedRefs", "status": "True", "reason": "ResolvedRefs", "message": "all references resolved", "observedGeneration": 5},
            {"type": "Ready", "status": "True", "reason": "Ready", "message": "routed", "observedGeneration": 5},
        ],
    }


def test_invalid_status_dict():
    st = compile_snapshot(snapshot(apiendpoint("r", {"path": "/r"}, generation=2))).statuses["APIEndpoint:shop/r"]
    d = st.to_status_dict()
    assert d["state"] == "Error" and d["observedGeneration"] == 2
    assert d["message"] == "spec.backendService: set backendService, backends or redirect"
    assert [(c["type"], c["status"], c["reason"]) for c in d["conditions"]] == [
        ("Accepted", "False", "InvalidSpec"),
        ("ResolvedRefs", "Unknown", "NotEvaluated"),
        ("Ready", "False", "InvalidSpec"),
    ]
    assert "lastTransitionTime" not in str(d)


def test_status_keys_and_order_are_stable():
    objs = [apiendpoint(n, {"path": f"/{n}", "backendService": "users"}) for n in ("b", "a", "c")]
    statuses = compile_snapshot(snapshot(*objs, *backend())).statuses
    assert list(statuses) == ["APIEndpoint:shop/a", "APIEndpoint:shop/b", "APIEndpoint:shop/c"]
    assert all(key == st.key for key, st in statuses.items())
