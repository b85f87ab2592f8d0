"""The HTTPS benchmark runs end to end and reports both proxies (tiny durations; no performance assertion)."""

import json
import subprocess
import sys
from pathlib import Path

from test_bench_smoke import _ensure_tools

REPO = Path(__file__).resolve().parent.parent


def test_bench_tls_smoke(tmp_path):
    _ensure_tools()
    out = tmp_path / "tls.json"
    proc = subprocess.run([sys.executable, "-m", "bench.tls", "--duration", "1", "--connections", "8", "--json", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads(out.read_text())
    for key in ("nginx keep-alive", "crdgate keep-alive", "nginx new connections", "crdgate new connections"):
        assert doc[key]["rps"] > 0 and doc[key]["errors"] == 0, (key, doc[key])
    assert doc["ratio keep-alive"] > 0
