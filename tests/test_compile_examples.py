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
    assert eps["demo/orders-v1:80"].endpoints == (Endpoint("127.0.0.1", 18083),)
    assert eps["demo/orders-v2:80"].endpoints == (Endpoint("127.0.0.1", 18084),)
    assert eps["http://127.0.0.1:18085"].endpoints == (Endpoint("127.0.0.1", 18085),)
    assert eps["demo/accounts:80"].endpoints == (Endpoint("127.0.0.1", 18086),)
    assert eps["demo/storefront:80"].endpoints == (Endpoint("127.0.0.1", 18087),)


def test_each_route_reaches_a_demo_backend_named_after_its_service():
    from crdgate.demo import DEMO_BACKENDS

    answers = {port: name for name, port in DEMO_BACKENDS}
    table = compiled().table
    seen = set()
    for route in table.routes:
        for ref in route.backends:
            # "demo/orders-v1:80" -> orders-v1; a url backend stands for its route (payments).
            service = ref.key.split("/", 1)[1].rsplit(":", 1)[0] if not ref.key.startswith("http") else route.name.split("/")[1]
            for ep in table.endpoints[ref.key].endpoints:
                assert answers[ep.port].startswith(service), (route.name, ref.key, answers[ep.port])
                seen.add(answers[ep.port])
    assert seen == set(answers.values())  # and every demo backend is used by some route


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
