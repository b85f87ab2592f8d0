"""Which protocol the proxy speaks to a backend: a Service port's appProtocol, a url backend's ``protocol``."""

from __future__ import annotations

import pytest

from controller.compile import compile_snapshot, refresh_endpoints
from gateway.routing import Endpoint
from kobjects import apiendpoint, endpointslice, service, snapshot


def table_of(*objs, spec):
    result = compile_snapshot(snapshot(apiendpoint("r", spec), *objs))
    return result, result.statuses["APIEndpoint:shop/r"]


def grpc_service(app_protocol):
    port = {"name": "grpc", "port": 50051, "targetPort": 9000}
    if app_protocol is not None:
        port["appProtocol"] = app_protocol
    return service("orders", ports=[port]), endpointslice("orders", ["10.0.0.7"], port=9000, port_name="grpc")


@pytest.mark.parametrize("app_protocol, http2", [
    ("kubernetes.io/h2c", True), ("h2c", True), ("grpc", True), ("HTTP2", True),
    (None, False), ("http", False), ("kubernetes.io/ws", False),
])
def test_service_port_app_protocol_chooses_http2(app_protocol, http2):
    result, st = table_of(*grpc_service(app_protocol), spec={"path": "/r", "backendService": "orders"})
    assert st.state == "Ready"
    assert result.table.endpoints["shop/orders:50051"].endpoints == (Endpoint("10.0.0.7", 9000, http2=http2),)


def test_app_protocol_change_reaches_the_endpoints_without_a_full_compile():
    spec = {"path": "/r", "backendService": "orders"}
    plain, _ = table_of(*grpc_service(None), spec=spec)
    svc, eps = grpc_service("kubernetes.io/h2c")
    refreshed = refresh_endpoints(plain, snapshot(apiendpoint("r", spec), svc, eps), 2)
    assert refreshed.table.endpoints["shop/orders:50051"].endpoints[0].http2


def test_external_name_port_app_protocol():
    svc = service("pay", type="ExternalName", external_name="pay.example.net",
                  ports=[{"name": "grpc", "port": 443, "appProtocol": "kubernetes.io/h2c"}])
    result, _ = table_of(svc, spec={"path": "/r", "backends": [{"service": {"name": "pay", "port": 443}}]})
    assert result.table.endpoints["shop/pay:443"].endpoints == (Endpoint("pay.example.net", 443, http2=True),)


def test_url_backend_protocol_is_part_of_the_backend():
    spec = {"path": "/r", "backends": [
        {"url": "http://127.0.0.1:9000", "protocol": "HTTP/2"},
        {"url": "http://127.0.0.1:9000"},
        {"url": "https://api.example.net", "protocol": "HTTP/2"},
        {"url": "http://127.0.0.1:9001", "protocol": "HTTP/1.1"},
    ]}
    result, st = table_of(spec=spec)
    assert st.state == "Ready"
    eps = result.table.endpoints
    route = result.table.match("GET", "h", "/r").route
    # The same URL in two protocols is two backends (two pools in the proxy).
    assert [b.key for b in route.backends] == [
        "http://127.0.0.1:9000#h2", "http://127.0.0.1:9000", "https://api.example.net#h2", "http://127.0.0.1:9001"]
    assert eps["http://127.0.0.1:9000#h2"].endpoints == (Endpoint("127.0.0.1", 9000, http2=True),)
    assert eps["http://127.0.0.1:9000#h2"].host_header == "127.0.0.1:9000"
    assert eps["http://127.0.0.1:9000"].endpoints == (Endpoint("127.0.0.1", 9000),)
    assert eps["https://api.example.net#h2"].endpoints == (Endpoint("api.example.net", 443, tls=True, http2=True),)
    assert eps["http://127.0.0.1:9001"].endpoints == (Endpoint("127.0.0.1", 9001),)


def test_protocol_on_a_service_backend_is_an_invalid_spec():
    spec = {"path": "/r", "backends": [{"service": {"name": "orders"}, "protocol": "HTTP/2"}]}
    _, st = table_of(*grpc_service(None), spec=spec)
    assert st.state == "Error" and st.reason == "InvalidSpec"
    assert "spec.backends[0].protocol" in st.message and "appProtocol" in st.message


def test_unknown_protocol_is_an_invalid_spec():
    _, st = table_of(spec={"path": "/r", "backends": [{"url": "http://a:1", "protocol": "h3"}]})
    assert st.reason == "InvalidSpec" and "protocol" in st.message
