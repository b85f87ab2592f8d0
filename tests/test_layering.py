"""The import direction is the architecture: import-linter keeps it (contracts in pyproject.toml)."""

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# import-linter's own entry point, run by the interpreter that runs the tests: whatever
# is (or is not) on PATH. (`python -m importlinter.cli` only defines the command: it
# prints nothing and exits 0, which once left this test checking nothing.)
LINT_IMPORTS = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"


def test_import_contracts_hold():
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    assert contracts, "pyproject.toml declares no import contract"
    proc = subprocess.run([sys.executable, "-c", LINT_IMPORTS, "--no-cache"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    # Proof that every contract was checked, not merely that nothing failed.
    assert f"Contracts: {len(contracts)} kept, 0 broken." in proc.stdout, out
    for contract in contracts:
        # import-linter wraps long lines to the terminal's width: compare with whitespace folded.
        assert f"{contract['name']} KEPT" in " ".join(proc.stdout.split()), out


def test_data_plane_source_never_names_the_controller():
    # A cheap second guard that also covers imports hidden inside functions; the
    # whole package, so a new module cannot escape a list.
    sources = sorted((ROOT / "gateway").rglob("*.py")) + sorted((ROOT / "gateway").rglob("*.pxd"))
    assert len(sources) > 10
    for path in sources:
        text = path.read_text()
        for forbidden in ("import controller", "from controller", "kubernetes_asyncio", "import crdgate", "from crdgate"):
            assert forbidden not in text, f"{path.relative_to(ROOT)}: {forbidden}"
