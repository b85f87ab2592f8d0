"""ReferenceGrants from the Kubernetes API: discovered, watched, revoked at once; a
cluster without the CRD has no grants and everything else keeps working."""

from __future__ import annotations

import contextlib
import logging

from fakekube import (  # noqa: F401
    RESOURCES,
    WITHOUT_REFERENCEGRANT,
    FakeKube,
    Res,
    apiendpoint,
    eventually,
    fake_kube,
    kube_api,
    referencegrant,
    running,
    service,
)

from controller.compile import CompileOptions
from controller.kube import KubeSource, make_api_client
from controller.kubeapi import KubeAPI
from controller.publish import Publisher
from controller.store import KINDS, Store

REFERENCEGRANT = "ReferenceGrant"

FAST = dict(timeout_seconds=30, backoff_base=0.05, backoff_cap=0.2, min_watch_seconds=0.0)
GRANT_V1BETA1_AND_V1 = Res("gateway.networking.k8s.io", "v1beta1", "referencegrants", "ReferenceGrant", also_served=("v1",))


@contextlib.asynccontextmanager
async def serving(tmp_path, resources):
    """A FakeKube serving ``resources`` and a KubeAPI for it."""
    fk = FakeKube(resources=resources)
    await fk.start()
    client = await make_api_client(fk.kubeconfig(tmp_path / "kubeconfig"))
    try:
        yield fk, KubeAPI(client)
    finally:
        await client.close()
        await fk.stop()


def cross_namespace_world(fk: FakeKube) -> None:
    """tenant-a/steal uses tenant-b's Service db; tenant-a/own uses its own."""
    fk.create(service("tenant-b", "db"))
    fk.create(service("tenant-a", "web"))
    fk.create(apiendpoint("tenant-a", "steal", path="/steal", backendService=None,
                          backends=[{"service": {"name": "db", "namespace": "tenant-b"}}]))
    fk.create(apiendpoint("tenant-a", "own", path="/own", backendService="web"))


def reason(pub: Publisher, name: str) -> str | None:
    st = pub.result.statuses.get(f"APIEndpoint:tenant-a/{name}") if pub.result is not None else None
    return st.reason if st is not None else None


async def test_grants_are_listed_and_watched(fake_kube, kube_api):
    fake_kube.create(referencegrant("tenant-b", "first", "tenant-a"))
    store = Store()
    source = KubeSource(store, kube_api, **FAST)
    async with running(source.run()):
        await eventually(lambda: store.synced(KINDS), what="sync")
        assert store.keys(REFERENCEGRANT) == ["tenant-b/first"]
        assert store.get(REFERENCEGRANT, "tenant-b", "first")["spec"]["from"][0]["namespace"] == "tenant-a"
        fake_kube.create(referencegrant("tenant-c", "second", "tenant-a"))
        await eventually(lambda: store.get(REFERENCEGRANT, "tenant-c", "second") is not None, what="ADDED")
        fake_kube.delete("ReferenceGrant", "tenant-b", "first")
        await eventually(lambda: store.get(REFERENCEGRANT, "tenant-b", "first") is None, what="DELETED")
    assert source.grant_resource is not None and source.grant_resource.version == "v1beta1"
    assert fake_kube.watch_requests("referencegrants")


async def test_failed_discovery_is_retried(fake_kube, kube_api):
    fake_kube.create(referencegrant("tenant-b", "g", "tenant-a"))
    fake_kube.fail(503, times=2, path_contains="/apis/gateway.networking.k8s.io/v1")
    store = Store()
    async with running(KubeSource(store, kube_api, **FAST).run()):
        await eventually(lambda: store.synced(KINDS), what="sync after the failures")
        assert store.keys(REFERENCEGRANT) == ["tenant-b/g"]


async def test_v1_is_preferred_where_served(tmp_path):
    resources = (*WITHOUT_REFERENCEGRANT, GRANT_V1BETA1_AND_V1)
    async with serving(tmp_path, resources) as (fk, api):
        fk.create(referencegrant("tenant-b", "g", "tenant-a"))
        store = Store()
        source = KubeSource(store, api, **FAST)
        async with running(source.run()):
            await eventually(lambda: store.synced(KINDS), what="sync")
            assert store.keys(REFERENCEGRANT) == ["tenant-b/g"]
        assert source.grant_resource.version == "v1"
        paths = [p for m, p, q in fk.requests if p.endswith("/referencegrants")]
        assert paths and all(p.startswith("/apis/gateway.networking.k8s.io/v1/") for p in paths)


async def test_grants_in_watched_namespaces_only(fake_kube, kube_api):
    fake_kube.create(referencegrant("tenant-b", "g", "tenant-a"))
    fake_kube.create(referencegrant("elsewhere", "g", "tenant-a"))
    store = Store()
    async with running(KubeSource(store, kube_api, ["tenant-a", "tenant-b"], **FAST).run()):
        await eventually(lambda: store.synced(KINDS), what="sync")
        assert store.keys(REFERENCEGRANT) == ["tenant-b/g"]


async def test_narrowing_or_removing_a_grant_revokes_the_reference_at_once(fake_kube, kube_api):
    cross_namespace_world(fake_kube)
    fake_kube.create(referencegrant("tenant-b", "g", "tenant-a", "Service"))
    store = Store()
    pub = Publisher(store, CompileOptions(), required_kinds=KINDS)
    async with running(KubeSource(store, kube_api, **FAST).run()), running(pub.run()):
        await eventually(lambda: reason(pub, "steal") == "NoReadyEndpoints", what="granted")
        fake_kube.update(referencegrant("tenant-b", "g", "tenant-a", "Service", "cache"))  # narrowed
        await eventually(lambda: reason(pub, "steal") == "RefNotPermitted", what="revoked by narrowing")
        refused = pub.table.match("GET", "h", "/steal").route.backends[0].key
        assert pub.table.endpoints[refused].state == "BackendNotFound"  # the proxy answers 500
        fake_kube.update(referencegrant("tenant-b", "g", "tenant-a", "Service", "db"))
        await eventually(lambda: reason(pub, "steal") == "NoReadyEndpoints", what="granted by name")
        fake_kube.delete("ReferenceGrant", "tenant-b", "g")
        await eventually(lambda: reason(pub, "steal") == "RefNotPermitted", what="revoked by removal")
        assert reason(pub, "own") == "NoReadyEndpoints"  # the same-namespace route never needed one


async def test_without_the_crd_there_are_no_grants_and_everything_else_works(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="crdgate.controller.kube")
    async with serving(tmp_path, WITHOUT_REFERENCEGRANT) as (fk, api):
        cross_namespace_world(fk)
        store = Store()
        pub = Publisher(store, CompileOptions(), required_kinds=KINDS)
        source = KubeSource(store, api, rediscover_seconds=0.05, **FAST)
        async with running(source.run()), running(pub.run()):
            await eventually(lambda: pub.ready, what="first table without the CRD")
            assert store.keys(REFERENCEGRANT) == []
            assert reason(pub, "steal") == "RefNotPermitted"
            assert reason(pub, "own") == "NoReadyEndpoints"
            # Discovery is tried again (several times by now), but said only once.
            await eventually(lambda: sum(p.endswith("/v1beta1") for _, p, _ in fk.requests) >= 3, what="rediscovery")
            told = [r for r in caplog.records if "ReferenceGrant" in r.getMessage() and "not served" in r.getMessage()]
            assert len(told) == 1
            # Other kinds keep flowing.
            fk.create(apiendpoint("tenant-a", "later", path="/later", backendService="web"))
            await eventually(lambda: reason(pub, "later") == "NoReadyEndpoints", what="a new APIEndpoint routed")

            # The CRD is installed later: the grant takes effect without a restart.
            fk.install(next(r for r in RESOURCES if r.kind == REFERENCEGRANT))
            fk.create(referencegrant("tenant-b", "g", "tenant-a"))
            await eventually(lambda: reason(pub, "steal") == "NoReadyEndpoints", what="granted after install")
        assert source.grant_resource is not None
