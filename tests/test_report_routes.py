"""`crdgate routes DIR` and the admin /routes rows: the table in match order, then the fallback."""

from __future__ import annotations

from pathlib import Path

from controller.compile import CompileOptions
from crdgate.report import routes_json_for_folder, routes_report
from gateway.routing import BackendRef, EndpointSet, HeaderModifier, Route, RoutePolicy, RouteTable, Timeouts
from gateway.tablejson import REDACTED, table_to_json

MANIFESTS = """\
apiVersion: v1
kind: Service
metadata: {name: users, namespace: shop}
spec: {ports: [{name: http, port: 80, targetPort: 8080}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: users-1, namespace: shop, labels: {kubernetes.io/service-name: users}}
addressType: IPv4
endpoints: [{addresses: [10.0.0.1]}, {addresses: [10.0.0.2]}]
ports: [{name: http, port: 8080}]
---
apiVersion: crdgate.io/v1
kind: APIEndpoint
metadata: {name: short, namespace: shop}
spec: {path: /api, backendService: users}
---
apiVersion: crdgate.io/v1
kind: APIEndpoint
metadata: {name: long, namespace: shop}
spec:
  path: /api/v1/users
  methods: [POST, GET]
  backendService: users
  rateLimit: {requestsPerMinute: 60, burst: 5}
  timeouts: {request: 5s}
---
apiVersion: crdgate.io/v1
kind: APIEndpoint
metadata: {name: hosted, namespace: shop}
spec: {path: /, hosts: [api.example.com], backendService: users}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: web, namespace: shop}
spec:
  ingressClassName: crdgate
  defaultBackend: {service: {name: users, port: {number: 80}}}
"""


def test_routes_are_listed_in_match_order_with_the_fallback_last(tmp_path):
    (tmp_path / "all.yaml").write_text(MANIFESTS)
    text = routes_report(tmp_path, CompileOptions())
    lines = text.splitlines()
    assert lines[0].split() == ["PRIORITY", "HOST(S)", "METHODS", "PATH", "TYPE", "ROUTE", "BACKENDS", "POLICIES"]
    order = [ln.split()[0] + " " + ln.split()[6] for ln in lines[1:5]]
    # Exact host first, then the any-host routes by longest prefix; the fallback last.
    assert order == ["1 shop/hosted", "2 shop/long", "3 shop/short", "default shop/web"]
    long_line = lines[2]
    assert "GET,POST" in long_line and "shop/users:80 w=1 (2 ready)" in long_line
    assert "ratelimit=60/min+5" in long_line and "timeout=5s" in long_line


def test_routes_json_matches_the_table_and_reports_load_errors(tmp_path):
    (tmp_path / "all.yaml").write_text(MANIFESTS)
    (tmp_path / "broken.yaml").write_text("a: [\n")
    doc = routes_json_for_folder(tmp_path, CompileOptions())
    names = [(r["priority"], r["name"]) for r in doc["routes"]]
    assert names == [(1, "shop/hosted"), (2, "shop/long"), (3, "shop/short"), (None, "shop/web")]
    long = doc["routes"][1]
    assert long["methods"] == ["GET", "POST"]
    assert long["backends"] == [{"backend": "shop/users:80", "weight": 1, "state": "Ready", "endpoints": 2, "protocol": "HTTP/1.1"}]
    assert long["policies"]["rateLimit"]["requestsPerMinute"] == 60
    assert doc["routes"][3]["fallback"] is True
    assert [e["file"] for e in doc["loadErrors"]] == [f"{tmp_path}/broken.yaml"]


def test_empty_folder_says_no_routes(tmp_path):
    assert routes_report(Path(tmp_path), CompileOptions()) == "no routes"


def test_table_json_never_shows_credential_header_values():
    policy = RoutePolicy(
        request_headers=HeaderModifier(set=(("Authorization", "Bearer abc"), ("X-Env", "prod")), remove=("cookie",)),
        timeouts=Timeouts(request=None),
    )
    route = Route(name="shop/r", kind="APIEndpoint", path="/", backends=(BackendRef("u", 3),), policy=policy)
    table = RouteTable([route], endpoints={"u": EndpointSet("u", state="NoReadyEndpoints")})
    (row,) = table_to_json(table)
    assert row["policies"]["requestHeaders"] == {
        "set": [{"name": "Authorization", "value": REDACTED}, {"name": "X-Env", "value": "prod"}],
        "remove": ["cookie"],
    }
    assert row["policies"]["timeouts"] == {}  # no request limit
    assert row["backends"] == [{"backend": "u", "weight": 3, "state": "NoReadyEndpoints", "endpoints": 0, "protocol": "HTTP/1.1"}]
    assert "Bearer abc" not in repr(table_to_json(table))
