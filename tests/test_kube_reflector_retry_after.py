"""429 Too Many Requests: the reflector waits at least the server's Retry-After."""

from __future__ import annotations

import asyncio

from fakekube import apiendpoint, eventually, fake_kube, kube_api, running  # noqa: F401

from controller.backoff import Backoff
from controller.kubeapi import APIENDPOINTS
from controller.reflector import Reflector


class Recorder:
    def __init__(self):
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        await asyncio.sleep(delay)


class ListSink:
    def __init__(self):
        self.objects: list[dict] | None = None
        self.events: list[tuple[str, dict]] = []

    def replace(self, objects):
        self.objects = objects

    def apply(self, event_type, obj):
        self.events.append((event_type, obj))


async def test_list_429_waits_retry_after(fake_kube, kube_api):
    fake_kube.create(apiendpoint("shop", "a"))
    fake_kube.fail(429, retry_after=1, times=1, path_contains="apiendpoints", watch=False)
    sleep = Recorder()
    sink = ListSink()
    reflector = Reflector(kube_api, APIENDPOINTS, sink, backoff=Backoff(base=0.01, cap=0.02, sleep=sleep))
    async with running(reflector.run()):
        await eventually(lambda: sink.objects is not None, what="list after the 429")
    assert sleep.delays and sleep.delays[0] >= 1.0  # Retry-After, not the 10 ms backoff
    assert [o["metadata"]["name"] for o in sink.objects] == ["a"]
    assert len(fake_kube.list_requests("apiendpoints")) == 2


async def test_watch_429_waits_retry_after_then_resumes(fake_kube, kube_api):
    fake_kube.fail(429, retry_after=1, times=1, path_contains="apiendpoints", watch=True)
    sleep = Recorder()
    sink = ListSink()
    reflector = Reflector(kube_api, APIENDPOINTS, sink, backoff=Backoff(base=0.01, cap=0.02, sleep=sleep))
    async with running(reflector.run()):
        await eventually(lambda: len(fake_kube.watch_requests("apiendpoints")) >= 2, what="watch retried")
        fake_kube.create(apiendpoint("shop", "b"))
        await eventually(lambda: sink.events, what="event after the retry")
    assert sleep.delays[0] >= 1.0
    assert len(fake_kube.list_requests("apiendpoints")) == 1  # a refused watch is retried, not relisted
    assert sink.events[0][0] == "ADDED"
