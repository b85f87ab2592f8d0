"""An unsampled request costs next to nothing: it makes no call into the tracer.

The sampling decision is made by the exchange itself (compiled): a request
without a ``traceparent`` draws one random number against the ratio; only a
request with a ``traceparent`` (parent-based) or one the ratio picked calls into
gateway/tracing.py. Requests go through the socket-free harness with a real
Tracer whose exporter keeps what it is given.
"""

import re

from gateway.tracing import Tracer
from protoharness import Gateway
from proxyharness import route, table

INCOMING = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-0%d"


class CountingTracer(Tracer):
    def __init__(self, ratio: float):
        class Exporter:
            def export(self, body):
                pass

            def shutdown(self):
                pass

        super().__init__("http://127.0.0.1:9/v1/traces", ratio, exporter=Exporter())
        self.calls = {"sample": 0, "new_trace": 0}

    def sample(self, headers):
        self.calls["sample"] += 1
        return super().sample(headers)

    def new_trace(self):
        self.calls["new_trace"] += 1
        return super().new_trace()


async def _requests(ratio: float, extra: bytes = b"", n: int = 20):
    gw = Gateway(None)
    b = gw.backend("b1")
    gw.server.swap(table([route(path="/api")], {"ns/svc:80": (b.endpoint,)}))
    tracer = gw.server.tracer = CountingTracer(ratio)
    seen = []
    async with gw:
        c = gw.client()
        for i in range(n):
            c.send(b"GET /api HTTP/1.1\r\nHost: a\r\n" + extra + b"\r\n")
            assert (await c.response()).status == 200
            seen.append((await b.request(i + 1)).headers.get("traceparent"))
    return tracer, seen


async def test_an_unsampled_request_without_traceparent_makes_no_call_into_the_tracer():
    tracer, seen = await _requests(0.0)
    assert tracer.calls == {"sample": 0, "new_trace": 0}
    assert seen == [None] * 20  # nothing added to what the backend sees


async def test_the_ratio_alone_starts_traces_and_the_backend_gets_this_trace():
    tracer, seen = await _requests(1.0)
    assert tracer.calls == {"sample": 0, "new_trace": 20}
    assert all(re.fullmatch(r"00-[0-9a-f]{32}-[0-9a-f]{16}-01", s) for s in seen)
    assert len({s[3:35] for s in seen}) == 20  # a new trace each time


async def test_a_traceparent_decides_whatever_the_ratio():
    sampled = f"traceparent: {INCOMING % 1}\r\ntracestate: a=1\r\n".encode()
    tracer, seen = await _requests(0.0, sampled, n=3)
    assert tracer.calls == {"sample": 3, "new_trace": 0}
    # Traced: the backend's parent is this gateway's client span, in the client's trace.
    assert all(s.startswith("00-0af7651916cd43dd8448eb211c80319c-") and s != INCOMING % 1 for s in seen)

    unsampled = f"traceparent: {INCOMING % 0}\r\n".encode()
    tracer, seen = await _requests(1.0, unsampled, n=3)
    assert tracer.calls == {"sample": 3, "new_trace": 0}
    assert seen == [INCOMING % 0] * 3  # not traced, forwarded untouched

    invalid = b"traceparent: 00-xyz\r\n"  # an invalid one: the ratio decides, drawn once
    tracer, seen = await _requests(1.0, invalid, n=3)
    assert tracer.calls["sample"] == 3
    assert all(s != "00-xyz" and s.endswith("-01") for s in seen)
