"""The bench's tracing scenario: its gateway flags, sink, figures and report line (no load here)."""

from __future__ import annotations

import urllib.request

from bench.__main__ import scenario_list
from bench.report import SCHEMA, table
from bench.settings import SCENARIOS
from bench.tracing import OtlpSink, cost, gateway_flags, spans_from_metrics, summary_line
from bench.wrk import WrkResult
from crdgate import cli


def wrk(rps: float, cpu_s: float | None = None) -> WrkResult:
    lat = {k: 1000.0 for k in ("p50", "p90", "p99", "p99.9", "mean", "stdev", "max")}
    errors = {k: 0 for k in ("connect", "read", "write", "status", "timeout")}
    return WrkResult(requests=int(rps * 3), duration_s=3.0, rps=rps, latency_us=lat, errors=errors, cpu_s=cpu_s)


def test_the_traced_gateways_flags_are_accepted_by_crdgate_run(tmp_path):
    flags = gateway_flags("http://127.0.0.1:4318/v1/traces")
    assert flags == ["--otlp-endpoint", "http://127.0.0.1:4318/v1/traces", "--trace-sample-ratio", "0.01"]
    config = cli.build_config(cli.build_parser().parse_args(["run", "--manifests", str(tmp_path), *flags]))
    assert config.gateway.otlp_endpoint == flags[1] and config.gateway.trace_sample_ratio == 0.01


def test_tracing_is_a_scenario_of_the_bench():
    assert "tracing" in SCENARIOS  # so a default run measures it


def test_cost_is_the_median_of_paired_rounds():
    traced = [wrk(9500, 0.30), wrk(9800, 0.30), wrk(5000, 0.30)]
    untraced = [wrk(10000, 0.29), wrk(10000, 0.29), wrk(10000, 0.29)]
    c = cost(traced, untraced)
    assert c["rounds"] == 3
    assert c["rps_cost_pct_each"] == [5.0, 2.0, 50.0]
    assert c["rps_cost_pct"] == 5.0  # the median: one disturbed round does not decide
    assert c["untraced_rps_median"] == 10000 and c["traced_rps_median"] == 9500
    assert cost([], []) == {"rounds": 0, "rps_cost_pct": None}


def test_spans_are_read_from_the_metrics_page():
    page = "\n".join([
        "# HELP crdgate_trace_spans_exported_total Spans the OTLP collector accepted.",
        "# TYPE crdgate_trace_spans_exported_total counter",
        "crdgate_trace_spans_exported_total 1234.0",
        'crdgate_trace_spans_dropped_total{reason="queue_full"} 2.0',
        'crdgate_trace_spans_dropped_total{reason="export_failed"} 3.0',
    ])
    assert spans_from_metrics(page) == {"exported": 1234.0, "dropped": 5.0}


def test_the_sink_accepts_and_counts_exports():
    sink = OtlpSink()
    try:
        req = urllib.request.Request(sink.url, data=b"\x0a\x00", method="POST",
                                     headers={"content-type": "application/x-protobuf"})
        with urllib.request.urlopen(req, timeout=5) as resp:
            assert resp.status == 200 and resp.read() == b""
        assert sink.requests == 1 and sink.bytes == 2
    finally:
        sink.close()


def test_the_report_prints_the_tracing_cost():
    extra = {"ratio": 0.01, **cost([wrk(9700)], [wrk(10000)]), "spans": {"exported": 600.0, "dropped": 0.0}}
    doc = {
        "schema": SCHEMA, "settings": {"threads": 1, "connections": 64, "runs": 1, "duration_s": 3.0, "warmup_s": 1.0},
        "host": {"cpus": 2, "cpu_model": None, "platform": "Linux", "python": "3.11"},
        "pinning": {"note": "none"}, "backend": "nginx static", "baselines": {},
        "scenarios": [{"name": "tracing", "kind": "tracing", "title": "t", "target": "crdgate", "state": "ok",
                       "reason": "", "summary": None, "vs_nginx": None, "vs_direct": None, "runs": [],
                       "reference_runs": [], "extra": extra}],
    }
    text = table(doc)
    assert summary_line(extra) in text
    assert "req/s cost +3.0%" in summary_line(extra) and "untraced 10,000, traced 9,700" in summary_line(extra)
    assert "exported 600" in summary_line(extra)
    assert any(ln.startswith("tracing ") for ln in text.splitlines())  # its row in the table


def test_the_bench_accepts_the_tracing_scenario():
    assert scenario_list(["tracing"]) == ("tracing",)
