""".ci/run: the README's test command first (compiled core), then the suite on plain Python.

Run with a stand-in ``python3`` on PATH that records its arguments and the switches it
was given, and exits as told: the order of the steps, the environment of each, and
that pytest's "no tests collected" (5) fails CI like a failed test.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

FAKE_PYTHON = """#!/bin/sh
echo "$* | no_ext=${CRDGATE_NO_EXTENSIONS:-} require=${CRDGATE_REQUIRE_EXTENSIONS:-} ci=${CI:-}" >> "$CALLS"
case "$*" in
  *pytest*) if [ -n "${CRDGATE_NO_EXTENSIONS:-}" ]; then exit "$PLAIN_RC"; else exit "$COMPILED_RC"; fi ;;
esac
exit 0
"""


def run_ci(tmp_path: Path, compiled_rc: int = 0, plain_rc: int = 0) -> tuple[int, list[str]]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    fake = bin_dir / "python3"
    fake.write_text(FAKE_PYTHON)
    fake.chmod(0o755)
    calls = tmp_path / "calls"
    calls.write_text("")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRDGATE_") and k != "CI"}
    env.update(PATH=f"{bin_dir}:{env['PATH']}", CALLS=str(calls), COMPILED_RC=str(compiled_rc), PLAIN_RC=str(plain_rc))
    proc = subprocess.run(["bash", str(ROOT / ".ci" / "run")], env=env, capture_output=True, text=True, timeout=60)
    return proc.returncode, calls.read_text().splitlines()


def test_the_readme_command_runs_first_then_the_plain_python_suite(tmp_path):
    readme = (ROOT / "README.md").read_text()
    assert "python3 -m pip install -e '.[test]' && python3 -m pytest -q" in readme
    assert re.search(r"^python3 -m pip install -e '\.\[test\]' && python3 -m pytest -q ",
                     (ROOT / ".ci" / "run").read_text(), re.M)
    rc, calls = run_ci(tmp_path)
    assert rc == 0
    assert calls == [
        "-m pip install -e .[test] | no_ext= require=1 ci=true",
        "-m pytest -q | no_ext= require=1 ci=true",
        "-m pytest -q | no_ext=1 require=1 ci=true",
    ]


def test_a_failure_in_either_pass_fails_ci(tmp_path):
    assert run_ci(tmp_path, compiled_rc=1)[0] != 0
    assert run_ci(tmp_path, plain_rc=1)[0] != 0


def test_no_tests_collected_fails_ci(tmp_path):
    # pytest exits 5 when it collected nothing: a broken test path must not pass CI.
    assert run_ci(tmp_path, compiled_rc=5)[0] != 0
    assert run_ci(tmp_path, plain_rc=5)[0] != 0
