"""KubeSource against the fake API server: initial sync, then changes flow into the Store."""

from __future__ import annotations

from fakekube import apiendpoint, eventually, fake_kube, ingress, kube_api, running, service  # noqa: F401

from controller.kube import KubeSource
from controller.store import APIENDPOINT, ENDPOINTSLICE, INGRESSCLASS, KINDS, SECRET, SERVICE, Store
from gateway.metrics import REGISTRY

FAST = dict(timeout_seconds=30, backoff_base=0.05, backoff_cap=0.2, min_watch_seconds=0.0)


def endpointslice(ns: str, name: str, service_name: str | None) -> dict:
    labels = {"kubernetes.io/service-name": service_name} if service_name else {}
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"namespace": ns, "name": name, "labels": labels},
            "addressType": "IPv4", "endpoints": [{"addresses": ["10.0.0.1"], "conditions": {"ready": True}}]}


async def test_initial_sync_lists_every_kind_with_apiversion_and_kind(fake_kube, kube_api):
    fake_kube.create(apiendpoint("shop", "users"))
    fake_kube.create(service("shop", "svc"))
    fake_kube.create(endpointslice("shop", "svc-abc", "svc"))
    fake_kube.create(endpointslice("shop", "orphan", None))  # no Service label: never routable
    fake_kube.create({"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
                      "metadata": {"name": "crdgate"}, "spec": {"controller": "crdgate.io/gateway"}})
    store = Store()
    assert not store.synced()
    async with running(KubeSource(store, kube_api, **FAST).run()):
        await eventually(lambda: store.synced(KINDS), what="every kind listed")
        ep = store.get(APIENDPOINT, "shop", "users")
        assert ep["apiVersion"] == "crdgate.io/v1" and ep["kind"] == "APIEndpoint"
        assert ep["spec"]["path"] == "/users"
        assert store.get(SERVICE, "shop", "svc")["kind"] == "Service"
        assert store.keys(ENDPOINTSLICE) == ["shop/svc-abc"]
        assert store.keys(INGRESSCLASS) == ["/crdgate"]
        assert store.keys(SECRET) == []
    # Lists carried the label selector for slices and asked for pages.
    slices = fake_kube.list_requests("endpointslices")
    assert slices and all(q.get("labelSelector") == "kubernetes.io/service-name" for q in slices)
    assert all(q.get("limit") for q in fake_kube.list_requests("apiendpoints"))


async def test_create_update_delete_propagate(fake_kube, kube_api):
    store = Store()
    async with running(KubeSource(store, kube_api, **FAST).run()):
        await eventually(lambda: store.synced(KINDS), what="sync")
        fake_kube.create(apiendpoint("shop", "a"))
        await eventually(lambda: store.get(APIENDPOINT, "shop", "a") is not None, what="ADDED")
        assert store.get(APIENDPOINT, "shop", "a")["kind"] == "APIEndpoint"

        changed = apiendpoint("shop", "a", path="/changed")
        fake_kube.update(changed)
        await eventually(lambda: store.get(APIENDPOINT, "shop", "a")["spec"]["path"] == "/changed", what="MODIFIED")
        assert store.get(APIENDPOINT, "shop", "a")["metadata"]["generation"] == 2

        fake_kube.delete("APIEndpoint", "shop", "a")
        await eventually(lambda: store.get(APIENDPOINT, "shop", "a") is None, what="DELETED")
        # Nothing relisted: every change came by the watch.
        assert len(fake_kube.list_requests("apiendpoints")) == 1


async def test_watch_resumes_from_list_resource_version(fake_kube, kube_api):
    fake_kube.create(apiendpoint("shop", "a"))
    list_rv = str(fake_kube.rv)
    store = Store()
    async with running(KubeSource(store, kube_api, **FAST).run()):
        await eventually(lambda: store.synced(KINDS), what="sync")
        await eventually(lambda: fake_kube.watch_requests("apiendpoints"), what="watch opened")
    first = fake_kube.watch_requests("apiendpoints")[0]
    assert first["resourceVersion"] == list_rv
    assert first["allowWatchBookmarks"] == "true"
    assert int(first["timeoutSeconds"]) >= 30


async def test_pages_are_joined(fake_kube, kube_api):
    for i in range(7):
        fake_kube.create(service("shop", f"s{i}"))
    store = Store()
    async with running(KubeSource(store, kube_api, page_size=3, **FAST).run()):
        await eventually(lambda: store.synced(KINDS), what="sync")
        assert sorted(store.keys(SERVICE)) == [f"shop/s{i}" for i in range(7)]
    pages = fake_kube.list_requests("services")
    assert len(pages) == 3 and "continue" in pages[1]


async def test_namespaces_are_merged_into_one_kind(fake_kube, kube_api):
    fake_kube.create(apiendpoint("a", "one"))
    fake_kube.create(apiendpoint("b", "two"))
    fake_kube.create(apiendpoint("c", "hidden"))
    store = Store()
    relists = REGISTRY.get_sample_value("crdgate_relists_total", {"kind": "APIEndpoint"}) or 0
    async with running(KubeSource(store, kube_api, namespaces=["a", "b"], **FAST).run()):
        await eventually(lambda: store.synced(KINDS), what="sync")
        assert sorted(store.keys(APIENDPOINT)) == ["a/one", "b/two"]
        # Each namespace has its own watch; a relist of one keeps the other's objects.
        fake_kube.refuse_watches = True
        fake_kube.drop_watches()
        fake_kube.delete("APIEndpoint", "a", "one")
        fake_kube.create(apiendpoint("c", "other"))
        fake_kube.compact()  # the deletion is lost with the history: only a relist can see it
        fake_kube.refuse_watches = False
        await eventually(lambda: store.keys(APIENDPOINT) == ["b/two"], what="relist of namespace a")
        # Both namespaces relist (each got 410 on its own); b's objects never go away.
        await eventually(lambda: (REGISTRY.get_sample_value("crdgate_relists_total", {"kind": "APIEndpoint"}) or 0)
                         - relists >= 4, what="both namespaces relisted")
        assert store.keys(APIENDPOINT) == ["b/two"]
        assert store.get(APIENDPOINT, "c", "other") is None
    paths = {p for m, p, q in fake_kube.requests if "apiendpoints" in p}
    assert paths == {"/apis/crdgate.io/v1/namespaces/a/apiendpoints", "/apis/crdgate.io/v1/namespaces/b/apiendpoints"}


async def test_ingresses_flow_too(fake_kube, kube_api):
    store = Store()
    async with running(KubeSource(store, kube_api, **FAST).run()):
        await eventually(lambda: store.synced(KINDS), what="sync")
        fake_kube.create(ingress("web", "site"))
        await eventually(lambda: store.get("Ingress", "web", "site") is not None, what="Ingress ADDED")
        assert store.get("Ingress", "web", "site")["apiVersion"] == "networking.k8s.io/v1"
