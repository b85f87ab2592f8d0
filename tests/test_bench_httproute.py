"""The Gateway API bench scenarios' manifests: they compile to routes through crdgate's Gateway (no sockets)."""

from __future__ import annotations

from bench import manifests
from bench.propagation import GATEWAY_SERVICES, KINDS
from bench.scenarios import LOAD_SCENARIOS, _httproute, _httproute_many
from bench.settings import LOAD, SCENARIOS, Settings
from controller.compile import compile_snapshot
from gateway.routing import Endpoint
from kobjects import snapshot


class FakeBackend:
    ports = [18201, 18202]
    port = ports[0]
    url = "http://127.0.0.1:18201"

    def url_of(self, ident: int) -> str:
        return f"http://127.0.0.1:{self.ports[ident]}"


def _compiled(docs: list[dict]):
    return compile_snapshot(snapshot(*docs))


def _states(result, kind: str) -> dict[str, str]:
    return {k: s.state for k, s in result.statuses.items() if k.startswith(f"{kind}:")}


def test_the_scenarios_are_listed():
    assert {"httproute", "httproute-many"} <= set(LOAD) <= set(SCENARIOS)
    assert {"httproute", "httproute-many"} <= LOAD_SCENARIOS.keys()
    assert SCENARIOS.index("propagation-httproute") == SCENARIOS.index("propagation") + 1


def test_httproute_routes_plain_to_the_backend_through_our_gateway():
    setup = _httproute(FakeBackend(), Settings())
    assert setup.paths == ["/plain"] and not setup.filler and not setup.any_backend
    result = _compiled(setup.docs["httproute.yaml"])
    assert _states(result, "HTTPRoute") == {f"HTTPRoute:{manifests.NAMESPACE}/plain": "Ready"}
    gw = result.statuses[f"Gateway:{manifests.NAMESPACE}/{manifests.GATEWAY_NAME}"]
    assert [ls.attached_routes for ls in gw.listeners] == [1]
    route = result.table.match("GET", "example.com", "/plain/x").route
    assert route is not None and route.kind == "HTTPRoute" and route.name == f"{manifests.NAMESPACE}/plain"
    eps = result.table.endpoints[f"{manifests.NAMESPACE}/bench-backend:80"].endpoints
    assert list(eps) == [Endpoint("127.0.0.1", FakeBackend.ports[0])]


def test_httproute_many_spreads_requests_over_every_route():
    setup = _httproute_many(FakeBackend(), Settings(routes=1200))
    assert sorted(setup.paths) == sorted(manifests.httproute_filler_path(i) for i in range(1200))
    assert setup.paths != sorted(setup.paths)  # shuffled, the same way every run
    assert setup.paths == _httproute_many(FakeBackend(), Settings(routes=1200)).paths
    assert len(setup.docs) == 1 + 3  # the Gateway's file and 500 routes a file
    result = _compiled([d for docs in setup.docs.values() for d in docs])
    states = _states(result, "HTTPRoute")
    assert len(states) == 1200 and set(states.values()) == {"Ready"}
    gw = result.statuses[f"Gateway:{manifests.NAMESPACE}/{manifests.GATEWAY_NAME}"]
    assert [ls.attached_routes for ls in gw.listeners] == [1200]


def test_propagation_change_goes_to_backend_1_through_the_second_service(tmp_path):
    kind = KINDS["propagation-httproute"]
    kind.write_filler(tmp_path, 10, FakeBackend())
    docs = [d for f in sorted(tmp_path.glob("*.yaml")) for d in manifests.yaml.safe_load_all(f.read_text())]
    change = kind.change("prop-0", "/prop/x", FakeBackend())
    assert change["spec"]["rules"][0]["matches"] == [{"path": {"type": "Exact", "value": "/prop/x"}}]
    result = _compiled([*docs, change])
    assert _states(result, "HTTPRoute")[f"HTTPRoute:{manifests.NAMESPACE}/prop-0"] == "Ready"
    assert kind.filler_path(9) == "/h/9"
    eps = result.table.endpoints[f"{manifests.NAMESPACE}/{GATEWAY_SERVICES[1]}:80"].endpoints
    assert list(eps) == [Endpoint("127.0.0.1", FakeBackend.ports[1])]
