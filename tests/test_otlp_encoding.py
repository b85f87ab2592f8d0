"""gateway/otlp.py writes the bytes the OpenTelemetry SDK's encoder writes for the same spans.

The SDK (opentelemetry-sdk, opentelemetry-exporter-otlp-proto-common) is only
the reference here, a test extra: the gateway does not use it. Where it is
missing the comparison skips, and fails under CI=true; the decoding checks
need opentelemetry-proto only.
"""

import os

import pytest

pytest.importorskip("opentelemetry.proto", reason="opentelemetry-proto (the test extra) is not installed")

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest  # noqa: E402
from opentelemetry.proto.trace.v1.trace_pb2 import Span  # noqa: E402

from gateway import otlp  # noqa: E402

TRACE, SERVER_ID, PARENT, CLIENT_ID = 0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331, 0x1122334455667788, 0x99


def _ours():
    state = otlp.tracestate(b"vendor=a1, other@tenant=x:y")
    attrs = [otlp.attribute("http.request.method", "GET"), otlp.attribute("url.path", "/caf\u00e9"),
             otlp.attribute("http.response.status_code", 503), otlp.attribute("server.port", 8080),
             otlp.attribute("error.type", "503")]
    server = otlp.span(TRACE.to_bytes(16, "big"), SERVER_ID, state, PARENT, "GET /api", otlp.SERVER,
                       1_700_000_000_000_000_000, 1_700_000_000_002_000_000, attrs, True, True)
    client = otlp.span(TRACE.to_bytes(16, "big"), CLIENT_ID, state, SERVER_ID, "GET", otlp.CLIENT,
                       1_700_000_000_000_500_000, 1_700_000_000_001_500_000,
                       [otlp.attribute("http.request.resend_count", 1)], False, False)
    body = otlp.export_request(otlp.resource("crdgate"), otlp.scope("gateway"), [server, client])
    msg = ExportTraceServiceRequest()
    msg.ParseFromString(body)
    return msg


def test_the_request_decodes_with_every_field():
    msg = _ours()
    (rs,) = msg.resource_spans
    res = {kv.key: kv.value.string_value for kv in rs.resource.attributes}
    assert res["service.name"] == "crdgate" and res["telemetry.sdk.language"] == "python"
    (ss,) = rs.scope_spans
    assert ss.scope.name == "gateway"
    server, client = ss.spans
    assert server.trace_id == TRACE.to_bytes(16, "big") and server.span_id == SERVER_ID.to_bytes(8, "big")
    assert server.parent_span_id == PARENT.to_bytes(8, "big") and server.trace_state == "vendor=a1,other@tenant=x:y"
    assert server.kind == Span.SPAN_KIND_SERVER and server.name == "GET /api"
    assert server.end_time_unix_nano - server.start_time_unix_nano == 2_000_000
    attrs = {kv.key: kv.value for kv in server.attributes}
    assert attrs["url.path"].string_value == "/caf\u00e9" and attrs["http.response.status_code"].int_value == 503
    assert server.status.code == 2 and client.status.code == 0  # ERROR, UNSET
    assert server.flags == 0x300 and client.flags == 0x100  # remote parent / local parent
    assert client.kind == Span.SPAN_KIND_CLIENT and client.parent_span_id == server.span_id


def test_the_bytes_are_the_sdk_encoders():
    try:
        import opentelemetry.sdk.trace  # noqa: F401
    except ImportError:
        # A test extra: under CI=true it must be there (README's test command installs it).
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("the OpenTelemetry SDK (the reference, a test extra) is not installed")
        pytest.skip("the OpenTelemetry SDK (the reference) is not installed")
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope
    from opentelemetry.trace import SpanContext, SpanKind, TraceFlags, TraceState
    from opentelemetry.trace.status import Status, StatusCode

    sampled = TraceFlags(TraceFlags.SAMPLED)
    state = TraceState.from_header(["vendor=a1, other@tenant=x:y"])
    server_ctx = SpanContext(TRACE, SERVER_ID, False, sampled, state)
    resource = Resource({"service.name": "crdgate"})
    scope = InstrumentationScope("gateway")
    sdk = encode_spans([
        ReadableSpan("GET /api", context=server_ctx, parent=SpanContext(TRACE, PARENT, True, sampled, state),
                     resource=resource, kind=SpanKind.SERVER, instrumentation_scope=scope,
                     attributes={"http.request.method": "GET", "url.path": "/caf\u00e9",
                                 "http.response.status_code": 503, "server.port": 8080, "error.type": "503"},
                     start_time=1_700_000_000_000_000_000, end_time=1_700_000_000_002_000_000,
                     status=Status(StatusCode.ERROR)),
        ReadableSpan("GET", context=SpanContext(TRACE, CLIENT_ID, False, sampled, state), parent=server_ctx,
                     resource=resource, kind=SpanKind.CLIENT, instrumentation_scope=scope,
                     attributes={"http.request.resend_count": 1},
                     start_time=1_700_000_000_000_500_000, end_time=1_700_000_000_001_500_000,
                     status=Status(StatusCode.UNSET)),
    ])
    ours = _ours()
    theirs = sdk.resource_spans[0].scope_spans[0]
    mine = ours.resource_spans[0].scope_spans[0]
    assert mine.scope == theirs.scope
    for a, b in zip(mine.spans, theirs.spans, strict=True):
        assert a.SerializeToString(deterministic=True) == b.SerializeToString(deterministic=True)


def test_tracestate_keeps_valid_members_or_nothing():
    assert otlp.tracestate(b"a=1,b=2") == b"a=1,b=2"
    assert otlp.tracestate(b" a=1 , ,b=2 ") == b"a=1,b=2"
    assert otlp.tracestate(None) is None and otlp.tracestate(b"") is None
    assert otlp.tracestate(b"A=1") is None  # keys are lower case
    assert otlp.tracestate(b"a=1,garbage") is None
    assert otlp.tracestate(b",".join(b"k%d=v" % i for i in range(33))) is None  # at most 32 members


def test_ints_and_long_values_encode():
    for value in (0, 127, 128, 300, 2**40, -1):
        kv = otlp.attribute("k", value)
        msg = Span()
        msg.ParseFromString(kv)
        assert msg.attributes[0].value.int_value == value
    long = "x" * 70000
    msg = Span()
    msg.ParseFromString(otlp.attribute("k", long))
    assert msg.attributes[0].value.string_value == long
