"""Offline stand-in for the API server's handling of APIEndpoint objects (test support).

No kube-apiserver runs here, so the tests of crds/ and deploy/ do what it would do with a custom
resource, in the order it does it: apply the schema's defaults, validate against the
openAPIV3Schema (as JSON Schema, with unknown fields rejected as ``kubectl --validate=strict``
does), then evaluate every ``x-kubernetes-validations`` CEL rule on the node it is attached to,
with cel-python (``celpy``). Also renders kustomizations with ``kubectl kustomize`` (no cluster
needed) and validates built-in kinds with kubernetes-validate.

Used by tests/test_crd_*.py and tests/test_deploy_*.py.
"""

from __future__ import annotations

import copy
import functools
import subprocess
from pathlib import Path
from typing import Any, Iterator

import celpy
import jsonschema
import kubernetes_validate
import re2
import yaml

ROOT = Path(__file__).resolve().parent.parent
CRD_PATH = ROOT / "crds" / "apiendpoints.crdgate.io.yaml"
EXAMPLES_DIR = ROOT / "deploy" / "examples"
# The Kubernetes schemas objects are checked against (kubernetes-validate ships 1.25 onwards).
KUBE_VERSION = "1.31"


# -- loading and rendering -------------------------------------------------------------------


@functools.cache
def load_crd() -> dict:
    return yaml.safe_load(CRD_PATH.read_text())


def openapi_schema() -> dict:
    (version,) = load_crd()["spec"]["versions"]
    return version["schema"]["openAPIV3Schema"]


def load_docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


@functools.cache
def kustomize(directory: str) -> tuple[dict, ...]:
    """``kubectl kustomize`` of a folder under the repository root (cached: do not mutate)."""
    proc = subprocess.run(
        ["kubectl", "kustomize", str(ROOT / directory)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, f"kubectl kustomize {directory} failed:\n{proc.stderr}"
    return tuple(d for d in yaml.safe_load_all(proc.stdout) if d)


def find(objects: tuple[dict, ...], kind: str, name: str) -> dict:
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def validate_builtin(obj: dict) -> None:
    """Raise kubernetes_validate.ValidationError unless obj is valid for KUBE_VERSION (strict)."""
    kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)


# -- structural schema -> JSON Schema ----------------------------------------------------------


def to_jsonschema(node: Any, strict: bool = True) -> Any:
    """The openAPIV3Schema as a JSON Schema document.

    Kubernetes extensions are dropped (CEL is evaluated separately); with ``strict``, an object
    that lists its properties accepts no others, as the API server's strict field validation.
    """
    if isinstance(node, list):
        return [to_jsonschema(n, strict) for n in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key.startswith("x-kubernetes-") or key in ("nullable", "format"):
            continue
        if key == "properties":
            out[key] = {name: to_jsonschema(sub, strict) for name, sub in value.items()}
        elif key in ("items", "additionalProperties", "not", "anyOf", "allOf", "oneOf"):
            out[key] = to_jsonschema(value, strict)
        else:
            out[key] = copy.deepcopy(value)
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    if strict and "properties" in node and "additionalProperties" not in node:
        out["additionalProperties"] = False
    return out


def _re2_pattern(validator, pattern: str, instance: Any, schema: dict):
    """``pattern`` as the API server applies it: Go's regexp, RE2 syntax, where '$' is the
    end of the text (Python's re also lets it match before a final newline, so "/x\\n"
    would pass a pattern that the API server refuses it with)."""
    if validator.is_type(instance, "string") and re2.search(pattern, instance) is None:
        yield jsonschema.ValidationError(f"{instance!r} does not match {pattern!r}")


@functools.cache
def _validator() -> jsonschema.protocols.Validator:
    schema = to_jsonschema(openapi_schema())
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    cls.check_schema(schema)
    return jsonschema.validators.extend(cls, {"pattern": _re2_pattern})(schema)


# -- defaulting --------------------------------------------------------------------------------


def apply_defaults(schema: dict, value: Any) -> Any:
    """A copy of value with the schema's defaults filled in where a field is absent.

    As the API server does: only inside objects that are present, recursively.
    """
    value = copy.deepcopy(value)
    _default_in_place(schema, value)
    return value


def _default_in_place(schema: dict, value: Any) -> None:
    if isinstance(value, dict):
        for name, sub in (schema.get("properties") or {}).items():
            if name not in value and "default" in sub:
                value[name] = copy.deepcopy(sub["default"])
            if name in value:
                _default_in_place(sub, value[name])
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for key in value:
                _default_in_place(extra, value[key])
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for item in value:
            _default_in_place(schema["items"], item)


# -- CEL ---------------------------------------------------------------------------------------

_CEL = celpy.Environment()


@functools.cache
def cel_program(rule: str) -> celpy.Runner:
    return _CEL.program(_CEL.compile(rule))


def iter_rules(schema: dict, path: str = "") -> Iterator[tuple[str, dict, dict]]:
    """Every CEL rule as (schema path such as ``.spec.backends[*]``, rule, the node it is on)."""
    for rule in schema.get("x-kubernetes-validations") or ():
        yield path, rule, schema
    for name, sub in (schema.get("properties") or {}).items():
        yield from iter_rules(sub, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        yield from iter_rules(schema["items"], f"{path}[*]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from iter_rules(schema["additionalProperties"], f"{path}[*]")


def cel_errors(schema: dict, value: Any, path: str = "") -> list[str]:
    """Evaluate every rule on every present node; a rule that is false or errors fails."""
    errors: list[str] = []
    if value is None:
        return errors
    for rule in schema.get("x-kubernetes-validations") or ():
        try:
            result = cel_program(rule["rule"]).evaluate({"self": celpy.json_to_cel(value)})
        except celpy.CELEvalError as exc:  # the API server rejects on evaluation errors too
            result = exc
        if not (isinstance(result, celpy.celtypes.BoolType) and bool(result)):
            where = (path + rule.get("fieldPath", "")).lstrip(".")
            detail = "" if isinstance(result, celpy.celtypes.BoolType) else f" (error: {result})"
            errors.append(f"{where or '<root>'}: {rule['message']}{detail}")
    if isinstance(value, dict):
        for name, sub in (schema.get("properties") or {}).items():
            if name in value:
                errors += cel_errors(sub, value[name], f"{path}.{name}")
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for key, item in value.items():
                errors += cel_errors(extra, item, f"{path}[{key}]")
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            errors += cel_errors(schema["items"], item, f"{path}[{i}]")
    return errors


# -- the whole admission path ------------------------------------------------------------------


def schema_errors(obj: dict) -> list[str]:
    """OpenAPI (JSON Schema) errors of an already defaulted object."""
    return [
        f"{'.'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message}"
        for e in sorted(_validator().iter_errors(obj), key=lambda e: list(map(str, e.absolute_path)))
    ]


def admit(obj: dict) -> tuple[dict, list[str]]:
    """What the API server would store for obj (defaults applied) and why it would refuse it.

    An empty error list means the object is accepted.
    """
    schema = openapi_schema()
    defaulted = apply_defaults(schema, obj)
    return defaulted, schema_errors(defaulted) + cel_errors(schema, defaulted)


def api_endpoint(spec: dict, name: str = "route", namespace: str = "shop") -> dict:
    return {
        "apiVersion": "crdgate.io/v1",
        "kind": "APIEndpoint",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }
