"""Backends: Service -> EndpointSlices -> ready addresses and the mapped port; statuses on failure."""

from __future__ import annotations

from controller.compile import CompileOptions, compile_snapshot, refresh_endpoints, resolve_endpoints
from gateway.routing import Endpoint
from kobjects import apiendpoint, backend, endpointslice, referencegrant, service, snapshot


def compiled(*objs, spec=None):
    ep = apiendpoint("r", spec or {"path": "/r", "backendService": "users"})
    result = compile_snapshot(snapshot(ep, *objs))
    return result, result.statuses["APIEndpoint:shop/r"]


def cond(status, type_):
    c = {c.type: c for c in status.conditions}[type_]
    return c.status, c.reason


def test_ready_backend():
    result, st = compiled(*backend(addresses=("10.0.0.1", "10.0.0.2")))
    assert (st.state, st.reason) == ("Ready", "Ready")
    es = result.table.endpoints["shop/users:80"]
    assert es.state == "Ready"
    assert es.endpoints == (Endpoint("10.0.0.1", 8080), Endpoint("10.0.0.2", 8080))
    assert result.backend_keys == frozenset({"shop/users:80"})


def test_missing_service_keeps_route_and_marks_backend_not_found():
    result, st = compiled()
    assert (st.state, st.reason, st.message) == ("Error", "BackendNotFound", "Service shop/users not found")
    assert cond(st, "Accepted") == ("True", "Accepted")
    assert cond(st, "ResolvedRefs") == ("False", "BackendNotFound")
    assert cond(st, "Ready") == ("False", "BackendNotFound")
    res = result.table.match("GET", "h", "/r")
    assert res.route is not None  # the proxy answers 500 from the EndpointSet state
    assert result.table.endpoints[res.route.backends[0].key].state == "BackendNotFound"


def test_missing_service_port():
    _, st = compiled(*backend(), spec={"path": "/r", "backends": [{"service": {"name": "users", "port": 9999}}]})
    assert (st.state, st.message) == ("Error", "Service shop/users has no port 9999")


def test_no_ready_endpoints_is_pending():
    result, st = compiled(service("users"), endpointslice("users", ["10.0.0.1"], ready=False))
    assert (st.state, st.reason) == ("Pending", "NoReadyEndpoints")
    assert st.message == "Service shop/users port 80 has no ready endpoints"
    assert cond(st, "ResolvedRefs") == ("True", "ResolvedRefs")
    assert result.table.endpoints["shop/users:80"].state == "NoReadyEndpoints"


def test_service_without_slices_is_pending():
    _, st = compiled(service("users"))
    assert st.reason == "NoReadyEndpoints"


def test_absent_ready_condition_means_ready_and_terminating_is_skipped():
    eps = endpointslice("users", endpoints=[
        {"addresses": ["10.0.0.1"]},
        {"addresses": ["10.0.0.2"], "conditions": {}},
        {"addresses": ["10.0.0.3"], "conditions": {"terminating": True}},
        {"addresses": ["10.0.0.4"], "conditions": {"ready": False, "serving": True}},
    ])
    result, _ = compiled(service("users"), eps)
    assert [e.host for e in result.table.endpoints["shop/users:80"].endpoints] == ["10.0.0.1", "10.0.0.2"]


def test_named_target_port_via_slice_port_name():
    svc = service("users", ports=[{"name": "web", "port": 80, "targetPort": "http-alt"}])
    eps = endpointslice("users", ["10.0.0.1"], port=9090, port_name="web")
    result, st = compiled(svc, eps)
    assert st.state == "Ready"
    assert result.table.endpoints["shop/users:80"].endpoints == (Endpoint("10.0.0.1", 9090),)


def test_multi_port_service_selected_by_name_or_number():
    svc = service("users", ports=[{"name": "http", "port": 80, "targetPort": 8080}, {"name": "metrics", "port": 9100, "targetPort": 9100}])
    eps = endpointslice("users", endpoints=[{"addresses": ["10.0.0.1"]}])
    eps["ports"] = [{"name": "http", "port": 8080}, {"name": "metrics", "port": 9100}]
    by_name = {"path": "/r", "backends": [{"service": {"name": "users", "port": "metrics"}}]}
    result, _ = compiled(svc, eps, spec=by_name)
    assert result.table.endpoints["shop/users:9100"].endpoints == (Endpoint("10.0.0.1", 9100),)
    first = compiled(svc, eps)[0]  # backendService: the first port
    assert first.table.endpoints["shop/users:80"].endpoints == (Endpoint("10.0.0.1", 8080),)


def test_unnamed_slice_ports_fall_back_to_target_port_number():
    eps = endpointslice("users", ["10.0.0.1"], port=None)
    result, _ = compiled(service("users"), eps)
    assert result.table.endpoints["shop/users:80"].endpoints == (Endpoint("10.0.0.1", 8080),)


def test_slices_are_merged_and_deduplicated():
    a = endpointslice("users", ["10.0.0.1", "10.0.0.2"], name="users-a")
    b = endpointslice("users", ["10.0.0.2", "10.0.0.3"], name="users-b")
    other = endpointslice("orders", ["10.9.9.9"], name="orders-a")
    result, _ = compiled(service("users"), a, b, other)
    assert [e.host for e in result.table.endpoints["shop/users:80"].endpoints] == ["10.0.0.1", "10.0.0.2", "10.0.0.3"]


def test_external_name_service_resolves_by_dns_name():
    svc = service("payments", type="ExternalName", external_name="payments.example.net", ports=[{"name": "https", "port": 443}])
    spec = {"path": "/r", "backends": [{"service": {"name": "payments", "port": 443}}]}
    result, st = compiled(svc, spec=spec)
    assert st.state == "Ready"
    assert result.table.endpoints["shop/payments:443"].endpoints == (Endpoint("payments.example.net", 443),)


def test_external_name_into_another_namespace_is_not_followed():
    # An ExternalName in the route's own namespace aliasing another namespace's
    # Service would bypass the ReferenceGrant a direct reference needs.
    for target in ("vault.secrets.svc.cluster.local", "vault.secrets.svc", "VAULT.Secrets.svc.cluster.local."):
        svc = service("alias", type="ExternalName", external_name=target, ports=[{"name": "http", "port": 80}])
        spec = {"path": "/r", "backends": [{"service": {"name": "alias", "port": 80}}]}
        result, st = compiled(svc, spec=spec)
        eset = result.table.endpoints["shop/alias:80"]
        assert eset.endpoints == () and eset.state == "BackendNotFound", target
        assert st.state != "Ready" and "namespace secrets" in str(st.to_status_dict()), target
    # Its own namespace's Services are fine.
    svc = service("alias", type="ExternalName", external_name="users.shop.svc.cluster.local", ports=[{"port": 80}])
    result, st = compiled(svc, spec={"path": "/r", "backends": [{"service": {"name": "alias", "port": 80}}]})
    assert result.table.endpoints["shop/alias:80"].endpoints == (Endpoint("users.shop.svc.cluster.local", 80),)


def namespace_object(name):
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def test_short_service_names_of_existing_namespaces_are_service_references():
    # In the gateway pod "vault.secrets" resolves (search list svc.<domain>) to
    # Service secrets/vault: with a Namespace "secrets" it needs a grant like any reference.
    spec = {"path": "/r", "backends": [{"url": "http://vault.secrets:8200"}]}
    result, st = compiled(namespace_object("secrets"), spec=spec)
    assert st.state != "Ready" and "RefNotPermitted" in str(st.to_status_dict())
    assert "http://vault.secrets:8200" not in result.table.endpoints
    # No such namespace: a host name like any other ("api.example" is not a Service).
    result, st = compiled(spec=spec)
    assert st.state == "Ready" and result.table.endpoints["http://vault.secrets:8200"].endpoints
    # The same alias through an ExternalName Service is not followed either.
    svc = service("alias", type="ExternalName", external_name="vault.secrets", ports=[{"port": 80}])
    result, st = compiled(namespace_object("secrets"), svc, spec={"path": "/r", "backends": [{"service": {"name": "alias", "port": 80}}]})
    assert result.table.endpoints["shop/alias:80"].endpoints == () and "namespace secrets" in str(st.to_status_dict())


def test_single_label_hosts_name_the_gateway_namespace_in_a_pod():
    # In a pod "http://redis:6379" is Service redis of the gateway's own namespace.
    def state(url, search_namespace):
        options = CompileOptions(search_namespace=search_namespace)
        result = compile_snapshot(snapshot(apiendpoint("r", {"path": "/r", "backends": [{"url": url}]})), options)
        return str(result.statuses["APIEndpoint:shop/r"].to_status_dict())

    assert "RefNotPermitted" in state("http://redis:6379", "crdgate-system")
    assert "RefNotPermitted" not in state("http://redis:6379", "")  # outside a cluster: a host name
    assert "RefNotPermitted" not in state("http://users:80", "shop")  # the route's own namespace
    assert "not a backend in a cluster" in state("http://localhost:8080", "crdgate-system")  # not a Service
    # An ExternalName is a DNS alias: a single label only means something through a search list.
    svc = service("alias", type="ExternalName", external_name="redis", ports=[{"port": 80}])
    result, st = compiled(svc, spec={"path": "/r", "backends": [{"service": {"name": "alias", "port": 80}}]})
    assert result.table.endpoints["shop/alias:80"].endpoints == () and "fully qualified" in str(st.to_status_dict())


def test_in_a_pod_backends_never_reach_the_gateway_itself_or_the_node():
    def status(url, search_namespace):
        options = CompileOptions(search_namespace=search_namespace)
        spec = {"path": "/r", "backends": [{"url": "http://10.0.0.9:80"}], "mirror": {"backend": {"url": url}}}
        result = compile_snapshot(snapshot(apiendpoint("r", {**spec, "backends": [{"url": url}]})), options)
        mirrored = compile_snapshot(snapshot(apiendpoint("r", spec)), options)
        return str(result.statuses["APIEndpoint:shop/r"].to_status_dict()), str(mirrored.statuses["APIEndpoint:shop/r"].to_status_dict())

    for url in ("http://127.0.0.1:9901", "http://localhost:9901", "http://[::1]:80", "http://0.0.0.0:80",
                "http://169.254.169.254", "http://[fd00:ec2::254]", "http://LOCALHOST.:80", "http://127.1.2.3"):
        for st in status(url, "crdgate-system"):
            assert "RefNotPermitted" in st and "not a backend in a cluster" in st, (url, st)
        for st in status(url, ""):  # outside a cluster, loopback backends are the first run
            assert "RefNotPermitted" not in st, url
    svc = service("alias", type="ExternalName", external_name="169.254.169.254", ports=[{"port": 80}])
    result, st = compiled(svc, spec={"path": "/r", "backends": [{"service": {"name": "alias", "port": 80}}]})
    assert result.table.endpoints["shop/alias:80"].endpoints == () and "metadata service" in str(st.to_status_dict())


def test_url_backends():
    spec = {"path": "/r", "backends": [{"url": "http://127.0.0.1:18083", "weight": 3}, {"url": "https://api.example.net"}]}
    result, st = compiled(spec=spec)
    assert st.state == "Ready"
    plain = result.table.endpoints["http://127.0.0.1:18083"]
    assert plain.endpoints == (Endpoint("127.0.0.1", 18083, tls=False),) and plain.host_header == "127.0.0.1:18083"
    tls = result.table.endpoints["https://api.example.net"]
    assert tls.endpoints == (Endpoint("api.example.net", 443, tls=True),) and tls.host_header == "api.example.net"
    route = result.table.match("GET", "h", "/r").route
    assert [(b.key, b.weight) for b in route.backends] == [("http://127.0.0.1:18083", 3), ("https://api.example.net", 1)]


def test_cross_namespace_service_reference_with_a_grant():
    # Without the grant it is RefNotPermitted: tests/test_refgrant_compile.py.
    spec = {"path": "/r", "backends": [{"service": {"name": "users", "namespace": "core", "port": 80}}]}
    grant = referencegrant("shop-may-use-users", "core", [("crdgate.io", "APIEndpoint", "shop")], [("", "Service", "users")])
    result, st = compiled(*backend(ns="core"), grant, spec=spec)
    assert st.state == "Ready" and "core/users:80" in result.table.endpoints


def test_one_unready_backend_of_two_keeps_the_route_ready():
    spec = {"path": "/r", "backends": [{"service": {"name": "users"}}, {"service": {"name": "spare"}}]}
    _, st = compiled(*backend(), service("spare"), spec=spec)
    assert st.state == "Ready" and "Service shop/spare port 80 has no ready endpoints" in st.message


def test_resolve_endpoints_gives_what_the_full_compile_gives():
    objs = [*backend(addresses=("10.0.0.1",)), service("idle"), apiendpoint("r", {"path": "/r", "backendService": "users"}),
            apiendpoint("idle", {"path": "/i", "backendService": "idle"}), apiendpoint("gone", {"path": "/g", "backendService": "nope"})]
    snap = snapshot(*objs)
    result = compile_snapshot(snap)
    assert resolve_endpoints(snap, result.backend_keys) == dict(result.table.endpoints)


def test_refresh_endpoints_matches_a_full_compile_after_slice_churn():
    api = [apiendpoint("r", {"path": "/r", "backendService": "users"}), apiendpoint("idle", {"path": "/i", "backendService": "idle"})]
    before = snapshot(*api, service("users"), service("idle"), endpointslice("users", ["10.0.0.1"]))
    after = snapshot(*api, service("users"), service("idle"), endpointslice("users", ["10.0.0.2", "10.0.0.3"]),
                     endpointslice("idle", ["10.0.1.1"]))
    first = compile_snapshot(before, generation=1)
    assert first.statuses["APIEndpoint:shop/idle"].state == "Pending"
    cheap = refresh_endpoints(first, after, generation=2)
    full = compile_snapshot(after, generation=2)
    assert dict(cheap.table.endpoints) == dict(full.table.endpoints)
    assert cheap.statuses == full.statuses
    assert cheap.statuses["APIEndpoint:shop/idle"].state == "Ready"
    assert cheap.table.generation == 2
    assert cheap.table.routes is first.table.routes  # no route recompiled
