"""The import direction is the architecture: import-linter keeps it (contracts in pyproject.toml)."""

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_import_contracts_hold():
    exe = shutil.which("lint-imports")
    cmd = [exe] if exe else [sys.executable, "-m", "importlinter.cli"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 broken" in proc.stdout


def test_data_plane_source_never_names_the_controller():
    # A cheap second guard that also covers imports hidden inside functions.
    plane = ["routing", "http1", "exchange", "request", "wire", "upstream", "normalize", "policies", "server", "admin", "ratelimit", "metrics", "config", "tls", "tablejson", "syntax"]
    for name in plane:
        text = (ROOT / "gateway" / f"{name}.py").read_text()
        assert "import controller" not in text and "from controller" not in text, name
        assert "kubernetes_asyncio" not in text, name
    for path in (ROOT / "gateway" / "auth").glob("*.py"):
        text = path.read_text()
        assert "from controller" not in text and "kubernetes_asyncio" not in text, path
