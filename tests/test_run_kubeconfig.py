"""`crdgate run --kubeconfig FILE`: the file selects the Kubernetes source; a bad one is a clear error."""

from __future__ import annotations

import subprocess
import sys

from gatewayproc import ROOT


def run(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "crdgate", "run", "--listen", "127.0.0.1:0",
                           "--admin-listen", "127.0.0.1:0", "--log-format", "text", *argv],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)


def test_an_unreadable_kubeconfig_stops_the_start_without_a_traceback(tmp_path):
    bad = tmp_path / "kubeconfig"
    bad.write_text("not: a kubeconfig\n")
    done = run("--kubeconfig", str(bad))
    assert done.returncode == 1
    assert "cannot load Kubernetes client configuration from " + str(bad) in done.stderr
    assert "Traceback" not in done.stderr


def test_a_kubeconfig_and_a_folder_are_exclusive(tmp_path):
    done = run("--kubeconfig", str(tmp_path / "kubeconfig"), "--manifests", str(tmp_path))
    assert done.returncode == 2
    assert "--manifests and --kubeconfig are exclusive" in done.stderr
