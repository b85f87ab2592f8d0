"""The bundled examples (deploy/examples/, what `crdgate demo` serves) compile to a healthy table."""

from __future__ import annotations

from pathlib import Path

import yaml

from controller.compile import compile_snapshot
from gateway.routing import Endpoint
from kobjects import snapshot

EXAMPLES = Path(__file__).resolve().parent.parent / "deploy" / "examples"


def example_objects() -> list[dict]:
    docs = []
    for f in sorted(EXAMPLES.glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(f.read_text()) if d]
    return [d for d in docs if d["kind"] != "Namespace"]


def compiled():
    return compile_snapshot(snapshot(*example_objects()))


def test_every_example_object_is_ready():
    result = compiled()
    assert {k: (s.state, s.message) for k, s in result.statuses.items() if s.state != "Ready"} == {}
    assert {k.split(":")[0] for k in result.statuses} == {"APIEndpoint", "Ingress"}


def test_demo_backends_are_the_loopback_ports():
    eps = compiled().table.endpoints
    assert eps["demo/users:80"].endpoints == (Endpoint("127.0.0.1", 18081), Endpoint("127.0.0.1", 18082))
    assert eps["demo/orders-v1:80"].endpoints == (Endpoint("127.0.0.1", 18081),)
    assert eps["demo/orders-v2:80"].endpoints == (Endpoint("127.0.0.1", 18082),)
    assert eps["http://127.0.0.1:18083"].endpoints == (Endpoint("127.0.0.1", 18083),)


def test_demo_requests_route_where_the_readme_says():
    table = compiled().table

    def name(method, host, path, headers=None):
        res = table.match(method, host, path, headers or {})
        return res.route.name if res.route else res.status

    assert name("GET", "localhost", "/api/v1/users") == "demo/list-users"
    assert name("POST", "localhost", "/api/v1/users") == 405
    assert name("GET", "api.demo.local", "/api/v1/orders/42") == "demo/orders"
    assert name("GET", "api.demo.local", "/api/v1/orders", {"x-beta": "true"}) == "demo/orders-beta"
    assert name("GET", "eu.api.demo.local", "/api/v1/orders") == "demo/orders"
    assert name("GET", "api.demo.local", "/api/v1/orders/status") == "demo/order-status"
    assert name("GET", "api.demo.local", "/api/v0/orders/7") == "demo/old-orders"
    assert name("POST", "localhost", "/api/v1/payments/charge") == "demo/payments"
    assert name("GET", "shop.demo.local", "/orders/new") == "demo/storefront"
    assert name("GET", "shop.demo.local", "/") == "demo/storefront"
