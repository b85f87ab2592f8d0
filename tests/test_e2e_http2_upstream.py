"""End to end: the real `crdgate run --manifests DIR` process, HTTP/1.1 clients (curl, aiohttp), h2c backends.

A Service port with ``appProtocol: kubernetes.io/h2c`` and an APIEndpoint url
backend with ``protocol: HTTP/2`` are both spoken to in HTTP/2 with prior
knowledge; every request of a burst shares one backend connection; trailers
reach a client that sends ``TE: trailers``; /routes names the protocol. An HTTP/2
client's ``Expect: 100-continue`` is answered by the gateway and never reaches
the backend (whose stream would wait for a body that waits for a 100).
"""

from __future__ import annotations

import asyncio
import json
import subprocess

import aiohttp
import pytest

import aptget
from gatewayproc import GatewayProcess
from h2backend import H2Backend
from h2socket import h2_request

ROUTES = """
apiVersion: v1
kind: Service
metadata: {{name: orders, namespace: shop}}
spec:
  ports: [{{name: grpc, port: 50051, targetPort: {port}, appProtocol: kubernetes.io/h2c}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: orders-abc
  namespace: shop
  labels: {{kubernetes.io/service-name: orders}}
addressType: IPv4
endpoints:
  - addresses: ["127.0.0.1"]
    conditions: {{ready: true}}
ports: [{{name: grpc, port: {port}, protocol: TCP}}]
---
apiVersion: crdgate.io/v1
kind: APIEndpoint
metadata: {{name: orders, namespace: shop}}
spec:
  path: /orders
  backendService: orders
---
apiVersion: crdgate.io/v1
kind: APIEndpoint
metadata: {{name: by-url, namespace: shop}}
spec:
  path: /by-url
  backends:
    - url: http://127.0.0.1:{url_port}
      protocol: HTTP/2
"""


@pytest.fixture
async def world(tmp_path):
    svc_backend = await H2Backend().start()
    url_backend = await H2Backend().start()
    (tmp_path / "routes.yaml").write_text(ROUTES.format(port=svc_backend.port, url_port=url_backend.port))
    gw = GatewayProcess(tmp_path, access_log=True)
    try:
        await asyncio.get_running_loop().run_in_executor(None, gw.wait_ready)
        yield gw, svc_backend, url_backend
    finally:
        gw.close()
        await svc_backend.close()
        await url_backend.close()


async def test_service_app_protocol_h2c_and_url_protocol_http2(world):
    gw, svc_backend, url_backend = world
    async with aiohttp.ClientSession() as s:
        rs = await asyncio.gather(*[s.post(gw.base + f"/orders/{i}", data=b"z" * 100) for i in range(20)])
        docs = []
        for r in rs:
            assert r.status == 200, await r.text()
            docs.append(json.loads(await r.read()))
        assert {d["headers"][":path"] for d in docs} == {f"/orders/{i}" for i in range(20)}
        assert all(d["body_bytes"] == 100 for d in docs)
        assert svc_backend.connections == 1  # twenty requests, one multiplexed connection
        async with s.get(gw.base + "/by-url/x") as r:
            assert r.status == 200
            doc = json.loads(await r.read())
            assert doc["headers"][":authority"] == f"127.0.0.1:{url_backend.port}"  # a url backend's own name
        async with s.get(gw.admin + "/routes") as r:
            routes = json.loads(await r.read())["routes"]
        protocols = {b["backend"]: b["protocol"] for row in routes for b in row["backends"]}
        assert protocols == {"shop/orders:50051": "HTTP/2", f"http://127.0.0.1:{url_backend.port}#h2": "HTTP/2"}


async def test_curl_gets_the_backend_trailers_when_it_asks(world):
    aptget.ensure({"curl": "curl"})
    gw, _, _ = world

    def curl(*args):
        return subprocess.run(["curl", "-sS", "--http1.1", "--raw", "-i", "--max-time", "10", *args],
                              capture_output=True, timeout=20).stdout

    out = await asyncio.to_thread(curl, "-H", "TE: trailers", "--data-binary", "ping", gw.base + "/orders/echo")
    assert b"HTTP/1.1 200" in out and b"content-type: application/grpc" in out.lower()
    assert out.endswith(b"4\r\nping\r\n0\r\ngrpc-status: 0\r\nx-trailer: done\r\n\r\n")
    out = await asyncio.to_thread(curl, "--data-binary", "ping", gw.base + "/orders/echo")
    assert out.endswith(b"4\r\nping\r\n0\r\n\r\n")


async def test_expect_100_continue_from_an_http2_client_never_reaches_the_h2c_backend(world):
    gw, svc_backend, _ = world
    out = await asyncio.to_thread(h2_request, gw.port, "/orders/up", headers=[(b"expect", b"100-continue")],
                                  body=b"z" * 1000, body_after_100=True)
    assert out.interim == [100] and out.status == 200, out
    doc = json.loads(out.body)
    assert doc["body_bytes"] == 1000 and "expect" not in doc["headers"]
