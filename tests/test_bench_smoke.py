"""The benchmark end to end with tiny settings: it runs, writes well-formed JSON and a PNG.

No performance assertions: only that every figure is there and is a number.
wrk and nginx are needed; when missing they are installed with apt-get, and if
that fails the test skips (or fails under CI=true, where they must be present).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import aptget

REPO = Path(__file__).resolve().parent.parent
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _ensure_tools() -> None:
    aptget.ensure({"wrk": "wrk", "nginx": "nginx-light"})


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def test_bench_smoke_writes_json_and_png(tmp_path):
    _ensure_tools()
    out_json, out_png = tmp_path / "bench.json", tmp_path / "bench.png"
    argv = [
        sys.executable, "-m", "bench", "--scenario", "plain,lookup", "--duration", "1", "--runs", "1",
        "--warmup", "0", "--connections", "8", "--routes", "100", "--lookup-iterations", "2000",
        "--ready-timeout", "20", "--json", str(out_json), "--plot", str(out_png), "--quiet",
    ]
    proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=90)
    assert proc.returncode in (0, 1), proc.stderr[-3000:]
    assert "scenario" in proc.stdout  # the table was printed

    doc = json.loads(out_json.read_text())
    assert doc["schema"] == "crdgate-bench/1"
    for key in ("settings", "pinning", "tools", "missing", "notes", "host", "baselines", "scenarios", "command"):
        assert key in doc, key
    assert doc["settings"]["runs"] == 1 and doc["settings"]["ladder"] == [10, 100]
    assert doc["host"]["cpu_model"]  # ratios are quoted with the processor they were measured on
    assert f"({doc['host']['cpu_model']})" in proc.stdout

    for name in ("direct", "nginx"):
        base = doc["baselines"][name]
        assert base["state"] == "ok", base["reason"]
        assert len(base["runs"]) == 1
        summary = base["summary"]
        for key in ("rps_median", "rps_min", "rps_max", "p50_us", "p99_us", "requests", "errors"):
            assert _number(summary[key]), (name, key, summary[key])
        assert summary["requests"] > 0 and summary["rps_median"] > 0

    by_name = {s["name"]: s for s in doc["scenarios"]}
    assert list(by_name) == ["plain", "lookup"]
    plain = by_name["plain"]
    if plain["state"] == "ok":
        assert _number(plain["summary"]["rps_median"]) and plain["summary"]["requests"] > 0
        assert _number(plain["vs_nginx"]["rps_ratio"]) and _number(plain["vs_nginx"]["p99_ratio"])
        # the scenario's run is paired with an nginx run taken just before it
        assert plain["vs_nginx"]["paired_runs"] == 1 and len(plain["reference_runs"]) == 1
        ref = plain["reference_runs"][0]
        assert ref["requests"] > 0
        assert plain["vs_nginx"]["rps_ratio"] == plain["summary"]["rps_median"] / ref["rps"]
        # CPU time of the proxy process trees, per request, for both sides of the pair
        run = plain["runs"][0]
        assert _number(run["cpu_s"]) and run["cpu_s"] > 0 and _number(ref["cpu_s"]) and ref["cpu_s"] > 0
        assert run["cpu_us_per_request"] == pytest.approx(run["cpu_s"] * 1e6 / run["requests"])
        assert plain["vs_nginx"]["cpu_ratio"] == pytest.approx(run["cpu_us_per_request"] / ref["cpu_us_per_request"])
    else:
        assert plain["state"] == "failed" and plain["reason"]
    if (REPO / "crdgate" / "cli.py").exists():
        assert plain["state"] == "ok", plain["reason"]

    lookup = by_name["lookup"]
    assert lookup["state"] == "ok", lookup["reason"]
    assert [e["routes"] for e in lookup["extra"]["sizes"]] == [10, 100]
    assert all(_number(e["ns_per_lookup"]) and e["ns_per_lookup"] > 0 for e in lookup["extra"]["sizes"])
    assert _number(lookup["extra"]["flatness"])

    assert out_png.read_bytes()[:8] == PNG_MAGIC


def test_bench_p99_fixed_runs_its_rounds_with_the_control(tmp_path):
    # The equal-load scenario end to end: nginx's and crdgate's peaks, then rounds of nginx,
    # crdgate and the control nginx, each against the backend's floor. Whatever the host
    # makes of the figures, every round records all of them.
    _ensure_tools()
    out_json = tmp_path / "bench.json"
    argv = [sys.executable, "-m", "bench", "--scenario", "p99-fixed", "--duration", "1", "--runs", "1",
            "--warmup", "0", "--connections", "8", "--ready-timeout", "20", "--json", str(out_json), "--quiet"]
    proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode in (0, 1), proc.stderr[-3000:]
    (scenario,) = [s for s in json.loads(out_json.read_text())["scenarios"] if s["name"] == "p99-fixed"]
    extra = scenario["extra"]
    if scenario["state"] == "ok":
        # Two rounds per --runs: a tail needs more requests than a mean (bench/equalload.py).
        assert extra["rounds"] == 2 and len(extra["control_p99_ratios"]) == 2
        assert all(_number(r) and r > 0 for r in extra["control_p99_ratios"])
        assert extra["verdict"] in ("met", "not met", "inconclusive")
        # nginx's peak is measured again after the rounds: a host that slowed is named.
        assert _number(extra["nginx_peak_after_rps"]) and extra["nginx_peak_after_rps"] > 0
        assert "nginx's peak after the rounds" in proc.stdout
        # The verdict is on every request of the rounds, pooled per proxy from the generator's histograms.
        for who in ("nginx", "crdgate", "control", "direct"):
            assert extra["pooled_us"][who]["samples"] > 0 and extra["pooled_us"][who]["p99"] > 0, who
        assert extra["p99_ratio_judged"] == extra["pooled_p99_ratio"] > 0
        assert scenario["vs_nginx"]["p99_ratio"] == extra["pooled_p99_ratio"]
        assert "valid rounds pooled" in proc.stdout and "control, a second nginx against nginx" in proc.stdout
    else:  # a busy test host: the rounds were invalid, each still measured all four runs
        assert "the load could not be held" in scenario["reason"], scenario["reason"]
        assert extra["invalid_rounds"]
        for r in extra["invalid_rounds"]:
            for who in ("nginx", "crdgate", "control", "direct"):
                assert _number(r[f"{who}_p99_us"]) and r[f"{who}_p99_us"] > 0, (who, r)
