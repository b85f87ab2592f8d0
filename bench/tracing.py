"""The ``tracing`` scenario: what OpenTelemetry tracing at a 1% sample costs.

Two crdgate processes serve the same plain route, one with
``--otlp-endpoint`` (a local OTLP sink) and ``--trace-sample-ratio 0.01``,
one without. Each measured round runs nginx, then the untraced gateway, then
the traced one, seconds apart (the order of the two gateways alternates
between rounds, so neither always runs on a warmer machine). The cost is the
median over rounds of ``1 - traced/untraced`` req/s: a paired figure, like
the nginx ratios of the load scenarios (bench/scenarios.py).

The sink answers every export with an empty ExportTraceServiceResponse and
counts requests and bytes: no protobuf decoding on the load side. The traced
gateway's ``crdgate_trace_spans_*`` counters are read after the runs, so the
report shows spans were really exported.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from . import manifests
from .client import Client
from .gateway import GatewayError
from .scenarios import Context, Result, error_reason, preflight
from .stats import median
from .tools import install_hint
from .wrk import WrkError, WrkResult

RATIO = 0.01
TITLE = "plain route, OpenTelemetry tracing at 1% (OTLP/HTTP to a local sink)"


class OtlpSink:
    """An OTLP/HTTP trace endpoint on 127.0.0.1 that accepts and counts what it is sent."""

    def __init__(self):
        sink = self
        self.requests = 0
        self.bytes = 0

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                n = int(self.headers.get("content-length") or 0)
                self.rfile.read(n)
                sink.requests += 1
                sink.bytes += n
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d/v1/traces" % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, name="otlp-sink", daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def gateway_flags(sink_url: str, ratio: float = RATIO) -> list[str]:
    """The flags that turn tracing on for the traced gateway."""
    return ["--otlp-endpoint", sink_url, "--trace-sample-ratio", f"{ratio:g}"]


def cost(traced: list[WrkResult], untraced: list[WrkResult]) -> dict:
    """Per-round figures of the traced gateway against the untraced one, paired by round."""
    pairs = [(t, u) for t, u in zip(traced, untraced) if u.rps]
    if not pairs:
        return {"rounds": 0, "rps_cost_pct": None}
    costs = [100.0 * (1.0 - t.rps / u.rps) for t, u in pairs]
    cpu = [100.0 * (t.cpu_us_per_request / u.cpu_us_per_request - 1.0) for t, u in pairs
           if t.cpu_us_per_request is not None and u.cpu_us_per_request]
    return {
        "rounds": len(pairs),
        "rps_cost_pct": round(median(costs), 2),
        "rps_cost_pct_each": [round(c, 2) for c in costs],
        "cpu_cost_pct": round(median(cpu), 2) if cpu else None,
        "untraced_rps_median": median([u.rps for _, u in pairs]),
        "traced_rps_median": median([t.rps for t, _ in pairs]),
    }


def spans_from_metrics(text: str) -> dict:
    """crdgate_trace_spans_exported_total and the dropped ones (by reason) from a /metrics page."""
    out = {"exported": 0.0, "dropped": 0.0}
    for line in text.splitlines():
        if line.startswith("crdgate_trace_spans_exported_total"):
            out["exported"] += float(line.rsplit(" ", 1)[1])
        elif line.startswith("crdgate_trace_spans_dropped_total"):
            out["dropped"] += float(line.rsplit(" ", 1)[1])
    return out


def summary_line(extra: dict) -> str:
    """One line for the text report."""
    if not extra.get("rounds"):
        return "tracing: no paired rounds"
    cpu = extra.get("cpu_cost_pct")
    spans = extra.get("spans") or {}
    return (f"tracing at {extra['ratio']:g}: req/s cost {extra['rps_cost_pct']:+.1f}% (1 - traced/untraced) "
            f"(median of {extra['rounds']} paired rounds; medians untraced {extra['untraced_rps_median']:,.0f}, "
            f"traced {extra['traced_rps_median']:,.0f} req/s)"
            + (f", CPU/request {cpu:+.1f}%" if cpu is not None else "")
            + f"; spans exported {spans.get('exported', 0):,.0f}, dropped {spans.get('dropped', 0):,.0f}")


def run_tracing(ctx: Context) -> Result:
    result = Result("tracing", "tracing", TITLE)
    if ctx.wrk is None:
        return result.skip(f"wrk is missing: {install_hint(['wrk'])}")
    folder = ctx.folder("tracing")
    manifests.write(folder / "manifests" / "plain.yaml",
                    [manifests.api_endpoint("plain", "/plain", ctx.backend.url)])
    sink = OtlpSink()
    gws = []
    try:
        ctx.progress.update("tracing: starting crdgate with and without tracing")
        try:
            plain = ctx.start_gateway("tracing-off", folder)
            gws.append(plain)
            traced = ctx.start_gateway("tracing-on", folder, extra_args=gateway_flags(sink.url))
            gws.append(traced)
        except GatewayError as exc:
            return result.fail(str(exc))
        for gw in gws:
            problem = preflight(gw, ["/plain"], {})
            if problem:
                return result.fail(problem)
        s = ctx.settings
        script = ctx.wrk.prepare(["/plain"])
        if s.warmup_s > 0:
            for gw in gws:
                ctx.wrk.run(gw.url, script, s.warmup_s)
        untraced_runs = []
        for i in range(s.runs):
            if ctx.nginx_url is not None:
                ctx.progress.update(f"tracing: nginx reference {i + 1}/{s.runs}")
                result.reference.append(ctx.wrk.run(ctx.nginx_url, script, s.duration_s, ctx.nginx_pid))
            order = [(plain, untraced_runs), (traced, result.runs)]
            if i % 2:
                order.reverse()
            for gw, runs in order:
                which = "traced" if gw is traced else "untraced"
                ctx.progress.update(f"tracing: {which} run {i + 1}/{s.runs}")
                runs.append(ctx.wrk.run(gw.url, script, s.duration_s, gw.child.pid))
                gw.check_alive()
        admin = Client(traced.admin_port, timeout=5.0)
        try:
            status, body = admin.get("/metrics")
        finally:
            admin.close()
        result.extra = {
            "ratio": RATIO,
            **cost(result.runs, untraced_runs),
            "untraced_runs": [w.to_json() for w in untraced_runs],
            "spans": spans_from_metrics(body) if status == 200 else None,
            "sink": {"requests": sink.requests, "bytes": sink.bytes},
        }
        bad = [r for r in result.runs + untraced_runs if r.errors_total]
        if bad:
            result.fail(error_reason(result.runs + untraced_runs))
    except (WrkError, GatewayError) as exc:
        result.fail(str(exc))
    finally:
        for gw in gws:
            gw.stop()
        sink.close()
    return result
