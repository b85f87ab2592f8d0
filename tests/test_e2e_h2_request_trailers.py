"""Request trailers end to end: an HTTP/2 client over a real socket -> the real process -> backends.

To an h2c backend (a Service port with ``appProtocol: kubernetes.io/h2c``) the
trailers go as a trailing HEADERS frame that ends the stream; to an HTTP/1.1
backend, in the last chunk of the chunked body. A client that declared a
Content-Length gets them dropped toward HTTP/1.1 (nowhere to put them).
"""

from __future__ import annotations

import asyncio

import pytest

from gatewayproc import GatewayProcess, endpoint_manifests
from h2backend import H2Backend
from h2socket import h2_request
from polling import eventually

H2C_ROUTES = """
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
spec: {{path: /orders, backendService: orders}}
---
apiVersion: crdgate.io/v1
kind: APIEndpoint
metadata: {{name: plain, namespace: shop}}
spec: {{path: /plain, backendService: plain}}
"""


class RecordingBackend:
    """An HTTP/1.1 backend that keeps every byte of each request (trailers included) and answers 200."""

    def __init__(self):
        self.received: list[bytes] = []
        self.server = None
        self.port = 0

    async def start(self) -> "RecordingBackend":
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def _serve(self, reader, writer):
        data = b""
        try:
            while True:
                head_end = data.find(b"\r\n\r\n")
                if head_end >= 0:
                    head = data[:head_end].lower()
                    if b"transfer-encoding: chunked" in head:
                        done = data.endswith(b"\r\n\r\n") and b"\r\n0\r\n" in data[head_end:]
                    else:
                        sized = b"content-length: " in head
                        length = int(head.split(b"content-length: ")[1].split(b"\r\n")[0]) if sized else 0
                        done = len(data) >= head_end + 4 + length
                    if done:
                        break
                chunk = await reader.read(65536)
                if not chunk:
                    return
                data += chunk
            self.received.append(data)
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            await writer.drain()
        finally:
            writer.close()

    async def close(self):
        self.server.close()
        await self.server.wait_closed()


@pytest.fixture
async def world(tmp_path):
    h2b = await H2Backend().start()
    plain = await RecordingBackend().start()
    (tmp_path / "routes.yaml").write_text(H2C_ROUTES.format(port=h2b.port) + "---\n"
                                          + endpoint_manifests("shop", "plain", plain.port))
    gw = GatewayProcess(tmp_path)
    try:
        await asyncio.get_running_loop().run_in_executor(None, gw.wait_ready)
        yield gw, h2b, plain
    finally:
        gw.close()
        await h2b.close()
        await plain.close()


async def test_request_trailers_reach_an_h2c_backend_as_trailing_headers(world):
    gw, h2b, _ = world
    trailers = [(b"x-checksum", b"c1"), (b"grpc-foo", b"bar")]
    out = await asyncio.to_thread(h2_request, gw.port, "/orders/up", body=b"payload", trailers=trailers)
    assert out.status == 200
    await eventually(lambda: h2b.requests and h2b.requests[-1].get("request_trailers"))
    req = h2b.requests[-1]
    assert bytes(req["body"]) == b"payload"
    assert req["request_trailers"] == trailers


async def test_request_trailers_reach_an_http11_backend_in_the_last_chunk_unless_sized(world):
    gw, _, plain = world
    out = await asyncio.to_thread(h2_request, gw.port, "/plain/up", body=b"payload", trailers=[(b"x-checksum", b"c1")])
    assert out.status == 200
    await eventually(lambda: plain.received)
    assert plain.received[0].endswith(b"7\r\npayload\r\n0\r\nx-checksum: c1\r\n\r\n"), plain.received[0]
    # A body of known length is sent as it is: its trailers have nowhere to go.
    out = await asyncio.to_thread(h2_request, gw.port, "/plain/up", body=b"payload",
                                  trailers=[(b"x-checksum", b"c2")], headers=[(b"content-length", b"7")])
    assert out.status == 200
    await eventually(lambda: len(plain.received) == 2)
    assert plain.received[1].endswith(b"\r\n\r\npayload") and b"x-checksum" not in plain.received[1]
