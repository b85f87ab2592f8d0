"""`crdgate validate DIR`: one line per object, load errors, and the exit verdict."""

from __future__ import annotations

from pathlib import Path

from controller.compile import CompileOptions
from crdgate.report import validate_json, validate_report

BASE = """\
apiVersion: v1
kind: Service
metadata: {name: users, namespace: shop}
spec: {ports: [{name: http, port: 80, targetPort: 8080}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: users-1, namespace: shop, labels: {kubernetes.io/service-name: users}}
addressType: IPv4
endpoints: [{addresses: [10.0.0.1], conditions: {ready: true}}]
ports: [{name: http, port: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: orders, namespace: shop}
spec: {ports: [{port: 80}]}
"""
GOOD = """\
apiVersion: crdgate.io/v1
kind: APIEndpoint
metadata: {name: list-users, namespace: shop}
spec: {path: /api/v1/users, method: GET, backendService: users}
---
apiVersion: crdgate.io/v1
kind: APIEndpoint
metadata: {name: orders, namespace: shop}
spec: {path: /orders, backendService: orders}
---
apiVersion: crdgate.io/v1
kind: APIEndpoint
metadata: {name: elsewhere, namespace: shop}
spec: {path: /x, backendService: users, ingressClassName: other}
"""
BAD = """\
apiVersion: crdgate.io/v1
kind: APIEndpoint
metadata: {name: bad, namespace: shop}
spec:
  path: /bad
  backends: [{service: {name: users, port: 80}, weight: -1}]
"""


def folder(tmp_path: Path, *files: tuple[str, str]) -> Path:
    for rel, text in files:
        (tmp_path / rel).write_text(text)
    return tmp_path


def line_for(text: str, name: str) -> str:
    (line,) = [ln for ln in text.splitlines() if f" shop/{name} " in ln]
    return line


def test_ready_and_pending_objects_pass(tmp_path):
    root = folder(tmp_path, ("base.yaml", BASE), ("routes.yaml", GOOD))
    text, ok = validate_report(root, CompileOptions())
    assert ok, text
    assert line_for(text, "list-users") == (
        f"OK      APIEndpoint shop/list-users ({root}/routes.yaml#0): GET /api/v1/users -> shop/users:80 [Ready]"
    )
    pending = line_for(text, "orders")
    assert pending.startswith("PENDING APIEndpoint shop/orders") and pending.endswith("[NoReadyEndpoints]")
    skipped = line_for(text, "elsewhere")
    assert skipped.startswith("SKIP") and "not for ingress class crdgate" in skipped


def test_invalid_spec_fails_and_names_the_field_and_origin(tmp_path):
    root = folder(tmp_path, ("base.yaml", BASE), ("routes.yaml", GOOD), ("bad.yaml", BAD))
    text, ok = validate_report(root, CompileOptions())
    assert not ok
    bad = line_for(text, "bad")
    assert bad.startswith(f"ERROR   APIEndpoint shop/bad ({root}/bad.yaml#0): spec.backends[0].weight")
    assert bad.endswith("[InvalidSpec]")


def test_load_errors_fail_and_are_listed(tmp_path):
    root = folder(tmp_path, ("base.yaml", BASE), ("broken.yaml", "kind: [\n"))
    text, ok = validate_report(root, CompileOptions())
    assert not ok
    assert any(ln.startswith(f"ERROR   {root}/broken.yaml:2:1: YAML: ") for ln in text.splitlines()), text


def test_ingress_class_option_decides_what_is_ours(tmp_path):
    pinned = GOOD.split("---")[0].replace("list-users", "pinned").replace("GET,", "GET, ingressClassName: crdgate,")
    root = folder(tmp_path, ("base.yaml", BASE), ("routes.yaml", GOOD), ("pinned.yaml", pinned))
    text, _ = validate_report(root, CompileOptions(ingress_class="other"))
    assert line_for(text, "elsewhere").startswith("OK      APIEndpoint shop/elsewhere")
    # No ingressClassName: the gateway's own class, whichever that is.
    assert line_for(text, "list-users").startswith("OK ")
    assert line_for(text, "pinned").startswith("SKIP    APIEndpoint shop/pinned")


def test_json_output_carries_the_same_verdicts(tmp_path):
    root = folder(tmp_path, ("base.yaml", BASE), ("routes.yaml", GOOD), ("bad.yaml", BAD), ("broken.yml", "a: [\n"))
    doc = validate_json(root, CompileOptions())
    assert doc["ok"] is False
    by_name = {o["name"]: o for o in doc["objects"]}
    assert by_name["list-users"]["state"] == "Ready"
    assert by_name["list-users"]["origin"] == f"{root}/routes.yaml#0"
    assert by_name["list-users"]["routes"][0]["path"] == "/api/v1/users"
    assert by_name["orders"]["reason"] == "NoReadyEndpoints"
    assert by_name["bad"]["state"] == "Error" and "spec.backends[0].weight" in by_name["bad"]["message"]
    assert [i["key"] for i in doc["ignored"]] == ["shop/elsewhere"]
    assert [e["file"] for e in doc["loadErrors"]] == [f"{root}/broken.yml"]
    assert doc["loadErrors"][0]["line"] is not None
    assert doc["summary"] == {"ready": 1, "pending": 1, "error": 1, "ignored": 1, "loadErrors": 1, "routes": 2}
