"""The manifests folder reads ReferenceGrants (v1beta1 and v1); a malformed one is an error."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from controller.files import load_folder
from crdgate.report import compile_folder
from gatewayproc import ROOT

CROSS = """\
apiVersion: crdgate.io/v1
kind: APIEndpoint
metadata: {name: steal, namespace: tenant-a}
spec:
  path: /steal
  backends: [{service: {name: db, namespace: tenant-b}}]
---
apiVersion: v1
kind: Service
metadata: {name: db, namespace: tenant-b}
spec: {ports: [{port: 80}]}
"""


def grant(version: str = "v1beta1", to: str = '{group: "", kind: Service}') -> str:
    return f"""\
apiVersion: gateway.networking.k8s.io/{version}
kind: ReferenceGrant
metadata: {{name: allow-a, namespace: tenant-b}}
spec:
  from: [{{group: crdgate.io, kind: APIEndpoint, namespace: tenant-a}}]
  to: [{to}]
"""


def test_grants_are_read_at_v1beta1_and_v1(tmp_path):
    (tmp_path / "a.yaml").write_text(grant("v1beta1"))
    (tmp_path / "b.yaml").write_text(grant("v1").replace("allow-a", "allow-b"))
    objects, origins, errors = load_folder(tmp_path)
    assert errors == []
    assert sorted(objects["ReferenceGrant"]) == ["tenant-b/allow-a", "tenant-b/allow-b"]
    assert origins["ReferenceGrant:tenant-b/allow-a"] == f"{tmp_path}/a.yaml#0"


def test_a_grant_in_the_folder_permits_the_reference(tmp_path):
    (tmp_path / "routes.yaml").write_text(CROSS)
    st = compile_folder(tmp_path).result.statuses["APIEndpoint:tenant-a/steal"]
    assert st.reason == "RefNotPermitted"
    (tmp_path / "grant.yaml").write_text(grant())
    st = compile_folder(tmp_path).result.statuses["APIEndpoint:tenant-a/steal"]
    assert st.reason == "NoReadyEndpoints"


def test_malformed_or_misversioned_grants_are_load_errors(tmp_path):
    (tmp_path / "typo.yaml").write_text(grant(to='{group: "", kind: Service, nmae: db}'))
    (tmp_path / "empty.yaml").write_text(grant(to=""))
    (tmp_path / "alpha.yaml").write_text(grant("v1alpha2").replace("allow-a", "allow-c"))
    _, _, errors = load_folder(tmp_path)
    messages = sorted(str(e) for e in errors)
    assert len(messages) == 3, messages
    assert "alpha.yaml" in messages[0] and "apiVersion must be gateway.networking.k8s.io/v1 or " in messages[0]
    assert "empty.yaml" in messages[1] and "spec.to: expected a non-empty list" in messages[1]
    assert "typo.yaml" in messages[2] and "spec.to[0]: unknown field(s) nmae" in messages[2]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "crdgate", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)


def test_validate_and_routes_accept_the_flag(tmp_path: Path):
    (tmp_path / "routes.yaml").write_text(CROSS)
    refused = run_cli("validate", str(tmp_path))
    assert refused.returncode == 1 and "[RefNotPermitted]" in refused.stdout
    assert "Service tenant-b/db is in another namespace" in refused.stdout
    allowed = run_cli("validate", str(tmp_path), "--allow-cross-namespace-refs", "on")
    assert allowed.returncode == 0 and "RefNotPermitted" not in allowed.stdout, allowed.stdout + allowed.stderr
    routes = run_cli("routes", str(tmp_path))
    assert "refused:tenant-b/db" in routes.stdout
    routes = run_cli("routes", str(tmp_path), "--allow-cross-namespace-refs", "on")
    assert "tenant-b/db" in routes.stdout and "refused:" not in routes.stdout
