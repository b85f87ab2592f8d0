"""The status crdgate writes for the conformance-style corpus (tests/gatewayapi/): every HTTPRoute
parent, Gateway, listener and GatewayClass as cases.py expects, shaped as the status writer sends it
(controller/gatewaystatus.py), from both the full and the incremental compile."""

from __future__ import annotations

import pytest
from gatewayapi.cases import (
    GATEWAY_STATUS,
    GATEWAYCLASS_STATUS,
    MANIFESTS,
    NO_STATUS,
    NOT_OUR_GATEWAYS,
    ROUTE_STATUS,
)

from controller.compile import CompileOptions, Compiler, compile_snapshot
from controller.files import load_manifests
from controller.gatewaystatus import desired_status
from controller.store import Snapshot

OURS = "crdgate.io/gateway-controller"


def no_stamp(previous, desired):
    return desired


@pytest.fixture(scope="module", params=["full", "incremental"])
def statuses(request):
    loaded = load_manifests(MANIFESTS)
    snap = Snapshot(objects=loaded.objects)
    if request.param == "full":
        return compile_snapshot(snap).statuses
    compiler = Compiler(CompileOptions())
    compiler.compile(Snapshot(objects={}))  # then everything arrives as a change
    return compiler.compile(snap).statuses


def body(statuses, kind: str, key: str, have: dict | None = None) -> dict | None:
    st = statuses.get(f"{kind}:{key}")
    return None if st is None else desired_status(st, have or {}, no_stamp, OURS, ["192.0.2.1"])


def has(conditions: list[dict], expected) -> list[str]:
    """The expected conditions missing from ``conditions`` (type, status, reason)."""
    got = {(c["type"], c["status"], c["reason"]) for c in conditions}
    return [f"{c.type}={c.status}/{c.reason}" for c in expected if (c.type, c.status, c.reason) not in got]


@pytest.mark.parametrize("expect", ROUTE_STATUS, ids=lambda s: f"{s.route}->{s.parent}:{s.section or s.port or ''}")
def test_route_parents(statuses, expect):
    parents = body(statuses, "HTTPRoute", expect.route)["parents"]
    ns, _, name = expect.parent.partition("/")
    route_ns = expect.route.partition("/")[0]
    entry = [
        p for p in parents
        if p["parentRef"]["name"] == name and p["parentRef"].get("namespace", route_ns) == ns
        and p["parentRef"].get("sectionName") == expect.section and p["parentRef"].get("port") == expect.port
    ]
    assert len(entry) == 1, parents
    assert entry[0]["controllerName"] == OURS
    assert has(entry[0]["conditions"], expect.conditions) == [], entry[0]["conditions"]
    assert all(c["observedGeneration"] == statuses[f"HTTPRoute:{expect.route}"].generation
               for c in entry[0]["conditions"])


@pytest.mark.parametrize("route", NO_STATUS)
def test_routes_of_other_controllers_get_no_status(statuses, route):
    assert f"HTTPRoute:{route}" not in statuses


@pytest.mark.parametrize("gateway", sorted(GATEWAY_STATUS))
def test_gateways_and_listeners(statuses, gateway):
    conditions, listeners = GATEWAY_STATUS[gateway]
    st = body(statuses, "Gateway", gateway)
    assert has(st["conditions"], conditions) == [], st["conditions"]
    shown = {ls["name"]: ls for ls in st["listeners"]}
    for name, expect in listeners.items():
        assert shown[name]["attachedRoutes"] == expect.attached_routes, name
        assert has(shown[name]["conditions"], expect.conditions) == [], (name, shown[name]["conditions"])
    assert st["addresses"] == [{"type": "IPAddress", "value": "192.0.2.1"}]


@pytest.mark.parametrize("gateway", NOT_OUR_GATEWAYS)
def test_gateways_of_other_classes_get_no_status(statuses, gateway):
    assert f"Gateway:{gateway}" not in statuses


@pytest.mark.parametrize("name", sorted(GATEWAYCLASS_STATUS))
def test_gatewayclasses(statuses, name):
    expect = GATEWAYCLASS_STATUS[name]
    st = body(statuses, "GatewayClass", f"/{name}")
    if expect is None:
        assert st is None
    else:
        assert has(st["conditions"], expect) == []


def test_other_controllers_entries_are_kept_and_ours_replaced(statuses):
    theirs = {"parentRef": {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "x"},
              "controllerName": "example.org/other", "conditions": []}
    stale = {"parentRef": {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "gone"},
             "controllerName": OURS, "conditions": []}
    parents = body(statuses, "HTTPRoute", "gw-infra/match-paths", {"parents": [stale, theirs]})["parents"]
    assert parents[0] == theirs
    assert [p["parentRef"]["name"] for p in parents] == ["x", "same-ns"]
