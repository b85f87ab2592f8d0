"""The gateway's Deployment and what surrounds it: Services, PDB, HPA, NetworkPolicy."""

from __future__ import annotations

import pytest

from crd_support import find, kustomize


@pytest.fixture(scope="module")
def objects():
    return kustomize("deploy")


@pytest.fixture(scope="module")
def pod(objects):
    return find(objects, "Deployment", "crdgate")["spec"]["template"]


@pytest.fixture(scope="module")
def container(pod):
    (c,) = pod["spec"]["containers"]
    return c


def test_replicas_image_and_args(objects, container):
    deployment = find(objects, "Deployment", "crdgate")
    assert deployment["spec"]["replicas"] == 2
    assert container["image"] == "crdgate:0.1.0"
    assert container["imagePullPolicy"] == "IfNotPresent"
    assert container["args"] == [
        "run", "--kube",
        "--listen", "0.0.0.0:8080",
        "--listen-tls", "0.0.0.0:8443",
        "--admin-listen", "0.0.0.0:9090",
        "--publish-service", "crdgate-system/crdgate",
        "--drain-seconds", "25",
        "--shutdown-timeout", "4",
    ]
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {"http": 8080, "https": 8443, "admin": 9090}
    # The arguments are ones the real CLI accepts.
    from crdgate.cli import build_parser

    build_parser().parse_args(container["args"])


def test_pod_identity_from_the_downward_api(container):
    env = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in container["env"]}
    assert env == {"POD_NAME": "metadata.name", "POD_NAMESPACE": "metadata.namespace"}


def test_probes_on_the_admin_port(container):
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "admin"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "admin"}


def test_drain_fits_in_the_grace_period(pod, container):
    args = container["args"]
    drain = float(args[args.index("--drain-seconds") + 1])
    finish = float(args[args.index("--shutdown-timeout") + 1])
    grace = pod["spec"]["terminationGracePeriodSeconds"]
    assert grace == 30
    # SIGTERM -> drain (readyz 503, still serving) -> listeners close -> in-flight get `finish`.
    assert drain == 25
    assert drain + finish < grace, "the shutdown must end before the kubelet's SIGKILL"


def test_resources_requested_and_limited(container):
    assert set(container["resources"]["requests"]) == {"cpu", "memory"}
    assert "memory" in container["resources"]["limits"]


def test_runs_unprivileged(pod, container):
    pod_sc = pod["spec"]["securityContext"]
    assert pod_sc["runAsNonRoot"] is True
    assert pod_sc["runAsUser"] == 10001
    assert pod_sc["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = container["securityContext"]
    assert sc["runAsNonRoot"] is True
    assert sc["runAsUser"] == 10001
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["privileged"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    # The only writable place is an emptyDir on /tmp.
    (mount,) = container["volumeMounts"]
    assert mount["mountPath"] == "/tmp"
    (volume,) = pod["spec"]["volumes"]
    assert volume["name"] == mount["name"] and "emptyDir" in volume


def test_replicas_spread_over_zones_and_nodes(pod):
    labels = pod["metadata"]["labels"]
    spread = pod["spec"]["topologySpreadConstraints"]
    assert {c["topologyKey"] for c in spread} == {"topology.kubernetes.io/zone", "kubernetes.io/hostname"}
    for c in spread:
        assert c["labelSelector"]["matchLabels"].items() <= labels.items()
    (term,) = pod["spec"]["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert term["podAffinityTerm"]["labelSelector"]["matchLabels"].items() <= labels.items()


def test_service_account(objects, pod):
    assert pod["spec"]["serviceAccountName"] == "crdgate"
    find(objects, "ServiceAccount", "crdgate")


def test_selectors_pick_the_gateway_pods(objects, pod):
    labels = pod["metadata"]["labels"]
    deployment = find(objects, "Deployment", "crdgate")
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    for name in ("crdgate", "crdgate-admin"):
        assert find(objects, "Service", name)["spec"]["selector"].items() <= labels.items()
    assert find(objects, "PodDisruptionBudget", "crdgate")["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert find(objects, "NetworkPolicy", "crdgate")["spec"]["podSelector"]["matchLabels"].items() <= labels.items()


def test_public_service_is_the_published_one(objects, container):
    published = container["args"][container["args"].index("--publish-service") + 1]
    namespace, name = published.split("/")
    service = find(objects, "Service", name)
    assert service["metadata"]["namespace"] == namespace
    assert service["spec"]["type"] == "LoadBalancer"
    ports = {(p["name"], p["port"], p["targetPort"]) for p in service["spec"]["ports"]}
    assert ports == {("http", 80, "http"), ("https", 443, "https")}
    # Client addresses survive, for rate limits by ClientAddress.
    assert service["spec"]["externalTrafficPolicy"] == "Local"


def test_admin_service_is_scraped(objects):
    service = find(objects, "Service", "crdgate-admin")
    assert service["spec"]["type"] == "ClusterIP"
    assert service["metadata"]["annotations"] == {
        "prometheus.io/scrape": "true", "prometheus.io/port": "9090", "prometheus.io/path": "/metrics",
    }
    (port,) = service["spec"]["ports"]
    assert (port["port"], port["targetPort"]) == (9090, "admin")


def test_disruption_budget_and_autoscaler(objects):
    assert find(objects, "PodDisruptionBudget", "crdgate")["spec"]["minAvailable"] == 1
    hpa = find(objects, "HorizontalPodAutoscaler", "crdgate")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "crdgate"}
    assert hpa["spec"]["minReplicas"] == 2 <= hpa["spec"]["maxReplicas"]
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert metric["resource"]["target"] == {"type": "Utilization", "averageUtilization": 70}


def test_network_policy(objects):
    policy = find(objects, "NetworkPolicy", "crdgate")["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    public, admin = policy["ingress"]
    assert "from" not in public and [p["port"] for p in public["ports"]] == [8080, 8443]
    assert admin["from"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]
    assert [p["port"] for p in admin["ports"]] == [9090]
    dns, apiserver, pods = policy["egress"]
    assert {(p["port"], p["protocol"]) for p in dns["ports"]} == {(53, "UDP"), (53, "TCP")}
    assert {p["port"] for p in apiserver["ports"]} == {443, 6443}
    assert pods == {"to": [{"namespaceSelector": {}}]}
