"""The compiled proxy core (setup.py, gateway/_native.py): used when built, never when stale.

gateway/http.py, gateway/upstream.py, the routing table they read (gateway/routing.py) and
the per-request policy code (gateway/policies.py, gateway/ratelimit.py, gateway/metrics.py,
gateway/auth/apikey.py) are compiled by Cython at install time.
These tests check that the install really compiled them (in CI, where the README's
set-up command built them), that a build older than its source is never loaded,
and that the same proxy tests pass on the plain-Python modules.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import gateway.http
from gateway import _native

ROOT = Path(__file__).resolve().parent.parent


def test_the_installed_core_is_compiled():
    if _native.state != "compiled":
        msg = f"proxy core not compiled: {_native.reason}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(msg + " (the README's test command installs with Cython and gcc)")
        pytest.skip(msg)
    import importlib.machinery

    import gateway.auth.apikey
    import gateway.metrics
    import gateway.policies
    import gateway.ratelimit
    import gateway.routing
    import gateway.upstream

    modules = (gateway.routing, gateway.http, gateway.upstream, gateway.policies, gateway.ratelimit, gateway.metrics,
               gateway.auth.apikey)
    assert {m.__name__ for m in modules} == set(_native.MODULES)
    for module in modules:
        assert module.__file__.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES)), module.__file__


def _fake_package(tmp_path: Path, recorded: dict[str, str] | None) -> Path:
    """A folder laid out like an installed gateway/: sources, 'extensions', build record."""
    import importlib.machinery

    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    for module in _native.MODULES:
        source = tmp_path / _relative(module)
        source.parent.mkdir(parents=True, exist_ok=True)
        source.write_text(f"# {module}\n")
        source.with_name(source.stem + suffix).write_bytes(b"\x7fELF")
    if recorded is not None:
        (tmp_path / "_native.json").write_text(json.dumps(recorded))
    return tmp_path


def _relative(module: str) -> str:
    return "/".join(module.split(".")[1:]) + ".py"


def _digests(folder: Path) -> dict[str, str]:
    return {m: hashlib.sha256((folder / _relative(m)).read_bytes()).hexdigest() for m in _native.MODULES}


def test_a_build_matching_its_sources_is_used(tmp_path, monkeypatch):
    folder = _fake_package(tmp_path, None)
    (folder / "_native.json").write_text(json.dumps(_digests(folder)))
    monkeypatch.setattr(_native, "_HERE", str(folder))
    monkeypatch.delenv("CRDGATE_NO_EXTENSIONS", raising=False)
    assert _native._why_not_compiled() == ""


def test_an_edited_source_makes_the_build_stale(tmp_path, monkeypatch):
    folder = _fake_package(tmp_path, None)
    (folder / "_native.json").write_text(json.dumps(_digests(folder)))
    (folder / "http.py").write_text("# edited after the build\n")
    monkeypatch.setattr(_native, "_HERE", str(folder))
    monkeypatch.delenv("CRDGATE_NO_EXTENSIONS", raising=False)
    assert "gateway.http changed after it was compiled" in _native._why_not_compiled()


def test_no_build_record_or_no_extension_means_source(tmp_path, monkeypatch):
    folder = _fake_package(tmp_path, None)
    monkeypatch.setattr(_native, "_HERE", str(folder))
    monkeypatch.delenv("CRDGATE_NO_EXTENSIONS", raising=False)
    assert "no build record" in _native._why_not_compiled()
    for so in folder.glob("upstream.*"):
        if so.suffix != ".py":
            so.unlink()
    assert "not compiled" in _native._why_not_compiled()


def test_the_switch_turns_the_extensions_off(tmp_path, monkeypatch):
    folder = _fake_package(tmp_path, None)
    (folder / "_native.json").write_text(json.dumps(_digests(folder)))
    monkeypatch.setattr(_native, "_HERE", str(folder))
    monkeypatch.setenv("CRDGATE_NO_EXTENSIONS", "1")
    assert "CRDGATE_NO_EXTENSIONS" in _native._why_not_compiled()


def test_the_plain_python_core_passes_the_proxy_tests():
    """The fallback is the same code: run the proxy's own tests on it, in a child process."""
    env = dict(os.environ, CRDGATE_NO_EXTENSIONS="1")
    probe = subprocess.run(
        [sys.executable, "-c", "import gateway.http, gateway._native as n; print(n.state, gateway.http.__file__)"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )
    assert probe.returncode == 0, probe.stderr
    state, path = probe.stdout.split()
    assert state == "source" and path.endswith("http.py")
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "tests/test_proxy_forwarding.py", "tests/test_proxy_hostile_input.py", "tests/test_proxy_errors.py",
         "tests/test_ratelimit_local.py", "tests/test_ratelimit_headers.py", "tests/test_e2e_ratelimit.py",
         "tests/test_metrics_requests.py"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert " passed" in run.stdout


def test_a_module_missing_from_the_build_record_means_source(tmp_path, monkeypatch):
    # An extension left beside its source by an earlier build that this build did not
    # compile has no hash of what it was built from: it must not be trusted.
    folder = _fake_package(tmp_path, None)
    digests = _digests(folder)
    del digests["gateway.metrics"]
    (folder / "_native.json").write_text(json.dumps(digests))
    monkeypatch.setattr(_native, "_HERE", str(folder))
    monkeypatch.delenv("CRDGATE_NO_EXTENSIONS", raising=False)
    assert "gateway.metrics has no build record" in _native._why_not_compiled()


def test_a_build_that_compiles_nothing_keeps_the_recorded_hashes(tmp_path):
    # setup.py's build_ext without Cython (here: CRDGATE_NO_EXTENSIONS) must not record
    # the current sources as compiled: the extensions on disk are still the old ones.
    for name in ("setup.py", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copytree(ROOT / "gateway", tmp_path / "gateway",
                    ignore=shutil.ignore_patterns("*.so", "*.c", "__pycache__", "_native.json"))
    stale = {m: "0" * 64 for m in _native.MODULES}
    (tmp_path / "gateway" / "_native.json").write_text(json.dumps(stale))
    env = dict(os.environ, CRDGATE_NO_EXTENSIONS="1")
    proc = subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--inplace"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads((tmp_path / "gateway" / "_native.json").read_text()) == stale
