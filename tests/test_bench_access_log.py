"""The bench's access-log scenario: nginx's logging config, the paired figures, the report line (no load here)."""

from __future__ import annotations

from pathlib import Path

from bench import nginx
from bench.__main__ import scenario_list
from bench.accesslog import dropped_from_metrics, figures, summary_line
from bench.report import SCHEMA, table
from bench.settings import SCENARIOS
from bench.wrk import WrkResult


def wrk(rps: float) -> WrkResult:
    lat = {k: 1000.0 for k in ("p50", "p90", "p99", "p99.9", "mean", "stdev", "max")}
    errors = {k: 0 for k in ("connect", "read", "write", "status", "timeout")}
    return WrkResult(requests=int(rps * 3), duration_s=3.0, rps=rps, latency_us=lat, errors=errors)


def test_access_log_is_a_scenario_of_the_bench():
    assert "access-log" in SCENARIOS
    assert scenario_list(["access-log"]) == ("access-log",)


def test_the_logging_nginx_writes_a_buffered_file_and_the_reference_none():
    logging = nginx.proxy_conf(Path("/p"), 8080, 9090, name="proxy-logging", access_log=Path("/p/access.log"))
    assert "access_log /p/access.log combined buffer=64k flush=1s;" in logging
    quiet = nginx.proxy_conf(Path("/p"), 8080, 9090)
    assert "access_log off;" in quiet and "combined" not in quiet


def test_figures_are_medians_of_paired_rounds():
    runs = {
        "crdgate-off": [wrk(10000), wrk(10000), wrk(10000)],
        "crdgate-on": [wrk(9500), wrk(9000), wrk(2000)],  # one disturbed round
        "nginx-off": [wrk(20000), wrk(20000), wrk(20000)],
        "nginx-on": [wrk(19000), wrk(19000), wrk(18000)],
    }
    f = figures(runs)
    assert f["rounds"] == 3
    assert f["crdgate_cost_pct"] == 10.0 and f["nginx_cost_pct"] == 5.0
    assert f["crdgate_on_vs_nginx_on"] == 0.474  # 9000 / 19000
    assert f["rps_median"]["crdgate-on"] == 9000


def test_dropped_lines_are_read_from_the_metrics_page():
    page = "# TYPE crdgate_access_log_dropped_total counter\ncrdgate_access_log_dropped_total 7.0\n"
    assert dropped_from_metrics(page) == 7.0 and dropped_from_metrics("") == 0.0


def test_the_report_prints_both_costs():
    runs = {"crdgate-off": [wrk(10000)], "crdgate-on": [wrk(9400)], "nginx-off": [wrk(20000)], "nginx-on": [wrk(18400)]}
    extra = {**figures(runs), "crdgate_lines": 28200, "nginx_lines": 55200, "crdgate_dropped": 0.0}
    doc = {
        "schema": SCHEMA, "settings": {"threads": 1, "connections": 64, "runs": 1, "duration_s": 3.0, "warmup_s": 1.0},
        "host": {"cpus": 2, "cpu_model": None, "platform": "Linux", "python": "3.11"},
        "pinning": {"note": "none"}, "backend": "nginx static", "baselines": {},
        "scenarios": [{"name": "access-log", "kind": "access-log", "title": "t", "target": "crdgate", "state": "ok",
                       "reason": "", "summary": None, "vs_nginx": None, "vs_direct": None, "runs": [],
                       "reference_runs": [], "extra": extra}],
    }
    line = summary_line(extra)
    assert line in table(doc)
    assert "crdgate req/s cost +6.0%" in line and "nginx +8.0%" in line and "crdgate-on vs nginx-on 0.51x" in line
    assert "lines written: crdgate 28,200, nginx 55,200, dropped 0" in line
