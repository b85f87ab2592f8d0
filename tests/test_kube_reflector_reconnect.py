"""Losing the API server: the Store keeps its content, the reflector reconnects and resumes where it was."""

from __future__ import annotations

from fakekube import apiendpoint, eventually, fake_kube, kube_api, running  # noqa: F401

from controller.backoff import Backoff
from controller.kube import KubeSource
from controller.kubeapi import APIENDPOINTS
from controller.reflector import Reflector
from controller.store import APIENDPOINT, KINDS, Store
from gateway.metrics import REGISTRY

FAST = dict(timeout_seconds=30, backoff_base=0.05, backoff_cap=0.2, min_watch_seconds=0.0)


def reconnects() -> float:
    return REGISTRY.get_sample_value("crdgate_watch_reconnects_total", {"kind": "APIEndpoint"}) or 0


async def test_server_goes_away_and_comes_back(fake_kube, kube_api):
    fake_kube.create(apiendpoint("shop", "a"))
    store = Store()
    async with running(KubeSource(store, kube_api, **FAST).run()):
        await eventually(lambda: store.synced(KINDS), what="sync")
        await eventually(lambda: fake_kube.watch_requests("apiendpoints"), what="watching")
        lists = len(fake_kube.list_requests("apiendpoints"))
        before = reconnects()
        port = fake_kube.port

        await fake_kube.stop()
        # The cache (and so the table built from it) stays while the server is gone.
        await eventually(lambda: reconnects() > before, what="reconnect attempt")
        assert store.get(APIENDPOINT, "shop", "a") is not None
        fake_kube.create(apiendpoint("shop", "b"))  # happens while we cannot see it
        fake_kube.delete("APIEndpoint", "shop", "a")

        await fake_kube.start(port)
        assert fake_kube.port == port
        await eventually(lambda: store.get(APIENDPOINT, "shop", "b") is not None, what="missed ADDED replayed")
        await eventually(lambda: store.get(APIENDPOINT, "shop", "a") is None, what="missed DELETED replayed")
        assert len(fake_kube.list_requests("apiendpoints")) == lists  # resumed, not relisted


async def test_dropped_stream_resumes_from_last_seen_version(fake_kube, kube_api):
    store = Store()
    async with running(KubeSource(store, kube_api, **FAST).run()):
        await eventually(lambda: store.synced(KINDS), what="sync")
        fake_kube.create(apiendpoint("shop", "a"))
        await eventually(lambda: store.get(APIENDPOINT, "shop", "a") is not None, what="ADDED")
        seen = store.get(APIENDPOINT, "shop", "a")["metadata"]["resourceVersion"]
        opened = len(fake_kube.watch_requests("apiendpoints"))
        fake_kube.drop_watches()
        await eventually(lambda: len(fake_kube.watch_requests("apiendpoints")) > opened, what="watch reopened")
        assert fake_kube.watch_requests("apiendpoints")[-1]["resourceVersion"] == seen
        assert len(fake_kube.list_requests("apiendpoints")) == 1


async def test_server_timeout_resumes_without_relisting(fake_kube, kube_api):
    store = Store()
    async with running(KubeSource(store, kube_api, **FAST).run()):
        await eventually(lambda: store.synced(KINDS), what="sync")
        for _ in range(3):
            opened = len(fake_kube.watch_requests("apiendpoints"))
            fake_kube.end_watches()  # as when timeoutSeconds runs out
            await eventually(lambda n=opened: len(fake_kube.watch_requests("apiendpoints")) > n, what="reopened")
        fake_kube.create(apiendpoint("shop", "late"))
        await eventually(lambda: store.get(APIENDPOINT, "shop", "late") is not None, what="still watching")
        assert len(fake_kube.list_requests("apiendpoints")) == 1


class Recorder:
    def __init__(self):
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        import asyncio

        self.delays.append(delay)
        await asyncio.sleep(delay)


class ListSink:
    def __init__(self):
        self.objects: list[dict] = []
        self.events: list[tuple[str, dict]] = []

    def replace(self, objects):
        self.objects = objects

    def apply(self, event_type, obj):
        self.events.append((event_type, obj))


async def test_streams_that_end_at_once_are_backed_off(fake_kube, kube_api):
    fake_kube.max_watch_seconds = 0  # every stream closes cleanly, at once, without events
    sleep = Recorder()
    reflector = Reflector(kube_api, APIENDPOINTS, ListSink(), timeout_seconds=30, min_watch_seconds=1.0,
                          backoff=Backoff(base=0.05, cap=0.1, sleep=sleep))
    async with running(reflector.run()):
        await eventually(lambda: len(fake_kube.watch_requests("apiendpoints")) >= 5, what="re-opened watches")
    opened = len(fake_kube.watch_requests("apiendpoints"))
    assert len(sleep.delays) >= opened - 1  # a pause before every re-open: no busy loop
    assert all(d >= 0.025 for d in sleep.delays)
