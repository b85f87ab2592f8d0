"""The CRD's schema is one the API server accepts: structural, bounded, with well-formed CEL.

The API server refuses a CRD whose schema is not structural, and refuses CEL rules whose
estimated cost is too high; that estimate is driven by the maxLength / maxItems / maxProperties
of what the rules can reach. With no API server here, these checks encode those rules.
"""

from __future__ import annotations

import re
from typing import Iterator

import jsonschema
import pytest
import re2

from crd_support import cel_program, iter_rules, openapi_schema, to_jsonschema

TYPES = {"object", "array", "string", "integer", "number", "boolean"}
SCALARS = {"string", "integer", "number", "boolean"}
JUNCTORS = ("anyOf", "allOf", "oneOf", "not")
INT_OR_STRING_ANYOF = [{"type": "integer"}, {"type": "string"}]
REASONS = {"FieldValueInvalid", "FieldValueForbidden", "FieldValueRequired", "FieldValueDuplicate"}
# Functions of standard CEL that Kubernetes' CEL environment has (no extension libraries used).
# Property names Kubernetes must escape in CEL (__name__); a rule reading them needs care.
CEL_RESERVED = {"true", "false", "null", "in", "as", "break", "const", "continue", "else", "for",
                "function", "if", "import", "let", "loop", "package", "namespace", "return", "var",
                "void", "while"}
CEL_FUNCTIONS = {"has", "size", "startsWith", "endsWith", "contains", "matches", "exists",
                 "all", "exists_one", "duration", "int", "string", "type"}


def _nodes(node: dict, path: str = "") -> Iterator[tuple[str, dict]]:
    yield path, node
    for name, sub in (node.get("properties") or {}).items():
        yield from _nodes(sub, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from _nodes(node["items"], f"{path}[*]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from _nodes(node["additionalProperties"], f"{path}{{*}}")


def _structural_problems(path: str, node: dict) -> list[str]:
    problems: list[str] = []
    int_or_string = node.get("x-kubernetes-int-or-string") is True
    for junctor in JUNCTORS:
        if junctor in node and not (int_or_string and junctor == "anyOf" and node["anyOf"] == INT_OR_STRING_ANYOF):
            problems.append(f"{path}: {junctor} other than the int-or-string pattern")
    if int_or_string:
        if "type" in node:
            problems.append(f"{path}: int-or-string must not set type")
        return problems
    kind = node.get("type")
    if kind not in TYPES:
        problems.append(f"{path}: type {kind!r} missing or unknown")
    if kind == "object":
        props = node.get("properties") or {}
        if props and "additionalProperties" in node:
            problems.append(f"{path}: both properties and additionalProperties")
        missing = set(node.get("required", ())) - set(props)
        if missing:
            problems.append(f"{path}: required names unknown properties {sorted(missing)}")
    if kind == "array" and not isinstance(node.get("items"), dict):
        problems.append(f"{path}: array without items")
    list_type = node.get("x-kubernetes-list-type")
    if list_type == "map":
        item = node["items"]
        for key in node.get("x-kubernetes-list-map-keys", ()):
            sub = (item.get("properties") or {}).get(key)
            if sub is None or sub.get("type") not in SCALARS:
                problems.append(f"{path}: list-map key {key!r} is not a scalar property")
            elif key not in item.get("required", ()) and "default" not in sub:
                problems.append(f"{path}: list-map key {key!r} neither required nor defaulted")
        if not node.get("x-kubernetes-list-map-keys"):
            problems.append(f"{path}: list-type map without keys")
    elif list_type == "set" and node["items"].get("type") not in SCALARS:
        problems.append(f"{path}: list-type set of non-scalars")
    elif list_type not in (None, "atomic", "set"):
        problems.append(f"{path}: unknown list type {list_type!r}")
    if "default" in node:
        try:
            jsonschema.Draft202012Validator(to_jsonschema(node)).validate(node["default"])
        except jsonschema.ValidationError as exc:
            problems.append(f"{path}: default {node['default']!r} invalid: {exc.message}")
    return problems


def test_schema_is_structural():
    root = openapi_schema()
    assert root["type"] == "object"
    assert set(root["properties"]) == {"apiVersion", "kind", "metadata", "spec", "status"}
    problems = [p for path, node in _nodes(root) for p in _structural_problems(path or "<root>", node)]
    assert problems == []


def test_patterns_are_go_regexps():
    """The API server compiles patterns with Go's regexp (RE2 syntax), jsonschema with Python's re."""
    patterns = [(path, node["pattern"]) for path, node in _nodes(openapi_schema()) if "pattern" in node]
    assert len(patterns) > 10
    for path, pattern in patterns:
        re2.compile(pattern)
        re.compile(pattern)


def _unbounded(path: str, node: dict) -> str | None:
    if node.get("x-kubernetes-int-or-string"):
        return None if "maxLength" in node else f"{path}: int-or-string without maxLength"
    kind = node.get("type")
    if kind == "string" and not ({"maxLength", "enum"} & set(node) or node.get("format") == "date-time"):
        return f"{path}: string without maxLength"
    if kind == "array" and "maxItems" not in node:
        return f"{path}: array without maxItems"
    if kind == "object" and "additionalProperties" in node and "maxProperties" not in node:
        return f"{path}: map without maxProperties"
    return None


@pytest.mark.parametrize("part", ["spec", "status"])
def test_every_string_list_and_map_is_bounded(part):
    problems = [p for path, node in _nodes(openapi_schema()["properties"][part], f".{part}")
                if (p := _unbounded(path, node))]
    assert problems == []


def _rules() -> list[tuple[str, dict, dict]]:
    rules = list(iter_rules(openapi_schema()))
    assert len(rules) >= 10, "the CRD lost its CEL rules"
    return rules


def _resolve(node: dict, names: list[str]) -> dict | None:
    for name in names:
        node = (node.get("properties") or {}).get(name)
        if node is None:
            return None
    return node


# `self.a.b` chains, stopping before a method call such as `.startsWith(`.
SELF_FIELDS = re.compile(r"\bself((?:\.[A-Za-z_]\w*\b(?!\())+)")


@pytest.mark.parametrize("path,rule,node", _rules(), ids=lambda v: v if isinstance(v, str) else "")
def test_cel_rule_is_well_formed(path, rule, node):
    text = rule["rule"]
    cel_program(text)  # compiles
    assert rule.get("message"), f"{path}: rule without message"
    assert rule.get("reason", "FieldValueInvalid") in REASONS
    assert "oldSelf" not in text, "transition rules need a different test"
    for chain in SELF_FIELDS.findall(text):
        names = chain.strip(".").split(".")
        assert _resolve(node, names) is not None, f"{path}: rule names unknown field self.{'.'.join(names)}"
        assert not CEL_RESERVED & set(names), f"{path}: reserved CEL word in self.{'.'.join(names)}"
    if "fieldPath" in rule:
        names = rule["fieldPath"].strip(".").split(".")
        assert _resolve(node, names) is not None, f"{path}: fieldPath {rule['fieldPath']} not in schema"
    functions = set(re.findall(r"([A-Za-z_]\w*)\s*\(", text))
    assert functions <= CEL_FUNCTIONS, f"{path}: functions outside Kubernetes CEL: {functions - CEL_FUNCTIONS}"



def test_seed_fields_keep_their_seed_types():
    spec = openapi_schema()["properties"]["spec"]
    assert spec["required"] == ["path"]
    props = spec["properties"]
    assert props["path"]["type"] == "string"
    assert props["method"]["type"] == "string"
    assert props["backendService"]["type"] == "string"
    assert props["authRequired"]["type"] == "boolean"
    assert props["rateLimit"]["properties"]["requestsPerMinute"]["minimum"] == 1
    assert props["rateLimit"]["properties"]["burst"]["minimum"] == 0
