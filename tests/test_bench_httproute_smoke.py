"""The Gateway API bench scenarios end to end with tiny settings: crdgate serves the HTTPRoutes.

No performance assertions: the scenarios run through real processes (crdgate,
nginx, wrk), pass their preflight and report their figures. wrk and nginx are
installed with apt-get when missing, as in test_bench_smoke.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import aptget

REPO = Path(__file__).resolve().parent.parent


def test_httproute_scenarios_run(tmp_path):
    aptget.ensure({"wrk": "wrk", "nginx": "nginx-light"})
    out_json = tmp_path / "bench.json"
    argv = [
        sys.executable, "-m", "bench", "--scenario", "httproute,httproute-many,propagation-httproute", "--duration", "1",
        "--runs", "1", "--warmup", "0", "--connections", "4", "--routes", "10", "--propagation-samples", "2",
        "--ready-timeout", "30", "--json", str(out_json), "--quiet",
    ]
    proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    doc = json.loads(out_json.read_text())
    by_name = {s["name"]: s for s in doc["scenarios"]}
    assert list(by_name) == ["httproute", "httproute-many", "propagation-httproute"]

    for name in ("httproute", "httproute-many"):
        load = by_name[name]
        assert load["state"] == "ok", load["reason"]
        assert load["summary"]["requests"] > 0 and load["summary"]["errors"] == 0
        assert load["vs_nginx"]["paired_runs"] == 1  # paired with nginx like the APIEndpoint scenarios

    prop = by_name["propagation-httproute"]
    assert prop["state"] == "ok", prop["reason"]
    (size,) = prop["extra"]["sizes"]
    assert size["routes"] == 10 and len(size["samples_ms"]) == 2 and size["timeouts"] == 0
    assert "propagation-httproute (manifest write -> first routed request)" in proc.stdout
