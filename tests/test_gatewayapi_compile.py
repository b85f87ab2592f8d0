"""HTTPRoutes compiled into the one table: attachment, precedence, 404s, and what publishes.

The corpus run through a real gateway is tests/test_gatewayapi_conformance.py;
random changes against a fresh compile are tests/test_incremental_equivalence.py.
These are the rules in between, each on the smallest objects that show it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from gatewayapi.cases import MANIFESTS

from controller.compile import CompileOptions, compile_snapshot
from controller.compile.gateways import intersect
from controller.files import load_manifests
from controller.publish import Publisher
from controller.store import GATEWAY, GATEWAYCLASS, HTTPROUTE, KINDS, NAMESPACE, Store
from crdgate.report import validate_json, validate_report
from gateway.tablejson import table_to_json
from kobjects import T0, apiendpoint, backend, snapshot

EXAMPLES = Path(__file__).resolve().parent.parent / "deploy" / "examples"
GATEWAY_API_KINDS = (GATEWAYCLASS, GATEWAY, HTTPROUTE, NAMESPACE)
T1 = "2026-02-01T00:00:00Z"


def gateway_class(controller: str = "crdgate.io/gateway-controller", name: str = "crdgate") -> dict:
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
            "metadata": {"name": name}, "spec": {"controllerName": controller}}


def gateway(name: str = "gw", class_name: str = "crdgate", **listener) -> dict:
    ls = {"name": "http", "port": 80, "protocol": "HTTP", "allowedRoutes": {"namespaces": {"from": "All"}}, **listener}
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
            "metadata": {"name": name, "namespace": "infra"},
            "spec": {"gatewayClassName": class_name, "listeners": [ls]}}


def httproute(name: str, rules: list, ns: str = "shop", created: str = T0, parent: str = "gw", **spec) -> dict:
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": name, "namespace": ns, "creationTimestamp": created, "generation": 1},
            "spec": {"parentRefs": [{"name": parent, "namespace": "infra"}], "rules": rules, **spec}}


def rule(path: str = "/", svc: str = "users", **match) -> dict:
    return {"matches": [{"path": {"type": "PathPrefix", "value": path}, **match}],
            "backendRefs": [{"name": svc, "port": 80}]}


def compiled(*objects: dict, options: CompileOptions = CompileOptions()):
    return compile_snapshot(snapshot(gateway_class(), gateway(), *backend(), *objects), options)


# -- attachment -----------------------------------------------------------------


@pytest.mark.parametrize(
    "listener, route, hosts",
    [
        (None, [], ()),
        ("a.example.com", [], ("a.example.com",)),
        (None, ["a.example.com"], ("a.example.com",)),
        ("*.example.com", ["a.example.com", "b.other.org"], ("a.example.com",)),
        ("*.example.com", ["*.example.com"], ("*.example.com",)),
        ("*.wild.example.com", ["*.example.com"], ("*.wild.example.com",)),
        ("*.example.com", ["*.a.example.com"], ("*.a.example.com",)),
        ("a.example.com", ["*.example.com"], ("a.example.com",)),
        ("a.example.com", ["b.example.com"], None),
        ("*.example.com", ["example.com"], None),
    ],
)
def test_a_listener_hostname_intersected_with_the_route_hostnames(listener, route, hosts):
    assert intersect(listener, route) == hosts


def test_only_gateways_of_our_controller_name_take_routes():
    route = httproute("r", [rule("/r")])
    assert [r.name for r in compiled(route).table.routes] == ["shop/r"]
    other = CompileOptions(gateway_controller_name="example.org/other")
    result = compiled(route, options=other)
    assert len(result.table) == 0
    assert "HTTPRoute:shop/r" not in result.statuses  # another controller's route: no status of ours


def test_a_route_no_listener_allows_is_not_routed():
    route = httproute("r", [rule("/r")], hostnames=["a.example.com"])
    objs = (gateway_class(), gateway(hostname="b.example.com"), *backend(), route)
    result = compile_snapshot(snapshot(*objs))
    assert len(result.table) == 0
    assert result.statuses["HTTPRoute:shop/r"].reason == "NoMatchingListenerHostname"


def test_gateway_api_objects_from_the_store_are_read_only_mappings():
    """The store hands out read-only mappings, not dicts: the GatewayClass must still be recognised."""
    store = Store()
    for kind in KINDS:
        store.replace(kind, [])
    for obj in (gateway_class(), gateway(), *backend(), httproute("r", [rule("/r")])):
        store.apply(obj["kind"], "ADDED", obj)
    assert [r.name for r in compile_snapshot(store.snapshot()).table.routes] == ["shop/r"]


# -- precedence and answers ---------------------------------------------------------


def test_no_match_is_404_for_httproutes_even_when_only_the_method_differs():
    result = compiled(
        httproute("r", [rule("/h", method="GET")]),
        apiendpoint("e", {"path": "/e", "method": "GET", "backendService": "users"}),
    )
    assert result.table.match("POST", "x", "/h").status == 404
    assert result.table.match("POST", "x", "/e").status == 405  # an APIEndpoint keeps its 405


def test_rule_order_is_numeric_within_a_route():
    header = {"headers": [{"type": "RegularExpression", "name": "x-a", "value": ".*"}]}
    rules = [rule(f"/other{i}") for i in range(11)]
    rules[2] = rule("/t", "users", **header)
    rules[10] = rule("/t", "users", **header)
    got = compiled(httproute("r", rules)).table.match("GET", "x", "/t", {"x-a": "1"}).route
    assert got.rule == "rules[2].matches[0]"


def test_identical_matches_of_two_routes_go_to_the_older_and_both_are_accepted():
    older = httproute("b-older", [rule("/same", "users")], created=T0)
    newer = httproute("a-newer", [rule("/same", "users")], created=T1)
    result = compiled(newer, older)
    assert result.table.match("GET", "x", "/same").route.name == "shop/b-older"
    assert result.statuses["HTTPRoute:shop/a-newer"].state == "Ready"


def test_httproutes_and_apiendpoints_share_one_precedence():
    """A longer prefix wins whatever its kind; on an identical match the older object wins."""
    result = compiled(
        httproute("r", [rule("/api/v1")], created=T1),
        apiendpoint("e", {"path": "/api", "backendService": "users"}, created=T0),
        apiendpoint("same", {"path": "/api/v1", "backendService": "users"}, created=T0),
    )
    assert result.table.match("GET", "x", "/api/v1/x").route.kind == "APIEndpoint"  # same prefix, older
    assert result.table.match("GET", "x", "/api/x").route.name == "shop/e"


# -- publishing and the offline report --------------------------------------------------


def test_a_gateway_api_change_publishes_a_new_table():
    async def run():
        store = Store()
        for kind, objects in load_manifests(EXAMPLES).objects.items():
            store.replace(kind, objects.values())
        pub = Publisher(store, CompileOptions(), required_kinds=KINDS)
        assert await pub.publish_once(store.take_changes())
        before = len(pub.table)
        corpus = load_manifests(MANIFESTS).objects
        for kind in (*GATEWAY_API_KINDS, "Service", "EndpointSlice", "ReferenceGrant"):
            store.update(kind, corpus[kind])
        assert await pub.publish_once(store.take_changes())
        return before, pub.table

    before, table = asyncio.run(run())
    assert len(table) > before
    assert any(row["kind"] == HTTPROUTE for row in table_to_json(table))


def test_gateway_api_kinds_are_part_of_the_first_sync():
    store = Store()
    for kind in KINDS:
        if kind not in GATEWAY_API_KINDS:
            store.replace(kind, [])
    assert not store.synced(KINDS)  # the sources list them (empty when the CRDs are missing)
    for kind in GATEWAY_API_KINDS:
        store.replace(kind, [])
    assert store.synced(KINDS)


def test_validate_reports_httproutes_like_the_other_kinds(tmp_path):
    for name in ("00-base.yaml", "01-backends.yaml", "10-matching.yaml"):
        (tmp_path / name).write_text((MANIFESTS / name).read_text())
    text, ok = validate_report(tmp_path)
    # The corpus's one deliberately broken Gateway is reported like any object in error.
    errors = [line for line in text.splitlines() if line.startswith("ERROR")]
    assert len(errors) == 1 and errors[0].startswith("ERROR   Gateway gw-infra/broken-listeners ("), text
    assert "InvalidCertificateRef" in errors[0] and "InvalidRouteKinds" in errors[0]
    assert not ok
    assert "OK      Gateway gw-infra/same-ns (" in text
    assert "OK      GatewayClass /crdgate (" in text
    assert "IGNORED" not in text
    assert "HTTPRoute gw-infra/match-paths" in text
    assert validate_json(tmp_path)["ignoredKinds"] == {}


def test_validate_skips_the_routes_of_other_controllers():
    text, _ = validate_report(MANIFESTS)
    skipped = [line for line in text.splitlines() if line.startswith("SKIP    HTTPRoute")]
    assert len(skipped) == 1 and skipped[0].startswith("SKIP    HTTPRoute gw-infra/to-other-controller (")
    assert skipped[0].endswith("): attached to no Gateway of controller crdgate.io/gateway-controller")
    gateways = [line for line in text.splitlines() if line.startswith("SKIP    Gateway")]
    assert len(gateways) == 1 and gateways[0].startswith("SKIP    Gateway gw-infra/not-ours (")
    assert gateways[0].endswith("): of no GatewayClass of controller crdgate.io/gateway-controller")
