"""OpenTelemetry tracing: spans reach an OTLP/HTTP receiver with their attributes and links.

The receiver is an aiohttp server on 127.0.0.1 that decodes the protobuf it is
sent (opentelemetry-proto's message classes, from the test extra).
"""

import asyncio
import socket
import struct

import pytest
from aiohttp import web

pytest.importorskip("opentelemetry.proto", reason="opentelemetry-proto (the test extra) is not installed")

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest  # noqa: E402

import gateway.tracing as tracing  # noqa: E402
import gateway.upstream as upstream  # noqa: E402
from gateway import metrics  # noqa: E402
from gateway.config import GatewayConfig, Limits  # noqa: E402
from gateway.ratelimit import RateLimiter  # noqa: E402
from gateway.routing import Endpoint, RateLimitPolicy, RetryPolicy, RoutePolicy  # noqa: E402
from gateway.server import Server  # noqa: E402
from polling import eventually  # noqa: E402
from proxyharness import RawClient, free_port, proxy_port, request, route, start_backend, start_proxy, table  # noqa: E402

SERVER, CLIENT = 2, 3  # Span.SpanKind in the OTLP protobuf


class Receiver:
    """An OTLP/HTTP trace receiver: keeps every span it is sent, decoded."""

    def __init__(self):
        self.spans = []
        self.runner = None
        self.url = ""

    async def start(self):
        async def traces(request):
            msg = ExportTraceServiceRequest()
            msg.ParseFromString(await request.read())
            for rs in msg.resource_spans:
                for ss in rs.scope_spans:
                    self.spans.extend(ss.spans)
            return web.Response(body=b"", content_type="application/x-protobuf")

        app = web.Application()
        app.router.add_post("/v1/traces", traces)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.url = "http://127.0.0.1:%d/v1/traces" % site._server.sockets[0].getsockname()[1]
        return self

    def of_kind(self, kind):
        return [s for s in self.spans if s.kind == kind]


def attrs(span) -> dict:
    out = {}
    for kv in span.attributes:
        v = kv.value
        out[kv.key] = v.string_value if v.HasField("string_value") else v.int_value
    return out


@pytest.fixture(autouse=True)
def quick_export(monkeypatch):
    monkeypatch.setattr(tracing, "EXPORT_INTERVAL", 0.05)


async def test_server_and_client_spans_and_the_backend_parent():
    rx = await Receiver().start()
    b = await start_backend("b")
    srv = await start_proxy(table([route(path="/api")], {"ns/svc:80": (b.endpoint,)}),
                            otlp_endpoint=rx.url, trace_sample_ratio=1.0)
    try:
        r = await request(proxy_port(srv), path="/api/items?x=1")
        assert r.status == 200
        sent = r.json()["headers"]["traceparent"]
        await eventually(lambda: len(rx.spans) >= 2, what="two spans at the receiver")
        (server,), (client,) = rx.of_kind(SERVER), rx.of_kind(CLIENT)
        assert server.name == "GET /api" and client.name == "GET"
        a = attrs(server)
        assert a["http.request.method"] == "GET" and a["url.path"] == "/api/items" and a["url.query"] == "x=1"
        assert a["http.route"] == "/api" and a["crdgate.route"] == "ns/r"
        assert a["http.response.status_code"] == 200 and a["server.address"] == "example.test"
        assert a["client.address"] == "127.0.0.1" and a["crdgate.upstream"] == b.endpoint.address
        assert server.parent_span_id == b""  # a new trace: the gateway is its root
        assert client.trace_id == server.trace_id and client.parent_span_id == server.span_id
        c = attrs(client)
        assert c["server.address"] == "127.0.0.1" and c["server.port"] == b.endpoint.port
        assert c["http.response.status_code"] == 200 and "http.request.resend_count" not in c
        # The backend's parent is the client span.
        assert sent == "00-%s-%s-01" % (server.trace_id.hex(), client.span_id.hex())
        assert server.start_time_unix_nano <= client.start_time_unix_nano <= client.end_time_unix_nano
        assert client.end_time_unix_nano <= server.end_time_unix_nano
    finally:
        await srv.close()
        await b.runner.cleanup()
        await rx.runner.cleanup()


async def test_a_retry_shows_two_client_spans(monkeypatch):
    monkeypatch.setattr(upstream, "EJECT_AFTER", 1000)
    rx = await Receiver().start()
    calls = []

    async def busy_once(request, body):
        calls.append(request.headers["traceparent"])
        if len(calls) == 1:
            return web.Response(status=503, text="busy")
        return web.Response(text="ok")

    b = await start_backend("b", busy_once)
    pol = RoutePolicy(retries=RetryPolicy(attempts=2, backoff=0.001))
    srv = await start_proxy(table([route(path="/", policy=pol)], {"ns/svc:80": (b.endpoint,)}),
                            otlp_endpoint=rx.url, trace_sample_ratio=1.0)
    try:
        assert (await request(proxy_port(srv))).status == 200
        await eventually(lambda: len(rx.spans) >= 3, what="1 server + 2 client spans")
        (server,) = rx.of_kind(SERVER)
        tries = sorted(rx.of_kind(CLIENT), key=lambda c: c.start_time_unix_nano)
        assert [t.parent_span_id for t in tries] == [server.span_id] * 2
        first, second = attrs(tries[0]), attrs(tries[1])
        assert first["http.response.status_code"] == 503 and first["error.type"] == "503"
        assert tries[0].status.code == 2  # STATUS_CODE_ERROR
        assert second["http.response.status_code"] == 200 and second["http.request.resend_count"] == 1
        assert tries[0].end_time_unix_nano <= tries[1].start_time_unix_nano
        # Each try told the backend its own span as parent.
        assert [c.split("-")[2] for c in calls] == [t.span_id.hex() for t in tries]
    finally:
        await srv.close()
        await b.runner.cleanup()
        await rx.runner.cleanup()


async def test_a_connect_failure_is_an_error_client_span():
    rx = await Receiver().start()
    dead = Endpoint("127.0.0.1", free_port())
    srv = await start_proxy(table([route(path="/")], {"ns/svc:80": (dead,)}),
                            otlp_endpoint=rx.url, trace_sample_ratio=1.0)
    try:
        assert (await request(proxy_port(srv))).status == 502
        await eventually(lambda: len(rx.spans) >= 2, what="1 server + 1 client span")
        (server,), (client,) = rx.of_kind(SERVER), rx.of_kind(CLIENT)
        assert attrs(client)["error.type"] == "connect" and client.status.code == 2
        assert "http.response.status_code" not in attrs(client)
        assert attrs(server)["http.response.status_code"] == 502 and server.status.code == 2
    finally:
        await srv.close()
        await rx.runner.cleanup()


async def test_a_client_that_leaves_and_a_cut_response_still_give_spans():
    rx = await Receiver().start()
    release = asyncio.Event()

    async def slow(request, body):
        if request.path == "/cut":
            transport = request.transport
            resp = web.StreamResponse(headers={"content-length": "100"})
            await resp.prepare(request)
            await resp.write(b"partial")
            await asyncio.sleep(0.1)  # the head and the first bytes are on their way
            transport.abort()  # the response is cut after its head
            return resp
        await release.wait()
        return web.Response(text="late")

    b = await start_backend("b", slow)
    srv = await start_proxy(table([route(path="/")], {"ns/svc:80": (b.endpoint,)}),
                            otlp_endpoint=rx.url, trace_sample_ratio=1.0)
    try:
        async with RawClient(proxy_port(srv)) as c:
            await c.send(b"GET /slow HTTP/1.1\r\nHost: example.test\r\n\r\n")
            await eventually(lambda: len(b.seen) == 1, what="the request at the backend")
            # Gone: a reset (a FIN is a half-close, and the gateway would still send the answer).
            c.writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            c.writer.transport.abort()
        await eventually(lambda: rx.of_kind(SERVER), what="the span of the request whose client left")
        (left,) = rx.of_kind(SERVER)
        assert attrs(left)["error.type"] == "client_closed" and left.status.code == 2
        assert "http.response.status_code" not in attrs(left)
        async with RawClient(proxy_port(srv)) as c:
            await c.send(b"GET /cut HTTP/1.1\r\nHost: example.test\r\n\r\n")
            got = b""
            try:
                got = await asyncio.wait_for(c.reader.read(), 5)  # to EOF: the gateway cuts the connection
            except ConnectionError:
                pass
            assert got.startswith(b"HTTP/1.1 200") and got.endswith(b"partial")  # cut short of its 100 bytes
        await eventually(lambda: len(rx.of_kind(SERVER)) == 2, what="the span of the cut response")
        cut = next(s for s in rx.of_kind(SERVER) if attrs(s)["url.path"] == "/cut")
        assert attrs(cut)["error.type"] == "reset" and attrs(cut)["http.response.status_code"] == 200
        (try_span,) = [s for s in rx.of_kind(CLIENT) if s.parent_span_id == cut.span_id]
        assert attrs(try_span)["error.type"] == "reset"
    finally:
        release.set()
        await srv.close()
        await b.runner.cleanup()
        await rx.runner.cleanup()


async def test_ratio_zero_sends_nothing_but_a_sampled_traceparent_is_traced():
    rx = await Receiver().start()
    b = await start_backend("b")
    srv = await start_proxy(table([route(path="/")], {"ns/svc:80": (b.endpoint,)}),
                            otlp_endpoint=rx.url, trace_sample_ratio=0.0)
    port = proxy_port(srv)
    try:
        for _ in range(20):
            assert (await request(port)).status == 200
        unsampled = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"
        r = await request(port, headers={"traceparent": unsampled, "tracestate": "v=1"})
        # Not sampled by the client: forwarded untouched, no span.
        assert r.json()["headers"]["traceparent"] == unsampled
        sampled = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        r = await request(port, headers={"traceparent": sampled, "tracestate": "v=1"})
        seen = r.json()["headers"]
        await eventually(lambda: len(rx.spans) >= 2, what="the sampled request's spans")
        await asyncio.sleep(0.2)  # a few export intervals: any other span would have arrived
        assert len(rx.spans) == 2
        (server,), (client,) = rx.of_kind(SERVER), rx.of_kind(CLIENT)
        assert server.trace_id.hex() == "0af7651916cd43dd8448eb211c80319c"
        assert server.parent_span_id.hex() == "b7ad6b7169203331"  # the client's span
        assert server.trace_state == "v=1"
        assert seen["traceparent"] == "00-0af7651916cd43dd8448eb211c80319c-%s-01" % client.span_id.hex()
        assert seen["tracestate"] == "v=1"
    finally:
        await srv.close()
        await b.runner.cleanup()
        await rx.runner.cleanup()


async def test_rate_limit_outcome_and_consumer_free_rejection():
    rx = await Receiver().start()
    b = await start_backend("b")
    pol = RoutePolicy(rate_limit=RateLimitPolicy(requests_per_minute=1, burst=0))
    config = GatewayConfig(listen=("127.0.0.1", 0), access_log=False, limits=Limits(),
                           otlp_endpoint=rx.url, trace_sample_ratio=1.0)
    srv = Server(config, limiter=RateLimiter.from_config(None))
    srv.swap(table([route(path="/", policy=pol)], {"ns/svc:80": (b.endpoint,)}))
    await srv.start()
    try:
        statuses = [(await request(proxy_port(srv))).status for _ in range(2)]
        assert statuses == [200, 429]
        await eventually(lambda: len(rx.of_kind(SERVER)) >= 2, what="two server spans")
        outcome = {attrs(s)["http.response.status_code"]: attrs(s)["crdgate.rate_limit"] for s in rx.of_kind(SERVER)}
        assert outcome == {200: "admitted", 429: "rejected"}
        assert len(rx.of_kind(CLIENT)) == 1  # the rejected request never reached the backend
    finally:
        await srv.close()
        await b.runner.cleanup()
        await rx.runner.cleanup()


async def test_unreachable_collector_costs_requests_nothing_but_a_counter():
    b = await start_backend("b")
    dead = "http://127.0.0.1:%d/v1/traces" % free_port()
    srv = await start_proxy(table([route(path="/")], {"ns/svc:80": (b.endpoint,)}),
                            otlp_endpoint=dead, trace_sample_ratio=1.0)
    try:
        for _ in range(10):
            assert (await request(proxy_port(srv))).status == 200

        def dropped():
            fams = {f.name: f for f in metrics.TRACING.collect()}
            return sum(s.value for s in fams["crdgate_trace_spans_dropped"].samples
                       if s.labels.get("reason") == "export_failed")

        assert metrics.TRACING.tracer is srv.tracer
        await eventually(lambda: dropped() >= 20, timeout=30, what="20 spans counted as dropped")
        assert srv.tracer.spans_exported == 0
    finally:
        await srv.close()
        await b.runner.cleanup()


def test_full_queue_drops_and_counts(monkeypatch):
    monkeypatch.setattr(tracing, "QUEUE_LIMIT", 0)

    class Never:
        def export(self, spans):
            raise AssertionError("nothing is queued")

        def shutdown(self):
            pass

    t = tracing.Tracer("http://127.0.0.1:1/v1/traces", 1.0, exporter=Never())
    try:
        trace = t.sample([])
        trace.try_started("10.0.0.1:80", 1.0)

        class Ex:  # the fields finish() reads before it finds the queue full
            pass

        ex = Ex()
        ex.trace = trace
        t.finish(ex, 2.0)
        assert t.dropped_queue_full == 2  # the server span and its one client span
    finally:
        t.close()


def test_traceparent_parsing():
    p = tracing.parse_traceparent
    assert p(b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01") == (
        0x0af7651916cd43dd8448eb211c80319c, 0xb7ad6b7169203331, True)
    assert p(b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00")[2] is False
    assert p(b"01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-future") is not None
    for bad in (b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-x",  # version 00: 4 fields
                b"ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                b"00-00000000000000000000000000000000-b7ad6b7169203331-01",
                b"00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
                b"00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01", b"garbage"):
        assert p(bad) is None, bad
