"""The APIEndpoint CRD as an API object: names, version, columns, status, and docs/apiendpoint.md coverage."""

from __future__ import annotations

import re

import kubernetes_validate
import pytest

from crd_support import KUBE_VERSION, ROOT, load_crd, openapi_schema, validate_builtin


def test_crd_is_a_valid_apiextensions_v1_object():
    crd = load_crd()
    assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
    assert crd["kind"] == "CustomResourceDefinition"
    try:
        validate_builtin(crd)
    except kubernetes_validate.ValidationError as exc:
        pytest.fail(f"CRD invalid for Kubernetes {KUBE_VERSION}: {'.'.join(map(str, exc.path))}: {exc.message}")


def test_names_scope_and_single_served_storage_version():
    spec = load_crd()["spec"]
    assert load_crd()["metadata"]["name"] == "apiendpoints.crdgate.io"
    assert spec["group"] == "crdgate.io"
    assert spec["scope"] == "Namespaced"
    assert spec["names"] == {
        "kind": "APIEndpoint",
        "listKind": "APIEndpointList",
        "plural": "apiendpoints",
        "singular": "apiendpoint",
        "shortNames": ["apiend"],
        "categories": ["crdgate"],
    }
    (version,) = spec["versions"]
    assert (version["name"], version["served"], version["storage"]) == ("v1", True, True)
    assert version["subresources"] == {"status": {}}


def test_printer_columns():
    (version,) = load_crd()["spec"]["versions"]
    columns = {c["name"]: c for c in version["additionalPrinterColumns"]}
    assert {n: c["jsonPath"] for n, c in columns.items() if not c.get("priority")} == {
        "State": ".status.state",
        "Hosts": ".spec.hosts",
        "Path": ".spec.path",
        "Backend": ".spec.backendService",
        "Age": ".metadata.creationTimestamp",
    }
    assert columns["Age"]["type"] == "date"


def test_status_has_state_observed_generation_and_standard_conditions():
    status = openapi_schema()["properties"]["status"]["properties"]
    assert status["state"]["enum"] == ["Ready", "Pending", "Error"]
    assert status["message"]["type"] == "string"
    assert status["observedGeneration"]["type"] == "integer"
    conditions = status["conditions"]
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
    item = conditions["items"]
    # The shape of metav1.Condition.
    assert set(item["properties"]) == {
        "type", "status", "reason", "message", "lastTransitionTime", "observedGeneration",
    }
    assert set(item["required"]) == {"type", "status", "reason", "message", "lastTransitionTime"}
    assert item["properties"]["status"]["enum"] == ["True", "False", "Unknown"]
    assert item["properties"]["lastTransitionTime"]["format"] == "date-time"


def _reference_fields() -> set[str]:
    """Field names of docs/apiendpoint.md's field table (between its API-REFERENCE markers)."""
    text = (ROOT / "docs" / "apiendpoint.md").read_text()
    start, end = text.index("<!-- API-REFERENCE -->"), text.index("<!-- /API-REFERENCE -->")
    fields: set[str] = set()
    for line in text[start:end].splitlines():
        cells = line.split("|")
        if line.startswith("|") and len(cells) > 2 and "`" in cells[1]:
            fields.update(re.findall(r"`([A-Za-z]+)`", cells[1]))
    return fields


def test_every_field_of_the_reference_is_in_the_schema():
    fields = _reference_fields()
    assert {"path", "backendService", "rateLimit", "mirror"} <= fields, "reference table not parsed"
    spec = openapi_schema()["properties"]["spec"]["properties"]
    assert sorted(fields - set(spec)) == []


def test_every_field_of_the_schema_is_in_the_reference():
    spec = openapi_schema()["properties"]["spec"]["properties"]
    assert sorted(set(spec) - _reference_fields()) == []


def test_defaults_named_in_the_reference():
    spec = openapi_schema()["properties"]["spec"]["properties"]
    assert spec["pathType"]["default"] == "Prefix"
    assert spec["loadBalancer"]["default"] == "RoundRobin"
    assert spec["backends"]["items"]["properties"]["weight"]["default"] == 1
    assert spec["rateLimit"]["properties"]["scope"]["default"] == "Local"
    assert spec["rateLimit"]["properties"]["key"]["default"] == "ClientAddress"
    assert spec["redirect"]["properties"]["statusCode"]["default"] == 302
    assert spec["headers"]["items"]["properties"]["type"]["default"] == "Exact"
    # No default class: an APIEndpoint without one belongs to whichever gateway runs with its
    # own --ingress-class, which a CRD default would pin to "crdgate".
    assert "default" not in spec["ingressClassName"]
