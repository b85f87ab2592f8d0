"""`crdgate validate PATH` / `crdgate routes PATH`: a folder or one file; nothing to read is an error."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

ROUTE = """\
apiVersion: crdgate.io/v1
kind: APIEndpoint
metadata: {name: hello, namespace: demo}
spec:
  path: /hello
  backends: [{url: "http://127.0.0.1:9"}]
"""


def crdgate(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "crdgate", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)


@pytest.mark.parametrize("command", ["validate", "routes"])
def test_a_single_file_is_read(tmp_path, command):
    f = tmp_path / "hello.yaml"
    f.write_text(ROUTE)
    done = crdgate(command, str(f), "--output", "json")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    rows = doc["routes"] if command == "routes" else doc["objects"][0]["routes"]
    assert [r["path"] for r in rows] == ["/hello"]


@pytest.mark.parametrize("command", ["validate", "routes"])
def test_an_empty_folder_says_it_has_no_manifests(tmp_path, command):
    (tmp_path / "notes.txt").write_text("not a manifest")
    done = crdgate(command, str(tmp_path))
    assert done.returncode != 0
    assert done.stderr.strip() == (
        f"crdgate {command}: {tmp_path} has no manifests (no *.yaml, *.yml or *.json files in it or its subfolders)"
    )
    assert "Traceback" not in done.stderr


def test_a_missing_path_is_named(tmp_path):
    done = crdgate("validate", str(tmp_path / "nope"))
    assert done.returncode == 2
    assert done.stderr.strip() == f"crdgate validate: {tmp_path / 'nope'}: no such file or folder"


def test_a_yaml_error_points_at_file_line_and_column(tmp_path):
    f = tmp_path / "bad.yaml"
    # Line 7 is indented one space too far: "mapping values are not allowed here".
    f.write_text(ROUTE.replace("  backends:", "   backends:"))
    done = crdgate("validate", str(tmp_path))
    assert done.returncode == 1
    line = next(ln for ln in done.stdout.splitlines() if ln.startswith("ERROR"))
    assert f" {f}:6:12: YAML: mapping values are not allowed" in line, line


def test_an_unclosed_bracket_names_where_it_was_opened(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text(ROUTE.replace('[{url: "http://127.0.0.1:9"}]', '[{url: "http://127.0.0.1:9"}') + "---\n")
    done = crdgate("validate", str(f))
    assert done.returncode == 1
    line = next(ln for ln in done.stdout.splitlines() if ln.startswith("ERROR"))
    assert "while parsing a flow sequence (started at line 6, column 13)" in line, line
