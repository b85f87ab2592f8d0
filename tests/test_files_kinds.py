"""Which kinds the folder source reads, refuses as typos, or ignores (and says so).

A kind crdgate owns or knows in full (crdgate.io, networking.k8s.io, Gateway API) that is
not one of its kinds is a typo: a load error naming the file, the document and the nearest
known kind, never an object silently left out. Kinds of other groups are ignored, and
``crdgate validate`` says how many of which kinds.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from controller.files import load_manifests
from crdgate.report import validate_json, validate_report

ROOT = Path(__file__).resolve().parent.parent

ROUTE = """\
apiVersion: crdgate.io/v1
kind: {kind}
metadata: {{name: list-users, namespace: shop}}
spec: {{path: /api/v1/users, backends: [{{url: "http://127.0.0.1:9000"}}]}}
"""


@pytest.mark.parametrize("api_version,kind,suggestion", [
    ("crdgate.io/v1", "APIEndpiont", "did you mean APIEndpoint?"),
    ("crdgate.io/v1", "apiendpoint", "did you mean APIEndpoint?"),
    ("networking.k8s.io/v1", "Ingres", "did you mean Ingress?"),
    ("networking.k8s.io/v1", "IngressClas", "did you mean IngressClass?"),
    ("gateway.networking.k8s.io/v1", "HTTPRoue", "did you mean HTTPRoute?"),
])
def test_unknown_kind_of_a_known_group_is_a_load_error(tmp_path, api_version, kind, suggestion):
    (tmp_path / "a.yaml").write_text("apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n---\n"
                                     + ROUTE.format(kind=kind).replace("crdgate.io/v1", api_version))
    loaded = load_manifests(tmp_path)
    assert len(loaded.errors) == 1, loaded.errors
    text = str(loaded.errors[0])
    assert text.startswith(f"{tmp_path / 'a.yaml'}:5: "), text
    assert kind in text and suggestion in text


def test_a_typo_fails_validate_with_file_document_and_suggestion(tmp_path):
    (tmp_path / "routes.yaml").write_text(ROUTE.format(kind="APIEndpoint") + "---\n" + ROUTE.format(kind="APIEndpiont"))
    text, ok = validate_report(tmp_path)
    assert not ok
    assert f"ERROR   {tmp_path / 'routes.yaml'}:6: APIEndpiont list-users: " in text
    assert "did you mean APIEndpoint?" in text


def test_kinds_crdgate_knows_but_does_not_read_are_no_error(tmp_path):
    (tmp_path / "a.yaml").write_text(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p}\n---\n"
        "apiVersion: gateway.networking.k8s.io/v1alpha2\nkind: TLSRoute\nmetadata: {name: r}\n"
    )
    loaded = load_manifests(tmp_path)
    assert loaded.errors == []
    assert loaded.ignored == {"NetworkPolicy": 1, "TLSRoute": 1}


def test_other_groups_are_ignored_and_counted_by_kind(tmp_path):
    (tmp_path / "a.yaml").write_text(
        ROUTE.format(kind="APIEndpoint")
        + "---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: a}\n"
        + "---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: b}\n"
        + "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: shop}\n"
        + "---\napiVersion: example.com/v1\nkind: APIEndpiont\nmetadata: {name: theirs}\n"
    )
    text, ok = validate_report(tmp_path)
    assert ok, text
    assert "IGNORED 4 object(s) of kinds crdgate does not read: APIEndpiont (1), ConfigMap (1), Deployment (2)" in text
    doc = validate_json(tmp_path)
    assert doc["ignoredKinds"] == {"APIEndpiont": 1, "ConfigMap": 1, "Deployment": 2}


def test_nothing_ignored_says_nothing(tmp_path):
    (tmp_path / "a.yaml").write_text(ROUTE.format(kind="APIEndpoint"))
    text, _ = validate_report(tmp_path)
    assert "IGNORED" not in text


def test_validate_cli_fails_on_a_kind_typo(tmp_path):
    (tmp_path / "a.yaml").write_text(ROUTE.format(kind="APIEndpiont"))
    proc = subprocess.run([sys.executable, "-m", "crdgate", "validate", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "did you mean APIEndpoint?" in proc.stdout
