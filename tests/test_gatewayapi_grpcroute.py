"""GRPCRoute compiled into the one table: method and header matches, HTTP/2 backends, filters, validation."""

from __future__ import annotations

import pytest

from controller.compile import compile_snapshot
from controller.files import load_manifests
from controller.gatewayapi.objects import InvalidObject, parse
from controller.store import GRPCROUTE
from gateway.routing import Endpoint
from kobjects import T0, endpointslice, service, snapshot

from test_gatewayapi_compile import gateway, gateway_class, httproute


def grpcroute(name: str, rules: list, ns: str = "shop", created: str = T0, **spec) -> dict:
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GRPCRoute",
            "metadata": {"name": name, "namespace": ns, "creationTimestamp": created, "generation": 1},
            "spec": {"parentRefs": [{"name": "gw", "namespace": "infra"}], "rules": rules, **spec}}


def grpc_rule(*matches: dict, svc: str = "orders", port: int = 50051, **extra) -> dict:
    return {"matches": list(matches), "backendRefs": [{"name": svc, "port": port}], **extra}


def orders_backend(app_protocol: str | None = None) -> list[dict]:
    port = {"name": "grpc", "port": 50051, "targetPort": 9000}
    if app_protocol:
        port["appProtocol"] = app_protocol
    return [service("orders", ports=[port]), endpointslice("orders", ["10.0.0.9"], port=9000, port_name="grpc")]


def compiled(*objects: dict):
    return compile_snapshot(snapshot(gateway_class(), gateway(), *orders_backend(), *objects))


def routed(result, method: str, path: str, headers: dict | None = None):
    route = result.table.match(method, "any.example", path, headers or {}).route
    return None if route is None else (route.name, route.rule)


def test_method_matches_become_path_matches():
    r = grpcroute("g", [
        grpc_rule({"method": {"service": "shop.Orders", "method": "Get"}}),
        grpc_rule({"method": {"service": "shop.Carts"}}),
        grpc_rule({"method": {"method": "Health"}}),
        grpc_rule({"method": {"type": "RegularExpression", "service": r"shop\.(Admin|Ops)", "method": "List.*"}}),
    ])
    result = compiled(r)
    st = result.statuses["GRPCRoute:shop/g"]
    assert st.state == "Ready", st.message
    assert routed(result, "POST", "/shop.Orders/Get") == ("shop/g", "rules[0].matches[0]")
    assert routed(result, "POST", "/shop.Orders/Put") is None
    assert routed(result, "POST", "/shop.Carts/Add") == ("shop/g", "rules[1].matches[0]")
    assert routed(result, "POST", "/shop.CartsX/Add") is None  # the service is a whole path segment
    assert routed(result, "POST", "/any.Service/Health") == ("shop/g", "rules[2].matches[0]")
    assert routed(result, "POST", "/a/b/Health") is None
    assert routed(result, "POST", "/shop.Ops/ListUsers") == ("shop/g", "rules[3].matches[0]")
    assert routed(result, "POST", "/shop.Ops/DeleteUser") is None


def test_no_match_takes_every_call_and_header_matches_narrow():
    r = grpcroute("g", [
        grpc_rule({"headers": [{"name": "x-tenant", "value": "blue"}]}, svc="orders"),
    ])
    result = compiled(r)
    assert routed(result, "POST", "/x.Y/Z", {"x-tenant": "blue"}) == ("shop/g", "rules[0].matches[0]")
    assert routed(result, "POST", "/x.Y/Z", {"x-tenant": "red"}) is None
    empty = compiled(grpcroute("all", [{"backendRefs": [{"name": "orders", "port": 50051}]}]))
    assert routed(empty, "POST", "/x.Y/Z") == ("shop/all", "rules[0].matches[0]")


def test_backends_are_spoken_to_in_http2_whatever_the_port_says():
    result = compiled(grpcroute("g", [grpc_rule({"method": {"service": "shop.Orders"}})]))
    route = result.table.match("POST", "h", "/shop.Orders/Get").route
    key = route.backends[0].key
    assert key == "shop/orders:50051#h2"
    assert result.table.endpoints[key].endpoints == (Endpoint("10.0.0.9", 9000, http2=True),)


def test_an_httproute_to_the_same_service_keeps_http11():
    both = compiled(
        grpcroute("g", [grpc_rule({"method": {"service": "shop.Orders"}})]),
        httproute("h", [{"matches": [{"path": {"type": "PathPrefix", "value": "/web"}}],
                         "backendRefs": [{"name": "orders", "port": 50051}]}]),
    )
    assert both.table.endpoints["shop/orders:50051"].endpoints[0].http2 is False
    assert both.table.endpoints["shop/orders:50051#h2"].endpoints[0].http2 is True


def test_header_modifiers_apply_and_a_mirror_is_refused():
    mods = {"type": "RequestHeaderModifier", "requestHeaderModifier": {"set": [{"name": "x-via", "value": "gw"}]}}
    result = compiled(grpcroute("g", [grpc_rule({"method": {"service": "a.B"}}, filters=[mods])]))
    route = result.table.match("POST", "h", "/a.B/C").route
    assert route.policy.request_headers is not None
    mirror = {"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "orders", "port": 50051}}}
    result = compiled(grpcroute("m", [grpc_rule({"method": {"service": "a.B"}}, filters=[mirror])]))
    st = result.statuses["GRPCRoute:shop/m"]
    assert "RequestMirror is not supported on a GRPCRoute" in st.message
    assert result.table.match("POST", "h", "/a.B/C").route.backends == ()  # answers 500, never unmirrored


@pytest.mark.parametrize("spec, problem", [
    ({"rules": [{"matches": [{"method": {}}]}]}, "one or both of service or method must be set"),
    ({"rules": [{"matches": [{"method": {"service": "bad service"}}]}]}, "not a valid gRPC service name"),
    ({"rules": [{"matches": [{"method": {"method": "Get/X"}}]}]}, "not a valid gRPC method name"),
    ({"rules": [{"matches": [{"method": {"type": "RegularExpression", "method": "(("}}]}]}, "invalid regular expression"),
    ({"rules": [{"filters": [{"type": "URLRewrite", "urlRewrite": {}}]}]}, "spec.rules[0].filters[0].type"),
    ({"rules": [{"matches": [{"headers": [{"name": "a", "value": "1"}, {"name": "a", "value": "2"}]}]}]},
     "header name"),
])
def test_invalid_grpcroutes_name_the_field(spec, problem):
    obj = {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GRPCRoute", "metadata": {"name": "g"},
           "spec": {"parentRefs": [{"name": "gw"}], **spec}}
    with pytest.raises(InvalidObject) as e:
        parse(GRPCROUTE, obj)
    assert problem in str(e.value)


def test_the_folder_source_reads_grpcroutes(tmp_path):
    (tmp_path / "g.yaml").write_text(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: GRPCRoute\nmetadata: {name: g, namespace: shop}\n"
        "spec:\n  parentRefs: [{name: gw, namespace: infra}]\n"
        "  rules: [{matches: [{method: {service: shop.Orders}}], backendRefs: [{name: orders, port: 50051}]}]\n"
        "---\napiVersion: gateway.networking.k8s.io/v1beta1\nkind: GRPCRoute\nmetadata: {name: old, namespace: shop}\n"
        "spec: {}\n"
    )
    loaded = load_manifests(tmp_path)
    assert list(loaded.objects[GRPCROUTE]) == ["shop/g"]
    assert len(loaded.errors) == 1 and "apiVersion must be gateway.networking.k8s.io/v1" in str(loaded.errors[0])


def test_a_listener_that_lists_only_httproute_takes_no_grpcroute():
    gw = gateway(allowedRoutes={"namespaces": {"from": "All"}, "kinds": [{"kind": "HTTPRoute"}]})
    result = compile_snapshot(snapshot(gateway_class(), gw, *orders_backend(),
                                       grpcroute("g", [grpc_rule({"method": {"service": "a.B"}})])))
    st = result.statuses["GRPCRoute:shop/g"]
    assert st.state == "Error" and "do not allow it" in st.message
    assert result.table.match("POST", "h", "/a.B/C").route is None



def test_backend_ref_header_filters_travel_with_that_backend():
    hm = {"type": "RequestHeaderModifier", "requestHeaderModifier": {"set": [{"name": "X-Backend", "value": "orders"}]}}
    rm = {"type": "ResponseHeaderModifier", "responseHeaderModifier": {"remove": ["X-Internal"]}}
    rule = {"backendRefs": [{"name": "orders", "port": 50051, "filters": [hm, rm]}]}
    result = compiled(grpcroute("g", [rule]))
    assert result.statuses["GRPCRoute:shop/g"].state == "Ready"
    (ref,) = result.table.match("POST", "any.example", "/a.B/C", {}).route.backends
    assert ref.request_headers.set == (("X-Backend", "orders"),) and ref.response_headers.remove == ("x-internal",)
    assert ref.key in result.table.endpoints and result.table.endpoints[ref.key].endpoints


def test_other_filters_on_a_backend_ref_fail_that_share_closed():
    mirror = {"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "orders", "port": 50051}}}
    rule = {"backendRefs": [{"name": "orders", "port": 50051, "filters": [mirror]}]}
    result = compiled(grpcroute("g", [rule]))
    (ref,) = result.table.match("POST", "any.example", "/a.B/C", {}).route.backends
    assert result.table.endpoints[ref.key].endpoints == ()  # answers 500
    assert "RequestMirror is not supported on a backendRef" in str(result.statuses["GRPCRoute:shop/g"].to_status_dict())
