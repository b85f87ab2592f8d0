"""Gateway API kinds (GatewayClass, Gateway, HTTPRoute) and Namespaces from the Kubernetes API:
discovered and watched like ReferenceGrant; a cluster without the CRDs logs it once, publishes its
first table anyway and picks the CRDs up when installed later."""

from __future__ import annotations

import contextlib
import logging

from fakekube import (  # noqa: F401
    GATEWAY_API,
    WITHOUT_GATEWAY_API,
    FakeKube,
    Res,
    apiendpoint,
    eventually,
    fake_kube,
    gateway,
    gatewayclass,
    httproute,
    kube_api,
    namespace,
    running,
    service,
)

from controller.compile import CompileOptions
from controller.kube import KubeSource, make_api_client
from controller.kubeapi import KubeAPI
from controller.publish import Publisher
from controller.store import GATEWAY, GATEWAYCLASS, HTTPROUTE, KINDS, NAMESPACE, REFERENCEGRANT, Store

FAST = dict(timeout_seconds=30, backoff_base=0.05, backoff_cap=0.2, min_watch_seconds=0.0)


@contextlib.asynccontextmanager
async def serving(tmp_path, resources):
    fk = FakeKube(resources=resources)
    await fk.start()
    client = await make_api_client(fk.kubeconfig(tmp_path / "kubeconfig"))
    try:
        yield fk, KubeAPI(client)
    finally:
        await client.close()
        await fk.stop()


def world(fk: FakeKube) -> None:
    fk.create(namespace("infra", {"gateway": "infra"}))
    fk.create(namespace("app", {"team": "a"}))
    fk.create(gatewayclass("crdgate"))
    fk.create(gateway("infra", "gw"))
    fk.create(httproute("app", "web", gateway="gw", gateway_namespace="infra"))


async def test_kinds_are_listed_and_watched(fake_kube, kube_api):
    world(fake_kube)
    store = Store()
    source = KubeSource(store, kube_api, **FAST)
    async with running(source.run()):
        await eventually(lambda: store.synced(KINDS), what="sync")
        assert store.keys(GATEWAYCLASS) == ["/crdgate"]
        assert store.keys(GATEWAY) == ["infra/gw"]
        assert store.keys(HTTPROUTE) == ["app/web"]
        assert store.get(NAMESPACE, "", "infra")["metadata"]["labels"] == {"gateway": "infra"}
        fake_kube.create(httproute("app", "second"))
        await eventually(lambda: store.get(HTTPROUTE, "app", "second") is not None, what="ADDED")
        fake_kube.update(namespace("app", {"team": "b"}))
        await eventually(lambda: store.get(NAMESPACE, "", "app")["metadata"]["labels"] == {"team": "b"},
                         what="namespace labels MODIFIED")
        fake_kube.delete("Gateway", "infra", "gw")
        await eventually(lambda: store.get(GATEWAY, "infra", "gw") is None, what="DELETED")
    assert {k: r.version for k, r in source.served.items()} == {
        REFERENCEGRANT: "v1beta1", GATEWAYCLASS: "v1", GATEWAY: "v1", HTTPROUTE: "v1"}
    for plural in ("gatewayclasses", "gateways", "httproutes", "namespaces"):
        assert fake_kube.watch_requests(plural), plural


async def test_v1beta1_is_used_where_v1_is_not_served(tmp_path):
    old = tuple(Res(r.group, "v1beta1", r.plural, r.kind, r.namespaced, r.status_subresource)
                for r in GATEWAY_API)
    async with serving(tmp_path, (*WITHOUT_GATEWAY_API, *old)) as (fk, api):
        fk.create(httproute("app", "web"))
        store = Store()
        source = KubeSource(store, api, **FAST)
        async with running(source.run()):
            await eventually(lambda: store.synced(KINDS), what="sync")
            assert store.keys(HTTPROUTE) == ["app/web"]
        assert source.served[HTTPROUTE].version == "v1beta1"


async def test_watched_namespaces_only(fake_kube, kube_api):
    world(fake_kube)
    fake_kube.create(namespace("elsewhere"))
    fake_kube.create(httproute("elsewhere", "other"))
    store = Store()
    async with running(KubeSource(store, kube_api, ["app", "infra"], **FAST).run()):
        await eventually(lambda: store.synced(KINDS), what="sync")
        assert sorted(store.keys(NAMESPACE)) == ["/app", "/infra"]
        assert store.keys(HTTPROUTE) == ["app/web"]
        assert store.keys(GATEWAYCLASS) == ["/crdgate"]  # cluster-scoped: one list for all
    assert all(q.get("fieldSelector", "").startswith("metadata.name=") for q in fake_kube.list_requests("namespaces"))


async def test_without_the_crds_the_first_table_is_published_and_said_once(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="crdgate.controller.kube")
    async with serving(tmp_path, WITHOUT_GATEWAY_API) as (fk, api):
        fk.create(service("app", "web"))
        fk.create(apiendpoint("app", "ep", path="/ep", backendService="web"))
        store = Store()
        pub = Publisher(store, CompileOptions(), required_kinds=KINDS)
        source = KubeSource(store, api, rediscover_seconds=0.05, **FAST)
        async with running(source.run()), running(pub.run()):
            await eventually(lambda: pub.ready, what="first table without the CRDs")
            assert pub.table.match("GET", "h", "/ep") is not None
            assert store.keys(HTTPROUTE) == [] and store.keys(GATEWAY) == []
            await eventually(lambda: sum(p.endswith("/v1beta1") for _, p, _ in fk.requests) >= 6, what="rediscovery")
            told = [r.getMessage() for r in caplog.records if "not served" in r.getMessage()]
            assert len(told) == 1, told
            for kind in ("ReferenceGrant", "GatewayClass", "Gateway", "HTTPRoute", "docs/gateway-api.md"):
                assert kind in told[0]

            # The CRDs are installed later: their objects are read without a restart.
            for res in GATEWAY_API:
                fk.install(res)
            fk.create(httproute("app", "web"))
            await eventually(lambda: store.get(HTTPROUTE, "app", "web") is not None, what="read after install")
            await eventually(lambda: set(source.served) == {REFERENCEGRANT, GATEWAYCLASS, GATEWAY, HTTPROUTE},
                             what="every kind discovered")


async def test_a_cluster_role_without_these_kinds_does_not_hold_back_the_first_table(fake_kube, kube_api, caplog):
    """An image upgraded before its ClusterRole: Namespaces and HTTPRoutes are forbidden (403).
    They count as listed with nothing, everything else routes, and once allowed they are read."""
    caplog.set_level(logging.WARNING, logger="crdgate.controller.reflector")
    world(fake_kube)
    fake_kube.create(service("app", "web"))
    fake_kube.create(apiendpoint("app", "ep", path="/ep", backendService="web"))
    fake_kube.fail(403, times=10**6, path="/api/v1/namespaces", watch=False)
    fake_kube.fail(403, times=10**6, path_contains="/httproutes", watch=False)
    store = Store()
    pub = Publisher(store, CompileOptions(), required_kinds=KINDS)
    async with running(KubeSource(store, kube_api, **FAST).run()), running(pub.run()):
        await eventually(lambda: pub.ready, what="first table despite the 403s")
        assert pub.table.match("GET", "h", "/ep") is not None
        assert store.keys(NAMESPACE) == [] and store.keys(HTTPROUTE) == []
        assert store.keys(GATEWAY) == ["infra/gw"]  # allowed kinds are read as ever
        assert any("403" in r.getMessage() and "RBAC" in r.getMessage() for r in caplog.records)
        fake_kube.faults.clear()  # the ClusterRole is updated
        await eventually(lambda: store.keys(HTTPROUTE) == ["app/web"], what="HTTPRoutes once allowed")
        await eventually(lambda: sorted(store.keys(NAMESPACE)) == ["/app", "/infra"], what="Namespaces once allowed")
