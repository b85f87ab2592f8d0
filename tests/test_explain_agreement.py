"""The explanation never drifts from the proxy's matcher: for many random requests
over the example manifests and random tables, ``RouteTable.trace`` and
``gateway.explain.explain`` pick exactly the route (or 404/405 and Allow) that
``RouteTable.match`` picks."""

from __future__ import annotations

import functools
import random
from pathlib import Path

import pytest

from crdgate.report import compile_folder
from gateway import regex
from gateway.explain import explain
from gateway.policies import preflight_route
from gateway.routing import PATH_EXACT, PATH_PREFIX, PATH_REGEX, BackendRef, Route, RouteTable, StringMatch

ROOT = Path(__file__).resolve().parent.parent
HOSTS = ["api.demo.local", "a.api.demo.local", "b.a.api.demo.local", "shop.demo.local", "x.shop.demo.local",
         "example.com", "v1.example.com", "a.b.example.com", "other.org", ""]
PATHS = ["/", "/api", "/api/v1", "/api/v1/orders", "/api/v1/orders/", "/api/v1/orders/status", "/api/v1/orders/1",
         "/api/v0/orders/2", "/api/v1/payments/x", "/api/v1/accounts", "/api/v1/users/7", "/orders", "/orders/new",
         "/orders/new/1", "/a", "/a/b", "/a/b/c", "/ab", "/v2/items/42"]
METHODS = ["GET", "POST", "PUT", "DELETE", "HEAD", "PATCH", "OPTIONS"]
HEADER_SETS = [{}, {"x-beta": "true"}, {"x-beta": "false"}, {"x-env": "canary"}, {"x-env": "prod", "x-beta": "true"},
               {"origin": "https://shop.demo.local", "access-control-request-method": "POST"}]
QUERIES = ["", "v=2", "v=1&debug=1", "debug=1", "v=2&v=3"]


def _example_table() -> RouteTable:
    return compile_folder(ROOT / "deploy" / "examples").result.table


def _random_route(rnd: random.Random, i: int) -> Route:
    kind = rnd.choice(["APIEndpoint", "Ingress"])
    host_choice = rnd.choice([(), ("example.com",), ("*.example.com",), ("v1.example.com", "*.b.example.com"),
                              ("api.demo.local",), ("*.api.demo.local",)])
    path_type = rnd.choice([PATH_EXACT, PATH_PREFIX, PATH_PREFIX, PATH_REGEX])
    if path_type == PATH_REGEX:
        pattern = rnd.choice(["/a/.*", "/v[0-9]+/items/[0-9]+", "/api/v1/.+", "/.*"])
        path, rx = pattern, regex.compile(pattern)
    else:
        path, rx = rnd.choice(["/", "/a", "/a/b", "/a/b/", "/api", "/api/v1/orders", "/orders", "/orders/new"]), None
    headers = tuple(rnd.sample([StringMatch("x-beta", "true"), StringMatch("x-env", "", regex.compile("canary|prod"))],
                               rnd.randint(0, 2)))
    query = tuple(rnd.sample([StringMatch("v", "2"), StringMatch("debug", "1")], rnd.choice([0, 0, 1, 2])))
    methods = rnd.choice([None, None, frozenset({"GET"}), frozenset({"GET", "POST"}), frozenset({"DELETE"})])
    return Route(
        name=f"ns{rnd.randint(0, 2)}/r{i}", kind=kind, path=path, path_type=path_type, hosts=host_choice,
        methods=methods, headers=headers, query=query, backends=(BackendRef("ns/svc:80"),),
        created=f"2024-01-0{rnd.randint(1, 3)}T00:00:00Z", wildcard_single_label=kind == "Ingress",
        regex=rx, rule=f"rules[0].paths[{i}]" if kind == "Ingress" else "",
    )


@functools.lru_cache(maxsize=1)
def _tables() -> tuple[RouteTable, ...]:
    return tuple(_built_tables())


def _built_tables():
    yield _example_table()
    for seed in range(12):
        rnd = random.Random(seed)
        routes = [_random_route(rnd, i) for i in range(rnd.randint(3, 25))]
        fallback = Route(name="ns/default", kind="Ingress", path="/", rule="defaultBackend") if seed % 3 == 0 else None
        table = RouteTable(routes, fallback=fallback)
        yield table
        # The same routes reached through incremental updates: trace reads the shared structures too.
        half = len(routes) // 2
        yield RouteTable(routes[:half]).updated([], routes[half:], endpoints={}, fallback=fallback, generation=1)


def _same(a, b) -> bool:
    return a.route is b.route and a.status == b.status and tuple(a.allow) == tuple(b.allow)


@pytest.mark.parametrize("table_index", range(1 + 12 * 2))
def test_trace_and_explain_pick_what_match_picks(table_index):
    table = _tables()[table_index]
    rnd = random.Random(1000 + table_index)
    for _ in range(400):
        method, host, path = rnd.choice(METHODS), rnd.choice(HOSTS), rnd.choice(PATHS)
        headers, query = dict(rnd.choice(HEADER_SETS)), rnd.choice(QUERIES)
        expected = table.match(method, host, path, headers, query)
        traced, steps = table.trace(method, host, path, headers, query)
        assert _same(traced, expected), (method, host, path, headers, query)
        if expected.route is not None and expected.route is not table.fallback:
            assert any(c.route is expected.route and c.rejected is None for c in steps)
        url = path + (f"?{query}" if query else "")
        doc = explain(table, method, url, {**headers, "host": host} if host else headers)
        if method == "OPTIONS":  # the proxy routes a CORS preflight as the request it announces
            answering = preflight_route(table, expected.route, host, path, headers, query)
            if answering is not expected.route:
                assert doc["status"] == 200 and doc["route"]["name"] == answering.name
                continue
        assert doc["status"] == expected.status
        if expected.route is None:
            assert doc["route"] is None and doc.get("allow", []) == list(expected.allow)
        else:
            got = doc["route"]
            assert (got["kind"], f"{got['namespace']}/{got['name']}", got["rule"]) == (
                expected.route.kind, expected.route.name, expected.route.rule)
