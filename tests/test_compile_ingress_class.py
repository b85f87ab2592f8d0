"""Which Ingresses this gateway routes: its class by name, the default class, the legacy annotation."""

from __future__ import annotations

from controller.compile import CompileOptions, compile_snapshot
from kobjects import backend, ingress, ingress_class, path, snapshot

SPEC = {"rules": [{"http": {"paths": [path("/", "users")]}}]}


def routed(*objs, options=CompileOptions()) -> set[str]:
    result = compile_snapshot(snapshot(*objs, *backend()), options)
    return {r.name for r in result.table.routes}


def test_class_by_name():
    assert routed(ingress("mine", SPEC)) == {"shop/mine"}
    assert routed(ingress("theirs", SPEC, class_name="nginx")) == set()


def test_own_class_name_is_configurable():
    opts = CompileOptions(ingress_class="internal")
    assert routed(ingress("a", SPEC, class_name="internal"), options=opts) == {"shop/a"}
    assert routed(ingress("b", SPEC), options=opts) == set()


def test_no_class_needs_our_class_to_be_the_default():
    unclassed = ingress("plain", SPEC, class_name=None)
    assert routed(unclassed) == set()
    assert routed(unclassed, ingress_class(default=False)) == set()
    assert routed(unclassed, ingress_class(default=True)) == {"shop/plain"}


def test_default_class_of_another_controller_is_not_ours():
    assert routed(ingress("plain", SPEC, class_name=None), ingress_class(default=True, controller="k8s.io/ingress-nginx")) == set()


def test_legacy_annotation():
    legacy = ingress("legacy", SPEC, class_name=None, annotations={"kubernetes.io/ingress.class": "crdgate"})
    other = ingress("other", SPEC, class_name=None, annotations={"kubernetes.io/ingress.class": "nginx"})
    assert routed(legacy, other) == {"shop/legacy"}
    # An Ingress that names another class through the annotation is not taken by our default class.
    assert routed(other, ingress_class(default=True)) == set()


def test_ignored_ingresses_get_no_status():
    result = compile_snapshot(snapshot(ingress("theirs", {"rules": "garbage"}, class_name="nginx")))
    assert result.statuses == {}
