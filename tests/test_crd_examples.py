"""Every example under deploy/examples/ is what a cluster would accept.

APIEndpoints are checked against the CRD (defaults, OpenAPI schema, CEL rules); other kinds
against the Kubernetes schemas. No examples at all is a failure, not a skip: the folder is part
of the product (the file source's demo, the README's quick start).
"""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate

from crd_support import EXAMPLES_DIR, KUBE_VERSION, admit, load_docs, validate_builtin


def _example_objects() -> list[tuple[Path, dict]]:
    files = sorted([*EXAMPLES_DIR.glob("*.yaml"), *EXAMPLES_DIR.glob("*.yml")])
    return [(f, doc) for f in files for doc in load_docs(f)]


def _label(path: Path, obj: dict) -> str:
    meta = obj.get("metadata") or {}
    return f"{path.name}: {obj.get('kind')} {meta.get('namespace', '')}/{meta.get('name', '')}"


def test_examples_hold_apiendpoints():
    endpoints = [o for _, o in _example_objects() if o.get("kind") == "APIEndpoint"]
    assert endpoints, f"no APIEndpoint in {EXAMPLES_DIR}/*.yaml"


def test_every_example_apiendpoint_is_accepted_by_the_crd():
    problems = []
    for path, obj in _example_objects():
        if obj.get("kind") != "APIEndpoint":
            continue
        if obj.get("apiVersion") != "crdgate.io/v1":
            problems.append(f"{_label(path, obj)}: apiVersion {obj.get('apiVersion')!r}, want crdgate.io/v1")
        problems += [f"{_label(path, obj)}: {e}" for e in admit(obj)[1]]
    assert problems == []


def test_every_other_example_object_is_valid_kubernetes():
    problems = []
    for path, obj in _example_objects():
        if obj.get("kind") == "APIEndpoint":
            continue
        try:
            validate_builtin(obj)
        except kubernetes_validate.ValidationError as exc:
            problems.append(f"{_label(path, obj)}: {'.'.join(map(str, exc.path))}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError:
            problems.append(f"{_label(path, obj)}: no Kubernetes {KUBE_VERSION} schema for {obj.get('apiVersion')}")
    assert problems == []
