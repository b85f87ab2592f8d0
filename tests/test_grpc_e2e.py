"""gRPC through the real process, both sides HTTP/2: grpcio clients -> crdgate -> a grpcio server.

The client speaks h2c with prior knowledge to ``--listen`` and h2 by ALPN to
``--listen-tls``; the backend is a Service port with ``appProtocol:
kubernetes.io/h2c`` (an APIEndpoint) or a GRPCRoute's backendRef. Every call
shape goes through: unary, server streaming, client streaming, bidirectional,
with the server's trailing metadata and error statuses passed back as it sent
them. No protoc: the handlers take and give raw bytes.
"""

from __future__ import annotations

import asyncio
import json
import threading
from concurrent import futures

import grpc
import pytest

from gatewayproc import GatewayProcess
from polling import eventually
from proxyharness import free_port
from test_tls_e2e import secret_yaml
from tlsharness import CA

IDENTITY = {"request_serializer": lambda b: b, "response_deserializer": lambda b: b}


def _unary(request: bytes, context) -> bytes:
    if request == b"missing":
        context.abort(grpc.StatusCode.NOT_FOUND, "no such thing")
    context.set_trailing_metadata((("x-served-by", "echo"),))
    return b"echo:" + request


def _server_stream(request: bytes, context):
    for i in range(5):
        yield b"part%d:" % i + request


def _client_stream(requests, context) -> bytes:
    return b"+".join(requests)


def _bidi(requests, context):
    for r in requests:
        yield r.upper()


# Calls of test.Slow/Stall that saw their stream cancelled by the gateway.
STALLS_CANCELLED: list[str] = []


def _stall(request: bytes, context):
    """Two messages, then nothing until the call is cancelled (at most 20 s)."""
    cancelled = threading.Event()
    context.add_callback(cancelled.set)
    yield b"first"
    yield b"second"
    if cancelled.wait(20):
        STALLS_CANCELLED.append(request.decode())


@pytest.fixture(scope="module")
def grpc_backend():
    handler = grpc.method_handlers_generic_handler("test.Echo", {
        "Unary": grpc.unary_unary_rpc_method_handler(_unary),
        "ServerStream": grpc.unary_stream_rpc_method_handler(_server_stream),
        "ClientStream": grpc.stream_unary_rpc_method_handler(_client_stream),
        "Bidi": grpc.stream_stream_rpc_method_handler(_bidi),
    })
    slow = grpc.method_handlers_generic_handler("test.Slow", {
        "Stall": grpc.unary_stream_rpc_method_handler(_stall),
    })
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    server.add_generic_rpc_handlers((handler, slow))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield port
    server.stop(0)


def h2c_service(ns: str, name: str, port: int) -> list[dict]:
    return [
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns},
         "spec": {"ports": [{"name": "grpc", "port": 80, "targetPort": port, "appProtocol": "kubernetes.io/h2c"}]}},
        {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
         "metadata": {"name": f"{name}-1", "namespace": ns, "labels": {"kubernetes.io/service-name": name}},
         "addressType": "IPv4", "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": True}}],
         "ports": [{"name": "grpc", "port": port, "protocol": "TCP", "appProtocol": "kubernetes.io/h2c"}]},
    ]


@pytest.fixture(scope="module")
def gateway(grpc_backend, tmp_path_factory):
    folder = tmp_path_factory.mktemp("grpc")
    ca = CA()
    objects = [
        *h2c_service("shop", "echo", grpc_backend),
        {"apiVersion": "crdgate.io/v1", "kind": "APIEndpoint", "metadata": {"name": "echo", "namespace": "shop"},
         "spec": {"path": "/test.Echo/", "backendService": "echo"}},
        {"apiVersion": "crdgate.io/v1", "kind": "APIEndpoint", "metadata": {"name": "slow", "namespace": "shop"},
         "spec": {"path": "/test.Slow/", "backendService": "echo", "timeouts": {"request": "1s"}}},
        # The same backend through Gateway API: a GRPCRoute on host grpc.route.test.
        {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass", "metadata": {"name": "crdgate"},
         "spec": {"controllerName": "crdgate.io/gateway-controller"}},
        {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway", "metadata": {"name": "gw", "namespace": "shop"},
         "spec": {"gatewayClassName": "crdgate", "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]}},
        {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GRPCRoute",
         "metadata": {"name": "echo-route", "namespace": "shop"},
         "spec": {"parentRefs": [{"name": "gw"}], "hostnames": ["grpc.route.test"],
                  "rules": [{"matches": [{"method": {"service": "test.Echo", "method": "Unary"}}],
                             "backendRefs": [{"name": "echo", "port": 80}]}]}},
    ]
    (folder / "objects.json").write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}))
    (folder / "tls.yaml").write_text(secret_yaml("infra", "default", ca.issue("localhost", "127.0.0.1")))
    tls_port = free_port()
    gw = GatewayProcess(folder, "--listen-tls", f"127.0.0.1:{tls_port}", "--default-certificate", "infra/default",
                        access_log=True)
    try:
        gw.wait_ready(timeout=60)
        yield gw, tls_port, ca
    finally:
        gw.close()


def exercise(channel: grpc.Channel) -> None:
    unary = channel.unary_unary("/test.Echo/Unary", **IDENTITY)
    reply, call = unary.with_call(b"hi", timeout=10)
    assert reply == b"echo:hi"
    assert ("x-served-by", "echo") in tuple(call.trailing_metadata())  # the server's trailers, passed through
    stream = channel.unary_stream("/test.Echo/ServerStream", **IDENTITY)
    assert list(stream(b"x", timeout=10)) == [b"part%d:x" % i for i in range(5)]
    collect = channel.stream_unary("/test.Echo/ClientStream", **IDENTITY)
    assert collect(iter([b"a", b"b", b"c"]), timeout=10) == b"a+b+c"
    bidi = channel.stream_stream("/test.Echo/Bidi", **IDENTITY)
    assert list(bidi(iter([b"one", b"two", b"three"]), timeout=10)) == [b"ONE", b"TWO", b"THREE"]
    # A backend's own error status reaches the client as the backend sent it.
    with pytest.raises(grpc.RpcError) as err:
        unary(b"missing", timeout=10)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND and err.value.details() == "no such thing"
    # A large message crosses both flow-control windows (default 64 KiB) intact.
    big = bytes(range(256)) * 4096  # 1 MiB
    assert unary(big, timeout=20) == b"echo:" + big


async def test_every_call_shape_over_h2c(gateway):
    gw, _, _ = gateway
    with grpc.insecure_channel(f"127.0.0.1:{gw.port}") as channel:
        await asyncio.get_running_loop().run_in_executor(None, exercise, channel)


async def test_every_call_shape_over_tls_by_alpn(gateway):
    gw, tls_port, ca = gateway
    creds = grpc.ssl_channel_credentials(root_certificates=ca.pem)
    with grpc.secure_channel(f"localhost:{tls_port}", creds) as channel:
        await asyncio.get_running_loop().run_in_executor(None, exercise, channel)


async def test_a_grpcroute_routes_by_service_and_method(gateway):
    gw, _, _ = gateway

    def calls():
        options = (("grpc.default_authority", "grpc.route.test"),)
        with grpc.insecure_channel(f"127.0.0.1:{gw.port}", options=options) as channel:
            assert channel.unary_unary("/test.Echo/Unary", **IDENTITY)(b"r", timeout=10) == b"echo:r"
            # No route for another service, on any host: UNIMPLEMENTED, made by the gateway.
            with pytest.raises(grpc.RpcError) as err:
                channel.unary_unary("/other.Svc/Unary", **IDENTITY)(b"r", timeout=10)
            assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED

    await asyncio.get_running_loop().run_in_executor(None, calls)
    # The exact method match on the route's host beat the APIEndpoint's prefix (Gateway API precedence).
    lines = await eventually(lambda: [line for line in gw.stdout().splitlines() if "shop/echo-route" in line],
                             what=lambda: f"no access log line of the GRPCRoute:\n{gw.stdout()[-3000:]}")
    assert '"protocol":"HTTP/2.0"' in lines[0] and '"path":"/test.Echo/Unary"' in lines[0]


async def test_a_stream_past_the_routes_timeout_ends_deadline_exceeded(gateway):
    """The response is streaming when the route's 1 s runs out: the client gets what came
    before and DEADLINE_EXCEEDED (not a reset), and the backend's call is cancelled."""
    gw, _, _ = gateway

    def call():
        got = []
        with grpc.insecure_channel(f"127.0.0.1:{gw.port}") as channel:
            stall = channel.unary_stream("/test.Slow/Stall", **IDENTITY)
            with pytest.raises(grpc.RpcError) as err:
                for message in stall(b"route-timeout", timeout=15):
                    got.append(message)
        return got, err.value

    got, error = await asyncio.get_running_loop().run_in_executor(None, call)
    assert got == [b"first", b"second"]
    assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED, (error.code(), error.details())
    await eventually(lambda: "route-timeout" in STALLS_CANCELLED, what="the backend's call was never cancelled")
