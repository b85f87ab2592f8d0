"""The fake API server behaves like the real one where crdgate depends on it (checked through KubeAPI)."""

from __future__ import annotations

import aiohttp
import pytest
from fakekube import apiendpoint, fake_kube, kube_api, secret  # noqa: F401

from controller.kubeapi import APIENDPOINTS, LEASES, MERGE_PATCH, SECRETS, ApiError, Gone

STREAM = aiohttp.ClientTimeout(total=5)


async def test_not_found_is_a_status_object(kube_api):
    with pytest.raises(ApiError) as err:
        await kube_api.request("GET", APIENDPOINTS.path("shop", "missing"))
    assert err.value.status == 404 and err.value.reason == "NotFound"
    assert 'apiendpoints.crdgate.io "missing" not found' in err.value.message


async def test_list_items_lack_kind_and_carry_the_list_version(fake_kube, kube_api):
    fake_kube.create(apiendpoint("shop", "a"))
    out = await kube_api.request("GET", APIENDPOINTS.path())
    assert out["kind"] == "APIEndpointList" and out["metadata"]["resourceVersion"] == str(fake_kube.rv)
    assert "kind" not in out["items"][0] and "apiVersion" not in out["items"][0]


async def test_status_subresource_changes_only_status(fake_kube, kube_api):
    fake_kube.create(apiendpoint("shop", "a"))
    before = fake_kube.get("APIEndpoint", "shop", "a")
    out = await kube_api.request("PATCH", APIENDPOINTS.path("shop", "a", "status"), content_type=MERGE_PATCH,
                                 body={"spec": {"path": "/hijack"}, "status": {"state": "Ready"}})
    assert out["status"] == {"state": "Ready"}
    assert out["spec"]["path"] == "/a"
    assert out["metadata"]["generation"] == 1
    assert int(out["metadata"]["resourceVersion"]) > int(before["metadata"]["resourceVersion"])
    # The same patch again is a no-op: the resourceVersion stays.
    again = await kube_api.request("PATCH", APIENDPOINTS.path("shop", "a", "status"), content_type=MERGE_PATCH,
                                   body={"status": {"state": "Ready"}})
    assert again["metadata"]["resourceVersion"] == out["metadata"]["resourceVersion"]


async def test_main_resource_ignores_status_and_counts_generations(fake_kube, kube_api):
    fake_kube.create(apiendpoint("shop", "a", method="GET"))
    out = await kube_api.request("PATCH", APIENDPOINTS.path("shop", "a"), content_type=MERGE_PATCH,
                                 body={"spec": {"path": "/b", "method": None}, "status": {"state": "Ready"}})
    assert out["spec"] == {"path": "/b", "backendService": "svc"}  # null deletes
    assert "status" not in out
    assert out["metadata"]["generation"] == 2
    with pytest.raises(ApiError) as err:
        await kube_api.request("PATCH", APIENDPOINTS.path("shop", "a"), body={"spec": {}})
    assert err.value.status == 415


async def test_put_with_stale_version_conflicts_and_create_twice_conflicts(fake_kube, kube_api):
    body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "l", "namespace": "x"},
            "spec": {"holderIdentity": "a"}}
    created = await kube_api.request("POST", LEASES.path("x"), body=body)
    with pytest.raises(ApiError) as err:
        await kube_api.request("POST", LEASES.path("x"), body=body)
    assert err.value.status == 409 and err.value.reason == "AlreadyExists"
    updated = await kube_api.request("PUT", LEASES.path("x", "l"), body={**created, "spec": {"holderIdentity": "b"}})
    with pytest.raises(ApiError) as err:
        await kube_api.request("PUT", LEASES.path("x", "l"), body={**created, "spec": {"holderIdentity": "c"}})
    assert err.value.status == 409 and err.value.reason == "Conflict"
    assert fake_kube.get("Lease", "x", "l")["metadata"]["resourceVersion"] == updated["metadata"]["resourceVersion"]


async def test_too_old_watch_is_gone_in_both_forms(fake_kube, kube_api):
    fake_kube.create(apiendpoint("shop", "a"))
    fake_kube.compact()
    query = [("watch", "true"), ("resourceVersion", "1")]
    async with kube_api.stream(APIENDPOINTS.path(), query, STREAM) as events:
        event = [e async for e in events][0]
    assert event["type"] == "ERROR" and event["object"]["code"] == 410
    fake_kube.gone_mode = "status"
    with pytest.raises(Gone):
        async with kube_api.stream(APIENDPOINTS.path(), query, STREAM):
            pass


async def test_leaving_a_label_selector_is_a_deletion(fake_kube, kube_api):
    fake_kube.create(secret("shop", "s", labels={"crdgate.io/default-auth": "APIKey"}))
    rv = str(fake_kube.rv)
    fake_kube.update(secret("shop", "s"))
    query = [("watch", "true"), ("resourceVersion", rv), ("labelSelector", "crdgate.io/default-auth"),
             ("timeoutSeconds", "1")]
    async with kube_api.stream(SECRETS.path("shop"), query, STREAM) as events:
        seen = [e async for e in events]
    assert [e["type"] for e in seen] == ["DELETED"]


async def test_requests_need_the_token(fake_kube):
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{fake_kube.url}{APIENDPOINTS.path()}") as r:
            assert r.status == 401
            assert (await r.json())["reason"] == "Unauthorized"
