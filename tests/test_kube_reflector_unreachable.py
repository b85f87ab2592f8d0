"""An API server that cannot be reached is asked again about once a second; one that answers errors is backed off."""

from __future__ import annotations

import asyncio
import logging

from fakekube import apiendpoint, eventually, fake_kube, kube_api, running  # noqa: F401

from controller.backoff import Backoff
from controller.kubeapi import APIENDPOINTS, KubeAPI
from controller.reflector import RECONNECT_CAP, Reflector
from controller.store import APIENDPOINT, Store


class Sink:
    def __init__(self, store: Store):
        self.store = store

    def replace(self, objects):
        self.store.replace(APIENDPOINT, objects)

    def apply(self, event_type, obj):
        self.store.apply(APIENDPOINT, event_type, obj)


def reflector(kube_api, store: Store, delays: list[float]) -> Reflector:
    async def sleep(d: float) -> None:  # records the delay chosen, waits a little
        delays.append(d)
        await asyncio.sleep(min(d, 0.02))

    # The long backoff as deployed (0.5 s doubling to 30 s): only its growth is under test.
    return Reflector(KubeAPI.of(kube_api), APIENDPOINTS, Sink(store), backoff=Backoff(base=0.5, cap=30.0, sleep=sleep),
                     timeout_seconds=30, min_watch_seconds=0.0)


async def test_a_server_that_is_away_is_retried_at_the_reconnect_pace(fake_kube, kube_api, caplog):
    caplog.set_level(logging.DEBUG, logger="crdgate.controller.reflector")
    store, delays = Store(), []
    async with running(reflector(kube_api, store, delays).run()):
        await eventually(lambda: fake_kube.watch_requests("apiendpoints"), what="watching")
        port = fake_kube.port
        await fake_kube.stop()
        await eventually(lambda: len(delays) >= 12, what="retries while the server is away")
        fake_kube.create(apiendpoint("shop", "while-away"))
        await fake_kube.start(port)
        await eventually(lambda: store.get(APIENDPOINT, "shop", "while-away") is not None, what="resumed")
    # The first retry follows the dropped stream; every later one is a refused connection.
    assert max(delays[1:12]) <= RECONNECT_CAP
    away = [r for r in caplog.records if "not reachable" in r.getMessage()]
    assert [r.levelno for r in away][:2] == [logging.WARNING, logging.DEBUG]  # said once, not per retry
    assert sum(r.levelno == logging.WARNING for r in away) == 1
    assert any("reachable again" in r.getMessage() and r.levelno == logging.INFO for r in caplog.records)


async def test_a_server_that_answers_errors_still_gets_the_long_backoff(fake_kube, kube_api):
    store, delays = Store(), []
    async with running(reflector(kube_api, store, delays).run()):
        await eventually(lambda: fake_kube.watch_requests("apiendpoints"), what="watching")
        fake_kube.refuse_watches = True  # 503 on every watch
        fake_kube.drop_watches()
        await eventually(lambda: len(delays) >= 6, what="retries of a failing server")
        fake_kube.refuse_watches = False
    assert max(delays) > 4 * RECONNECT_CAP
