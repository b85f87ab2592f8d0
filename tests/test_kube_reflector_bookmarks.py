"""BOOKMARK events move the resourceVersion a watch resumes from, so compaction does not force a relist."""

from __future__ import annotations

from fakekube import apiendpoint, eventually, fake_kube, kube_api, running, service  # noqa: F401

from controller.kube import KubeSource
from controller.store import APIENDPOINT, KINDS, Store
from gateway.metrics import REGISTRY

FAST = dict(timeout_seconds=30, backoff_base=0.05, backoff_cap=0.2, min_watch_seconds=0.0)


async def test_bookmark_advances_resume_version(fake_kube, kube_api):
    fake_kube.create(apiendpoint("shop", "a"))
    store = Store()
    source = KubeSource(store, kube_api, **FAST)
    async with running(source.run()):
        await eventually(lambda: store.synced(KINDS), what="sync")
        await eventually(lambda: any(w.res.plural == "apiendpoints" for w in fake_kube.watchers), what="watch open")
        list_rv = fake_kube.watch_requests("apiendpoints")[0]["resourceVersion"]
        # Other kinds move the global resourceVersion; the APIEndpoint watch sees none of it...
        for i in range(5):
            fake_kube.create(service("shop", f"s{i}"))
        # ...until the server vouches for it with a bookmark.
        fake_kube.send_bookmarks()
        reflector = next(r for r in source.reflectors if r.resource.kind == APIENDPOINT)
        await eventually(lambda: reflector.resource_version == str(fake_kube.rv), what="bookmark applied")
        assert int(reflector.resource_version) > int(list_rv)
        lists = len(fake_kube.list_requests("apiendpoints"))

        # History compacted past the list's version; the bookmark's version is still good.
        fake_kube.compact()
        fake_kube.drop_watches()
        await eventually(lambda: len(fake_kube.watch_requests("apiendpoints")) >= 2, what="watch reopened")
        assert fake_kube.watch_requests("apiendpoints")[-1]["resourceVersion"] == reflector.resource_version
        fake_kube.create(apiendpoint("shop", "b"))
        await eventually(lambda: store.get(APIENDPOINT, "shop", "b") is not None, what="event after resume")
        assert len(fake_kube.list_requests("apiendpoints")) == lists  # no relist was needed
    assert (REGISTRY.get_sample_value("crdgate_watch_events_total", {"kind": "APIEndpoint", "type": "BOOKMARK"}) or 0) >= 1


async def test_periodic_bookmarks_are_requested_and_do_not_touch_the_store(fake_kube, kube_api):
    fake_kube.bookmark_interval = 0.05
    store = Store()
    async with running(KubeSource(store, kube_api, **FAST).run()):
        await eventually(lambda: store.synced(KINDS), what="sync")
        version = store.version
        fake_kube.create(service("other", "moves-the-rv"))
        await eventually(lambda: store.version > version, what="service event")
        version = store.version
        before = REGISTRY.get_sample_value("crdgate_watch_events_total", {"kind": "APIEndpoint", "type": "BOOKMARK"}) or 0
        await eventually(
            lambda: (REGISTRY.get_sample_value("crdgate_watch_events_total",
                                               {"kind": "APIEndpoint", "type": "BOOKMARK"}) or 0) >= before + 2,
            what="bookmarks")
        assert store.version == version  # bookmarks change nothing
        assert store.keys(APIENDPOINT) == []
