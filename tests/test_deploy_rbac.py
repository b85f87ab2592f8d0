"""RBAC grants exactly what the gateway uses: no wildcards, no verb more."""

from __future__ import annotations

import re

from crd_support import ROOT, find, kustomize

# (apiGroup, resource) -> verbs
CLUSTER_GRANTS = {
    ("crdgate.io", "apiendpoints"): {"get", "list", "watch"},
    ("", "services"): {"get", "list", "watch"},
    ("discovery.k8s.io", "endpointslices"): {"get", "list", "watch"},
    ("networking.k8s.io", "ingresses"): {"get", "list", "watch"},
    ("networking.k8s.io", "ingressclasses"): {"get", "list", "watch"},
    ("", "secrets"): {"get", "list", "watch"},
    # Namespace labels: a Gateway listener's allowedRoutes may select namespaces by them.
    ("", "namespaces"): {"get", "list", "watch"},
    # Permission for cross-namespace references (controller/refgrant.py); read only.
    ("gateway.networking.k8s.io", "referencegrants"): {"get", "list", "watch"},
    # Gateway API's routing kinds (controller/gatewayapi/), and their status.
    ("gateway.networking.k8s.io", "gatewayclasses"): {"get", "list", "watch"},
    ("gateway.networking.k8s.io", "gateways"): {"get", "list", "watch"},
    ("gateway.networking.k8s.io", "httproutes"): {"get", "list", "watch"},
    ("gateway.networking.k8s.io", "grpcroutes"): {"get", "list", "watch"},
    ("gateway.networking.k8s.io", "gatewayclasses/status"): {"patch", "update"},
    ("gateway.networking.k8s.io", "gateways/status"): {"patch", "update"},
    ("gateway.networking.k8s.io", "httproutes/status"): {"patch", "update"},
    ("gateway.networking.k8s.io", "grpcroutes/status"): {"patch", "update"},
    ("crdgate.io", "apiendpoints/status"): {"patch", "update"},
    ("networking.k8s.io", "ingresses/status"): {"patch", "update"},
}
# Leader election: create any Lease (RBAC cannot name what is created), read and renew only ours.
NAMESPACE_GRANTS = {
    ("coordination.k8s.io", "leases"): {"create"},
    ("coordination.k8s.io", "leases/crdgate-leader"): {"get", "update"},
}


def _grants(role: dict) -> dict[tuple[str, str], set[str]]:
    """(apiGroup, resource or resource/name) -> verbs."""
    out: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        assert "nonResourceURLs" not in rule
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for name in rule.get("resourceNames") or [None]:
                    key = (group, resource if name is None else f"{resource}/{name}")
                    out.setdefault(key, set()).update(rule["verbs"])
    return out


def test_no_wildcards_anywhere():
    for obj in kustomize("deploy/redis"):
        if obj["kind"] in ("ClusterRole", "Role"):
            for rule in obj["rules"]:
                for field in ("apiGroups", "resources", "verbs"):
                    assert not any("*" in v for v in rule.get(field, ())), f"{obj['metadata']['name']}: {rule}"


def test_cluster_role_is_exact():
    assert _grants(find(kustomize("deploy"), "ClusterRole", "crdgate")) == CLUSTER_GRANTS


def test_leader_election_role_is_exact_and_namespaced():
    role = find(kustomize("deploy"), "Role", "crdgate-leader-election")
    assert role["metadata"]["namespace"] == "crdgate-system"
    assert _grants(role) == NAMESPACE_GRANTS


def test_role_names_the_lease_the_gateway_uses():
    """The Role's resourceNames and namespace follow the CLI's --lease-name/--lease-namespace defaults."""
    cli = (ROOT / "crdgate" / "cli.py").read_text()
    defaults = dict(re.findall(r'"--(lease-name|lease-namespace)",\s*"([^"]+)"', cli))
    assert defaults == {"lease-name": "crdgate-leader", "lease-namespace": "crdgate-system"}
    args = find(kustomize("deploy"), "Deployment", "crdgate")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert not {"--lease-name", "--lease-namespace"} & set(args)


def test_only_these_roles_exist():
    roles = [(o["kind"], o["metadata"]["name"]) for o in kustomize("deploy/redis") if o["kind"] in ("ClusterRole", "Role")]
    assert sorted(roles) == [("ClusterRole", "crdgate"), ("Role", "crdgate-leader-election")]


def test_bindings_give_the_roles_to_the_gateway_service_account():
    objects = kustomize("deploy")
    subject = [{"kind": "ServiceAccount", "name": "crdgate", "namespace": "crdgate-system"}]
    cluster = find(objects, "ClusterRoleBinding", "crdgate")
    assert cluster["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "crdgate"}
    assert cluster["subjects"] == subject
    local = find(objects, "RoleBinding", "crdgate-leader-election")
    assert local["metadata"]["namespace"] == "crdgate-system"
    assert local["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "crdgate-leader-election"}
    assert local["subjects"] == subject
    pod = find(objects, "Deployment", "crdgate")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == subject[0]["name"]
