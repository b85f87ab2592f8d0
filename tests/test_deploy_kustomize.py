"""deploy/ and deploy/redis render offline with kubectl kustomize into valid Kubernetes objects."""

from __future__ import annotations

from collections import Counter

import kubernetes_validate
import pytest

from crd_support import KUBE_VERSION, find, kustomize, load_crd, validate_builtin

BASE_KINDS = Counter({
    "Namespace": 1,
    "CustomResourceDefinition": 1,
    "IngressClass": 1,
    "ServiceAccount": 1,
    "ClusterRole": 1,
    "ClusterRoleBinding": 1,
    "Role": 1,
    "RoleBinding": 1,
    "Deployment": 1,
    "Service": 2,
    "PodDisruptionBudget": 1,
    "HorizontalPodAutoscaler": 1,
    "NetworkPolicy": 1,
})
REDIS_KINDS = BASE_KINDS + Counter({"Deployment": 1, "Service": 1, "NetworkPolicy": 1})
CLUSTER_SCOPED = {"Namespace", "CustomResourceDefinition", "IngressClass", "ClusterRole", "ClusterRoleBinding"}


@pytest.mark.parametrize("directory,kinds", [("deploy", BASE_KINDS), ("deploy/redis", REDIS_KINDS)])
def test_renders_the_expected_kinds(directory, kinds):
    assert Counter(o["kind"] for o in kustomize(directory)) == kinds


@pytest.mark.parametrize("directory", ["deploy", "deploy/redis"])
def test_every_rendered_object_is_valid(directory):
    problems = []
    for obj in kustomize(directory):
        try:
            validate_builtin(obj)
        except kubernetes_validate.ValidationError as exc:
            problems.append(f"{obj['kind']} {obj['metadata']['name']}: {'.'.join(map(str, exc.path))}: {exc.message}")
    assert problems == [], f"invalid for Kubernetes {KUBE_VERSION}"


@pytest.mark.parametrize("directory", ["deploy", "deploy/redis"])
def test_namespaced_objects_live_in_crdgate_system(directory):
    wrong = [f"{o['kind']} {o['metadata']['name']}: {o['metadata'].get('namespace')}"
             for o in kustomize(directory)
             if o["kind"] not in CLUSTER_SCOPED and o["metadata"].get("namespace") != "crdgate-system"]
    assert wrong == []
    assert all("namespace" not in o["metadata"] for o in kustomize(directory) if o["kind"] in CLUSTER_SCOPED)


def test_the_installed_crd_is_the_one_in_crds():
    rendered = find(kustomize("deploy"), "CustomResourceDefinition", "apiendpoints.crdgate.io")
    assert rendered["spec"] == load_crd()["spec"]


def test_ingress_class():
    cls = find(kustomize("deploy"), "IngressClass", "crdgate")
    assert cls["spec"] == {"controller": "crdgate.io/gateway"}


def test_redis_overlay_points_the_gateway_at_redis():
    gateway = find(kustomize("deploy/redis"), "Deployment", "crdgate")
    args = gateway["spec"]["template"]["spec"]["containers"][0]["args"]
    base_args = find(kustomize("deploy"), "Deployment", "crdgate")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args == base_args + ["--redis-url", "redis://crdgate-redis:6379/0"]
    service = find(kustomize("deploy/redis"), "Service", "crdgate-redis")
    assert service["spec"]["ports"][0]["port"] == 6379
    redis = find(kustomize("deploy/redis"), "Deployment", "crdgate-redis")
    pod_labels = redis["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    container = redis["spec"]["template"]["spec"]["containers"][0]
    assert ":" in container["image"] and not container["image"].endswith(":latest")
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert redis["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True


def test_redis_accepts_only_the_gateway():
    objects = kustomize("deploy/redis")
    policy = find(objects, "NetworkPolicy", "crdgate-redis")
    gateway_labels = find(objects, "Deployment", "crdgate")["spec"]["template"]["metadata"]["labels"]
    redis_labels = find(objects, "Deployment", "crdgate-redis")["spec"]["template"]["metadata"]["labels"]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= redis_labels.items()
    assert not policy["spec"]["podSelector"]["matchLabels"].items() <= gateway_labels.items()
    (rule,) = policy["spec"]["ingress"]
    (peer,) = rule["from"]
    assert peer["podSelector"]["matchLabels"].items() <= gateway_labels.items()
    assert [p["port"] for p in rule["ports"]] == [6379]


@pytest.mark.parametrize("directory", ["deploy", "deploy/redis"])
def test_pods_meet_the_restricted_pod_security_level(directory):
    """crdgate-system enforces the restricted Pod Security Standard: every pod must pass it."""
    namespace = find(kustomize(directory), "Namespace", "crdgate-system")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for deployment in (o for o in kustomize(directory) if o["kind"] == "Deployment"):
        name = deployment["metadata"]["name"]
        spec = deployment["spec"]["template"]["spec"]
        pod_sc = spec.get("securityContext", {})
        assert not (spec.get("hostNetwork") or spec.get("hostPID") or spec.get("hostIPC")), name
        assert all(set(v) <= {"name", "emptyDir", "configMap", "secret", "projected"} for v in spec.get("volumes", ())), name
        for c in spec["containers"] + spec.get("initContainers", []):
            sc = c.get("securityContext", {})
            assert sc.get("allowPrivilegeEscalation") is False, f"{name}/{c['name']}"
            assert sc.get("capabilities", {}).get("drop") == ["ALL"], f"{name}/{c['name']}"
            assert not sc.get("privileged"), f"{name}/{c['name']}"
            assert (sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot"))) is True, f"{name}/{c['name']}"
            assert (sc.get("seccompProfile") or pod_sc.get("seccompProfile")) == {"type": "RuntimeDefault"}, name
            assert not any("hostPort" in p for p in c.get("ports", ())), f"{name}/{c['name']}"
