"""One bad object must not break everyone: it gets an Error status naming the field; the rest route."""

from __future__ import annotations

import controller.compile.apiendpoint as apiendpoint_step
from controller.compile import compile_snapshot
from kobjects import apiendpoint, backend, ingress, path, snapshot

GOOD = apiendpoint("good", {"path": "/good", "backendService": "users"})


def routed(result) -> set[str]:
    return {r.name for r in result.table.routes}


def test_invalid_spec_is_isolated_and_names_the_field():
    bad = apiendpoint("bad", {"path": "/bad", "backendService": "users", "timeouts": {"request": "soon"}}, generation=4)
    result = compile_snapshot(snapshot(GOOD, bad, *backend()), generation=3)
    st = result.statuses["APIEndpoint:shop/bad"]
    assert (st.state, st.reason, st.generation) == ("Error", "InvalidSpec", 4)
    assert st.message.startswith("spec.timeouts.request: invalid duration 'soon'")
    assert routed(result) == {"shop/good"}
    assert result.table.generation == 3
    assert result.table.match("GET", "h", "/good").route is not None


def test_garbage_objects_are_isolated():
    no_spec = {"kind": "APIEndpoint", "metadata": {"name": "nospec", "namespace": "shop"}}
    list_spec = {"kind": "APIEndpoint", "metadata": {"name": "listspec", "namespace": "shop"}, "spec": ["x"]}
    bad_ing = ingress("bad-ing", {"rules": [{"http": {"paths": [{"path": "/x", "backend": {}}]}}]})
    result = compile_snapshot(snapshot(GOOD, no_spec, list_spec, bad_ing, *backend()))
    assert result.statuses["APIEndpoint:shop/nospec"].message == "spec: required field is missing"
    assert result.statuses["APIEndpoint:shop/listspec"].message == "spec: expected an object, got list"
    assert result.statuses["Ingress:shop/bad-ing"].message == "spec.rules[0].http.paths[0].pathType: required field is missing"
    assert routed(result) == {"shop/good"}


def test_an_unexpected_error_costs_one_object(monkeypatch):
    real = apiendpoint_step.route_policy

    def exploding(spec, *a, **kw):
        if spec.path == "/boom":
            raise RuntimeError("kaboom")
        return real(spec, *a, **kw)

    monkeypatch.setattr(apiendpoint_step, "route_policy", exploding)
    boom = apiendpoint("boom", {"path": "/boom", "backendService": "users"})
    result = compile_snapshot(snapshot(GOOD, boom, *backend()))
    st = result.statuses["APIEndpoint:shop/boom"]
    assert (st.state, st.reason) == ("Error", "InvalidSpec")
    assert st.message == "could not compile: RuntimeError: kaboom"
    assert routed(result) == {"shop/good"}


def test_bad_ingress_path_leaves_out_that_path_only():
    spec = {"rules": [{"http": {"paths": [
        {"path": "/x", "pathType": "Prefix", "backend": {"resource": {"kind": "Bucket", "name": "b"}}},
        path("/ok", "users"),
    ]}}]}
    result = compile_snapshot(snapshot(ingress("mixed", spec), *backend()))
    st = result.statuses["Ingress:shop/mixed"]
    assert st.state == "Error" and st.reason == "InvalidSpec"
    assert "spec.rules[0].paths[0].backend: only service backends are supported" in st.message
    assert [r.rule for r in result.table.routes] == ["rules[0].paths[1]"]


def test_origin_is_carried_into_the_status():
    bad = apiendpoint("bad", {"path": "bad", "backendService": "users"})
    result = compile_snapshot(snapshot(bad, origins={"APIEndpoint:shop/bad": "/manifests/users.yaml"}))
    assert result.statuses["APIEndpoint:shop/bad"].origin == "/manifests/users.yaml"


def test_other_classes_are_ignored_without_status():
    theirs = apiendpoint("theirs", {"ingressClassName": "nginx", "path": "/t", "backendService": "users", "bogus": True})
    their_ing = ingress("their-ing", {"rules": [{"http": {"paths": [path("/i", "users")]}}]}, class_name="nginx")
    result = compile_snapshot(snapshot(GOOD, theirs, their_ing, *backend()))
    assert set(result.statuses) == {"APIEndpoint:shop/good"}
    assert routed(result) == {"shop/good"}


def test_explicit_own_class_is_routed():
    ours = apiendpoint("ours", {"ingressClassName": "crdgate", "path": "/o", "backendService": "users"})
    assert compile_snapshot(snapshot(ours, *backend())).statuses["APIEndpoint:shop/ours"].state == "Ready"
