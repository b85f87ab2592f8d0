"""Gateway API models (controller/gatewayapi/): the corpus loads through the manifests folder,
invalid objects get an error naming the field, and the CRD's defaults and rules hold."""

from __future__ import annotations

import pytest
from gatewayapi.cases import (
    CASES,
    GATEWAY_STATUS,
    INVALID,
    INVALID_DIR,
    MANIFESTS,
    NO_STATUS,
    NOT_OUR_GATEWAYS,
    ROUTE_STATUS,
)

from controller.files import load_manifests
from controller.gatewayapi.gateway import LabelSelector
from controller.gatewayapi.objects import CONTROLLER_NAME, InvalidObject, parse
from controller.store import GATEWAY, GATEWAYCLASS, HTTPROUTE, NAMESPACE, SERVICE

# -- the corpus ------------------------------------------------------------------


@pytest.fixture(scope="module")
def corpus():
    return load_manifests(MANIFESTS)


def test_the_corpus_loads_without_error(corpus):
    assert [str(e) for e in corpus.errors] == []
    assert corpus.ignored == {}
    assert len(corpus.objects[HTTPROUTE]) == 52
    assert sorted(corpus.objects[GATEWAYCLASS]) == ["/crdgate", "/other"]
    assert corpus.objects[GATEWAYCLASS]["/crdgate"]["spec"]["controllerName"] == CONTROLLER_NAME
    assert sorted(corpus.objects[NAMESPACE]) == ["/gw-app", "/gw-infra", "/gw-web"]


def test_every_object_of_the_corpus_parses(corpus):
    for kind in (GATEWAYCLASS, GATEWAY, HTTPROUTE):
        for key, obj in corpus.objects[kind].items():
            assert parse(kind, obj).metadata.name == key.partition("/")[2]


def test_the_cases_name_what_the_corpus_has(corpus):
    """The expectations stay in step with the manifests: every Gateway, Service, route and
    parentRef a case or a status names exists."""
    gateways = set(corpus.objects[GATEWAY])
    services = set(corpus.objects[SERVICE])
    routes = corpus.objects[HTTPROUTE]
    for case in CASES:
        assert case.request.gateway in gateways, case.name
        named = [case.expect.backend, case.expect.mirrored_to, *(b for b, _ in case.expect.split if b != "500")]
        assert all(b is None or b in services for b in named), case.name
        if case.expect.split:
            assert sum(share for _, share in case.expect.split) == pytest.approx(1.0), case.name
    assert len({case.name for case in CASES}) == len(CASES)
    for st in ROUTE_STATUS:
        refs = parse(HTTPROUTE, routes[st.route]).spec.parent_refs
        ns = st.route.partition("/")[0]
        assert any(
            f"{r.namespace or ns}/{r.name}" == st.parent and r.section_name == st.section and r.port == st.port
            for r in refs
        ), st
    assert set(GATEWAY_STATUS) | set(NOT_OUR_GATEWAYS) == gateways
    # Every route has an expected status, or is known to get none from crdgate.
    assert {st.route for st in ROUTE_STATUS} | set(NO_STATUS) == set(routes)


@pytest.mark.parametrize("invalid", INVALID, ids=lambda i: i.file)
def test_an_invalid_object_is_a_load_error_naming_the_field(invalid):
    loaded = load_manifests(INVALID_DIR / invalid.file)
    assert len(loaded.errors) == 1, loaded.errors
    message = loaded.errors[0].message
    assert f": {invalid.field}: " in message, message
    assert invalid.says in message, message
    assert not any(loaded.objects[kind] for kind in (GATEWAYCLASS, GATEWAY, HTTPROUTE))


def test_every_invalid_file_is_listed():
    assert sorted(p.name for p in INVALID_DIR.glob("*.yaml")) == sorted(i.file for i in INVALID)


# -- defaults and rules ------------------------------------------------------------


def route(spec: dict, name: str = "r"):
    return parse(HTTPROUTE, {"metadata": {"name": name, "namespace": "ns"}, "spec": spec})


def problems(kind: str, spec: dict) -> list[str]:
    with pytest.raises(InvalidObject) as info:
        parse(kind, {"metadata": {"name": "x", "namespace": "ns"}, "spec": spec})
    return info.value.problems


def test_httproute_defaults_are_the_crds():
    spec = route({"parentRefs": [{"name": "gw"}], "rules": [{"backendRefs": [{"name": "s", "port": 80}]}]}).spec
    parent = spec.parent_refs[0]
    assert (parent.group, parent.kind, parent.namespace, parent.section_name) == (
        "gateway.networking.k8s.io", "Gateway", None, None)
    assert parent.parent_key("ns") == ("gateway.networking.k8s.io", "Gateway", "ns", "gw")
    rule = spec.rules[0]
    assert [(m.path.type, m.path.value) for m in rule.matches] == [("PathPrefix", "/")]
    backend = rule.backend_refs[0]
    assert (backend.group, backend.kind, backend.weight, backend.is_service) == ("", "Service", 1, True)
    assert route({}).spec.rules[0].matches[0].path.value == "/"  # no rules: the default rule
    redirect = route({"rules": [{"filters": [{"type": "RequestRedirect", "requestRedirect": {}}]}]})
    assert redirect.spec.rules[0].filters[0].request_redirect.status_code == 302


def test_valid_variants_the_crd_accepts():
    route({"parentRefs": [{"name": "gw", "sectionName": "a"}, {"name": "gw", "sectionName": "b"},
                          {"name": "gw", "namespace": "other"}]})
    route({"rules": [{"timeouts": {"request": "0s", "backendRequest": "1h"}}]})  # 0s: no request timeout
    route({"rules": [{"matches": [{"path": {"value": "/a"}}],
                      "filters": [{"type": "URLRewrite",
                                   "urlRewrite": {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/"}}}],
                      "backendRefs": [{"name": "s", "port": 80}]}]})
    route({"rules": [{"backendRefs": [{"group": "example.com", "kind": "Bucket", "name": "b"}]}]})  # no port needed
    route({"rules": [{"filters": [{"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "m", "port": 1}}},
                                  {"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "n", "port": 1},
                                                                              "fraction": {"numerator": 1}}}]}]})
    route({"rules": [{"matches": [{"path": {"type": "RegularExpression", "value": "/(a|b)+"}}]}]})
    route({"hostnames": ["*.example.com", "example.com"]})
    # An empty ReplacePrefixMatch leaves the rest of the path (Gateway API's table).
    route({"rules": [{"filters": [{"type": "URLRewrite", "urlRewrite": {
        "path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": ""}}}]}]})


def test_timeouts_are_seconds():
    t = route({"rules": [{"timeouts": {"request": "1m30s", "backendRequest": "250ms"}}]}).spec.rules[0].timeouts
    assert (t.request, t.backend_request) == (90.0, 0.25)


def test_mirror_share():
    def share(settings: dict) -> float:
        spec = {"rules": [{"filters": [{"type": "RequestMirror",
                                        "requestMirror": {"backendRef": {"name": "m", "port": 1}, **settings}}]}]}
        return route(spec).spec.rules[0].filters[0].request_mirror.share

    assert share({}) == 1.0
    assert share({"percent": 25}) == 0.25
    assert share({"fraction": {"numerator": 1, "denominator": 3}}) == pytest.approx(1 / 3)


def test_rules_of_the_crd_name_the_field():
    assert problems(HTTPROUTE, {"parentRefs": [{"name": "gw", "sectionName": "a"}, {"name": "gw", "sectionName": "a"}]}) \
        == ["spec.parentRefs[1]: a second parentRef to the same parent with sectionName 'a'"]
    assert problems(HTTPROUTE, {"rules": [{"filters": [
        {"type": "RequestHeaderModifier", "requestHeaderModifier": {}},
        {"type": "RequestHeaderModifier", "requestHeaderModifier": {}}]}]}) \
        == ["spec.rules[0].filters: RequestHeaderModifier may appear only once, not 2 times"]
    assert problems(HTTPROUTE, {"rules": [{"matches": [{"headers": [{"name": "a", "value": "1"},
                                                                    {"name": "a", "value": "2"}]}]}]}) \
        == ["spec.rules[0].matches[0].headers[1]: duplicate header name 'a': each must be unique"]
    assert problems(HTTPROUTE, {"rules": [{"filters": [{"type": "RequestMirror", "requestMirror": {
        "backendRef": {"name": "m", "port": 1}, "percent": 5, "fraction": {"numerator": 1}}}]}]}) \
        == ["spec.rules[0].filters[0].requestMirror.fraction: set either percent or fraction, not both"]
    assert problems(HTTPROUTE, {"rules": [{"matches": [{}]}] * 17})[0].startswith("spec.rules: List should have at most 16")
    many = [{"matches": [{}] * 64}, {"matches": [{}] * 64}, {"matches": [{}]}]
    assert problems(HTTPROUTE, {"rules": many}) == ["spec.rules: 129 matches over all rules; at most 128 are allowed"]
    assert problems(HTTPROUTE, {"rules": [{"filters": [{"type": "ExtensionRef"}]}]}) \
        == ["spec.rules[0].filters[0].extensionRef: required when type is ExtensionRef"]
    assert problems(HTTPROUTE, {"rules": [{"backendRefs": [{"name": "s", "port": 80, "weight": 1_000_001}]}]}) \
        == ["spec.rules[0].backendRefs[0].weight: Input should be less than or equal to 1000000"]
    assert problems(HTTPROUTE, {"rules": [{"backendRefs": [{"name": "s", "port": "80"}]}]}) \
        == ["spec.rules[0].backendRefs[0].port: Input should be a valid integer"]


def listener(**fields) -> dict:
    return {"gatewayClassName": "crdgate", "listeners": [{"name": "l", "port": 443, "protocol": "HTTPS", **fields}]}


def test_gateway_defaults_and_rules():
    gw = parse(GATEWAY, {"metadata": {"name": "g", "namespace": "ns"},
                         "spec": listener(tls={"certificateRefs": [{"name": "cert"}]})})
    l = gw.spec.listeners[0]
    assert l.allowed_routes.namespaces.from_ == "Same" and l.allowed_routes.kinds == []
    assert (l.tls.mode, l.tls.certificate_refs[0].kind, l.tls.certificate_refs[0].group) == ("Terminate", "Secret", "")
    assert gw.spec.listener("l") is l
    assert problems(GATEWAY, listener(tls={"mode": "Terminate"})) == [
        "spec.listeners[0].tls.certificateRefs: required (or options) when mode is Terminate"]
    assert problems(GATEWAY, listener(protocol="TLS")) == ["spec.listeners[0].tls: required with protocol TLS (set mode)"]
    assert problems(GATEWAY, listener(protocol="TCP", hostname="a.example.com")) == [
        "spec.listeners[0].hostname: not allowed with protocol TCP"]
    two = {"gatewayClassName": "c", "listeners": [{"name": "a", "port": 80, "protocol": "HTTP"},
                                                   {"name": "b", "port": 80, "protocol": "HTTP"}]}
    assert problems(GATEWAY, two) == [
        "spec.listeners[1]: duplicate (port, protocol, hostname) (80, 'HTTP', ''): each must be unique"]
    parse(GATEWAY, {"metadata": {"name": "g"}, "spec": {"gatewayClassName": "c", "listeners": [
        {"name": "a", "port": 80, "protocol": "HTTP", "hostname": "a.example.com"},
        {"name": "b", "port": 80, "protocol": "HTTP", "hostname": "b.example.com"},
        {"name": "c", "port": 9000, "protocol": "example.com/custom"}],
        "addresses": [{"value": "10.0.0.1"}, {"type": "Hostname", "value": "gw.example.com"}]}})


def test_gatewayclass():
    gc = parse(GATEWAYCLASS, {"metadata": {"name": "crdgate"}, "spec": {"controllerName": CONTROLLER_NAME,
                                                                       "description": "d"}})
    assert gc.spec.controller_name == CONTROLLER_NAME and gc.spec.parameters_ref is None
    assert problems(GATEWAYCLASS, {"controllerName": CONTROLLER_NAME, "description": "x" * 65}) == [
        "spec.description: must be at most 64 characters, not 65"]


def test_a_misspelt_field_gets_the_nearest_name():
    assert problems(GATEWAY, {"gatewayClassName": "c", "listeners": [
        {"name": "a", "port": 80, "protocol": "HTTP", "allowedRoute": {}}]}) == [
        "spec.listeners[0].allowedRoute: unknown field; did you mean `allowedRoutes`?"]


def test_label_selector():
    sel = LabelSelector.model_validate({"matchLabels": {"team": "a"}, "matchExpressions": [
        {"key": "env", "operator": "In", "values": ["prod", "staging"]},
        {"key": "legacy", "operator": "DoesNotExist"}]})
    assert sel.matches({"team": "a", "env": "prod"})
    assert not sel.matches({"team": "a", "env": "dev"})
    assert not sel.matches({"team": "a", "env": "prod", "legacy": "yes"})
    assert not sel.matches({"env": "prod"})
    assert LabelSelector.model_validate({}).matches({"anything": "x"})
