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
    # A cheap second guard that also covers imports hidden inside functions; the
    # whole package, so a new module cannot escape a list.
    sources = sorted((ROOT / "gateway").rglob("*.py")) + sorted((ROOT / "gateway").rglob("*.pxd"))
    assert len(sources) > 10
    for path in sources:
        text = path.read_text()
        for forbidden in ("import controller", "from controller", "kubernetes_asyncio", "import crdgate", "from crdgate"):
            assert forbidden not in text, f"{path.relative_to(ROOT)}: {forbidden}"
