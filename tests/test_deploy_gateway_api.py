"""deploy/gateway-api: crdgate's GatewayClass and a sample Gateway, valid for the models, and
the ClusterRole grants what the kube source reads of Gateway API."""

from __future__ import annotations

import re
from collections import Counter

from crd_support import ROOT, find, kustomize

from controller.gatewayapi.objects import CONTROLLER_NAME, parse
from controller.kube import OPTIONAL_KINDS
from controller.kubeapi import NAMESPACES

DOC = ROOT / "docs" / "gateway-api.md"


def test_renders_a_gatewayclass_and_a_gateway():
    assert Counter(o["kind"] for o in kustomize("deploy/gateway-api")) == Counter({"GatewayClass": 1, "Gateway": 1})


def test_every_object_is_valid_for_the_models():
    for obj in kustomize("deploy/gateway-api"):
        assert obj["apiVersion"] == "gateway.networking.k8s.io/v1"
        parse(obj["kind"], obj)


def test_the_gatewayclass_is_crdgates_and_the_gateway_uses_it():
    objects = kustomize("deploy/gateway-api")
    gc = parse("GatewayClass", find(objects, "GatewayClass", "crdgate"))
    assert gc.spec.controller_name == CONTROLLER_NAME
    gw = parse("Gateway", find(objects, "Gateway", "crdgate"))
    assert gw.spec.gateway_class_name == gc.metadata.name
    # In the namespace deploy/ creates, beside the gateway.
    assert gw.metadata.namespace == find(kustomize("deploy"), "Namespace", "crdgate-system")["metadata"]["name"]
    http, https = gw.spec.listener("http"), gw.spec.listener("https")
    assert (http.port, http.protocol, http.tls) == (80, "HTTP", None)
    assert (https.port, https.protocol, https.tls.mode) == (443, "HTTPS", "Terminate")
    assert [(r.kind, r.name) for r in https.tls.certificate_refs] == [("Secret", "crdgate-tls")]


def test_the_crds_are_pinned_to_one_release_everywhere():
    """The install command in the kustomization and in the docs name the same release."""
    pattern = r"gateway-api/releases/download/(v\d+\.\d+\.\d+)/standard-install\.yaml"
    in_kustomization = re.findall(pattern, (ROOT / "deploy/gateway-api/kustomization.yaml").read_text())
    in_docs = re.findall(pattern, DOC.read_text())
    assert in_kustomization and in_docs
    assert set(in_kustomization) == set(in_docs) and len(set(in_docs)) == 1


def _grants() -> dict[tuple[str, str], set[str]]:
    out: dict[tuple[str, str], set[str]] = {}
    for rule in find(kustomize("deploy"), "ClusterRole", "crdgate")["rules"]:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                out.setdefault((group, resource), set()).update(rule["verbs"])
    return out


def test_the_cluster_role_grants_what_the_kube_source_reads():
    grants = _grants()
    read = [NAMESPACES] + [r for resources in OPTIONAL_KINDS.values() for r in resources]
    for resource in read:
        assert {"get", "list", "watch"} <= grants.get((resource.group, resource.plural), set()), resource
    for plural in ("gatewayclasses", "gateways", "httproutes"):
        assert grants[("gateway.networking.k8s.io", f"{plural}/status")] == {"patch", "update"}
