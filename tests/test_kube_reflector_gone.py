"""410 Gone, as an HTTP status or as an ERROR event: the reflector relists, and what vanished meanwhile is deleted."""

from __future__ import annotations

import pytest
from fakekube import apiendpoint, eventually, fake_kube, kube_api, running, service  # noqa: F401

from controller.kube import KubeSource
from controller.store import APIENDPOINT, KINDS, Store
from gateway.metrics import REGISTRY

FAST = dict(timeout_seconds=30, backoff_base=0.05, backoff_cap=0.2, min_watch_seconds=0.0)


def relists() -> float:
    return REGISTRY.get_sample_value("crdgate_relists_total", {"kind": "APIEndpoint"}) or 0


@pytest.mark.parametrize("gone_mode", ["event", "status"])
async def test_relist_after_gone_removes_vanished_objects(fake_kube, kube_api, gone_mode):
    fake_kube.gone_mode = gone_mode
    fake_kube.create(apiendpoint("shop", "stays"))
    fake_kube.create(apiendpoint("shop", "vanishes"))
    store = Store()
    async with running(KubeSource(store, kube_api, **FAST).run()):
        await eventually(lambda: store.synced(KINDS), what="sync")
        before = relists()
        # The watch is down while the object goes and the history is compacted:
        # no DELETED event can ever arrive for it.
        fake_kube.refuse_watches = True
        fake_kube.drop_watches()
        fake_kube.delete("APIEndpoint", "shop", "vanishes")
        fake_kube.create(apiendpoint("shop", "new"))
        fake_kube.update(apiendpoint("shop", "stays", path="/moved"))
        fake_kube.compact()
        fake_kube.refuse_watches = False

        await eventually(lambda: store.get(APIENDPOINT, "shop", "vanishes") is None, what="vanished object deleted")
        assert store.get(APIENDPOINT, "shop", "new") is not None
        assert store.get(APIENDPOINT, "shop", "stays")["spec"]["path"] == "/moved"
        assert relists() == before + 1
        # And the new watch starts from the relist's resourceVersion, not the stale one.
        await eventually(lambda: fake_kube.watch_requests("apiendpoints")[-1]["resourceVersion"] == str(fake_kube.rv),
                         what="watch from the new list")
        fake_kube.create(apiendpoint("shop", "after"))
        await eventually(lambda: store.get(APIENDPOINT, "shop", "after") is not None, what="watch works after relist")
    gone_seen = REGISTRY.get_sample_value("crdgate_watch_events_total", {"kind": "APIEndpoint", "type": "ERROR"}) or 0
    if gone_mode == "event":
        assert gone_seen >= 1


async def test_expired_continue_token_restarts_the_list(fake_kube, kube_api):
    for i in range(5):
        fake_kube.create(apiendpoint("shop", f"e{i}"))
    store = Store()
    # Compact between the first and the second page: the continue token is too old (HTTP 410).
    orig_list = fake_kube._list
    state = {"pages": 0}

    def list_then_compact(res, ns, query):
        out = orig_list(res, ns, query)
        if res.plural == "apiendpoints" and state["pages"] == 0:
            state["pages"] += 1
            fake_kube.create(service("other", "moves-on"))  # the cluster moves on...
            fake_kube.compact()  # ...and forgets the first page's version
        return out

    fake_kube._list = list_then_compact
    async with running(KubeSource(store, kube_api, page_size=2, **FAST).run()):
        await eventually(lambda: store.synced(KINDS), what="sync despite the expired token")
        assert sorted(store.keys(APIENDPOINT)) == [f"shop/e{i}" for i in range(5)]
    starts = [q for q in fake_kube.list_requests("apiendpoints") if "continue" not in q]
    assert len(starts) == 2  # the list started over from the first page
