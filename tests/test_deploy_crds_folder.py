"""`kubectl apply -f crds/` works: every file kubectl would read there is a cluster object it can apply.

kubectl reads *.yaml, *.yml and *.json in the folder and sends every document to the API server,
so a kustomization.yaml there would be sent as an object of kind Kustomization and fail.
A client dry-run of kubectl still needs a server, so this checks what kubectl would send.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from crd_support import kustomize

ROOT = Path(__file__).resolve().parent.parent
CRDS = ROOT / "crds"
KUBECTL_READS = (".yaml", ".yml", ".json")  # kubectl's FileExtensions for -f DIR
APPLICABLE = {("apiextensions.k8s.io/v1", "CustomResourceDefinition"), ("networking.k8s.io/v1", "IngressClass")}


def test_every_file_kubectl_reads_in_crds_is_a_crd_or_an_ingressclass():
    files = sorted(p for p in CRDS.iterdir() if p.suffix in KUBECTL_READS)
    assert files, "crds/ holds no manifests"
    found = []
    for path in files:
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is None:
                continue
            assert (doc.get("apiVersion"), doc.get("kind")) in APPLICABLE, f"{path.name}: {doc.get('kind')}"
            assert doc["metadata"]["name"]
            found.append(doc["kind"])
    assert sorted(found) == ["CustomResourceDefinition", "IngressClass"]


def test_deploy_still_installs_what_crds_holds():
    rendered = {(o["kind"], o["metadata"]["name"]) for o in kustomize("deploy")}
    assert {("CustomResourceDefinition", "apiendpoints.crdgate.io"), ("IngressClass", "crdgate")} <= rendered
