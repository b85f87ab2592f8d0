"""make_api_client and wire(): the real kubernetes-asyncio client set up from a kubeconfig."""

from __future__ import annotations

import asyncio

import pytest
from fakekube import apiendpoint, eventually, fake_kube, running  # noqa: F401

from controller.kube import KubeConfigError, KubeSource, make_api_client, wire
from controller.kubeapi import APIENDPOINTS, KubeAPI
from controller.store import KINDS, Store


async def test_kubeconfig_file_and_context(fake_kube, tmp_path, monkeypatch):
    monkeypatch.delenv("KUBECONFIG", raising=False)
    path = fake_kube.kubeconfig(tmp_path / "config")
    client = await make_api_client(path, "fake")
    try:
        out = await KubeAPI(client).request("GET", APIENDPOINTS.path())
        assert out["kind"] == "APIEndpointList"
    finally:
        await client.close()


async def test_kubeconfig_from_environment(fake_kube, tmp_path, monkeypatch):
    monkeypatch.setenv("KUBECONFIG", fake_kube.kubeconfig(tmp_path / "config"))
    client = await make_api_client()
    try:
        await KubeAPI(client).request("GET", APIENDPOINTS.path())
    finally:
        await client.close()


async def test_bad_kubeconfig_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv("KUBECONFIG", raising=False)
    with pytest.raises(KubeConfigError, match="missing-file"):
        await make_api_client(str(tmp_path / "missing-file"))
    (tmp_path / "cfg").write_text("apiVersion: v1\nkind: Config\ncontexts: []\nclusters: []\nusers: []\n")
    with pytest.raises(KubeConfigError, match="nope"):
        await make_api_client(str(tmp_path / "cfg"), "nope")


async def test_wire_runs_source_status_and_leader(fake_kube, tmp_path, monkeypatch):
    monkeypatch.delenv("KUBECONFIG", raising=False)
    fake_kube.create(apiendpoint("shop", "a"))
    client = await make_api_client(fake_kube.kubeconfig(tmp_path / "config"))
    store = Store()
    source, submit, tasks = await wire(store, client, [], identity="replica-1", publish_address="203.0.113.7",
                                       default_auth_secret="crdgate-system/default-auth")
    assert isinstance(source, KubeSource)
    assert source.default_secrets == {("crdgate-system", "default-auth")}
    try:
        async with running(source.run()):
            await eventually(lambda: store.synced(KINDS), what="sync")
            await eventually(lambda: fake_kube.get("Lease", "crdgate-system", "crdgate-leader") is not None,
                             timeout=8, what="lease taken")
            assert fake_kube.get("Lease", "crdgate-system", "crdgate-leader")["spec"]["holderIdentity"] == "replica-1"
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    # Shutdown released the Lease (and closed the client).
    assert fake_kube.get("Lease", "crdgate-system", "crdgate-leader")["spec"]["holderIdentity"] == ""
    assert client.rest_client.pool_manager.closed


async def test_wire_rejects_malformed_flags(fake_kube, tmp_path):
    client = await make_api_client(fake_kube.kubeconfig(tmp_path / "config"))
    try:
        with pytest.raises(ValueError, match="--publish-service"):
            await wire(Store(), client, publish_service="no-slash")
        with pytest.raises(ValueError, match="--default-auth-secret"):
            await wire(Store(), client, default_auth_secret="a/b/c")
    finally:
        await client.close()


async def test_requests_take_no_trip_through_worker_threads(fake_kube, tmp_path, monkeypatch):
    """kubernetes-asyncio's session would read ~/.netrc and the proxy variables in a thread per request."""
    from concurrent.futures import ThreadPoolExecutor

    class Counting(ThreadPoolExecutor):
        submitted = 0

        def submit(self, *args, **kwargs):
            Counting.submitted += 1
            return super().submit(*args, **kwargs)

    monkeypatch.delenv("KUBECONFIG", raising=False)
    client = await make_api_client(fake_kube.kubeconfig(tmp_path / "config"))
    executor = Counting(max_workers=2)
    asyncio.get_running_loop().set_default_executor(executor)
    try:
        for _ in range(5):
            await KubeAPI(client).request("GET", APIENDPOINTS.path())
        assert Counting.submitted == 0
    finally:
        await client.close()


@pytest.mark.parametrize("no_proxy, expected", [("", "http://proxy.example:3128"), ("127.0.0.1", None)])
async def test_the_environment_proxy_is_read_once_at_start(fake_kube, tmp_path, monkeypatch, no_proxy, expected):
    monkeypatch.delenv("KUBECONFIG", raising=False)
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", no_proxy)
    client = await make_api_client(fake_kube.kubeconfig(tmp_path / "config"))
    try:
        assert client.configuration.proxy == expected
    finally:
        await client.close()
