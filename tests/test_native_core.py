"""The compiled proxy core (setup.py, gateway/_native.py): used when built, never when stale.

The modules gateway/_native.py lists (the HTTP/1 protocol, the exchange, the wire helpers,
the request view, upstream connections, the routing table and the per-request policy
code) are compiled by Cython at install time.
These tests check that the install really compiled them (in CI, where the README's
set-up command built them: there a missing or failed build fails, never skips), that a
build older than its source is never loaded, that a module which failed to compile is
named, and that the same proxy tests pass on the plain-Python modules.
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

from gateway import _native

ROOT = Path(__file__).resolve().parent.parent


def test_the_installed_core_is_compiled():
    if os.environ.get("CRDGATE_NO_EXTENSIONS"):
        pytest.skip("CRDGATE_NO_EXTENSIONS is set: this run checks the plain-Python core (.ci/run's second pass)")
    if _native.state != "compiled":
        msg = f"proxy core not compiled: {_native.reason}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(msg + " (the README's test command installs with Cython and gcc)")
        pytest.skip(msg)
    import importlib
    import importlib.machinery

    for name in _native.MODULES:
        module = importlib.import_module(name)
        assert module.__file__.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES)), module.__file__


def test_one_list_of_compiled_modules():
    # setup.py reads CORE and POLICY from gateway/_native.py: the build and the run-time choice agree.
    import runpy
    import types
    from unittest import mock

    import setuptools

    with mock.patch.object(setuptools, "setup", lambda **kw: None), \
            mock.patch.dict(sys.modules, {"Cython": types.SimpleNamespace(__version__="3.0.0")}):
        setup_py = runpy.run_path(str(ROOT / "setup.py"), run_name="setup_under_test")
    assert setup_py["CORE"] == _native.CORE and setup_py["POLICY"] == _native.POLICY
    assert setup_py["COMPILED"] == _native.MODULES
    for module in _native.MODULES:
        assert (ROOT / (module.replace(".", "/") + ".py")).exists(), module


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
    (folder / "exchange.py").write_text("# edited after the build\n")
    monkeypatch.setattr(_native, "_HERE", str(folder))
    monkeypatch.delenv("CRDGATE_NO_EXTENSIONS", raising=False)
    assert "gateway.exchange changed after it was compiled" in _native._why_not_compiled()


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


PROXY_TESTS = ("tests/test_proxy_forwarding.py", "tests/test_proxy_hostile_input.py", "tests/test_proxy_errors.py",
               "tests/test_ratelimit_local.py", "tests/test_ratelimit_headers.py", "tests/test_e2e_ratelimit.py",
               "tests/test_metrics_requests.py")


def test_the_plain_python_core_passes_the_proxy_tests(request):
    """The fallback is the same code: run the proxy's own tests on it, in a child process."""
    if _native.state != "compiled":
        # This session runs on the plain-Python core: when it runs those files too (.ci/run's
        # second pass, a whole-suite run in a checkout without extensions), a child would only
        # repeat them.
        ran_here = {str(Path(item.path).relative_to(ROOT)) for item in request.session.items}
        if ran_here.issuperset(PROXY_TESTS):
            pytest.skip(f"this run is on the plain-Python core ({_native.reason}) and runs {', '.join(PROXY_TESTS)}")
    env = dict(os.environ, CRDGATE_NO_EXTENSIONS="1")
    probe = subprocess.run(
        [sys.executable, "-c", "import gateway.http1, gateway._native as n; print(n.state, gateway.http1.__file__)"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )
    assert probe.returncode == 0, probe.stderr
    state, path = probe.stdout.split()
    assert state == "source" and path.endswith("http1.py")
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *PROXY_TESTS],
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
    env.pop("CRDGATE_REQUIRE_EXTENSIONS", None)  # set by .ci/run for the install, not for this build
    proc = subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--inplace"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads((tmp_path / "gateway" / "_native.json").read_text()) == stale


def test_a_module_that_failed_to_compile_is_named(tmp_path, monkeypatch):
    # The build records what failed (setup.py); the reason names it, so CI's failure
    # of test_the_installed_core_is_compiled says which module to look at.
    folder = _fake_package(tmp_path, None)
    digests = _digests(folder)
    digests["failed"] = {"gateway.exchange": "gateway/exchange.py:12:4: undeclared name"}
    (folder / "_native.json").write_text(json.dumps(digests))
    monkeypatch.setattr(_native, "_HERE", str(folder))
    monkeypatch.delenv("CRDGATE_NO_EXTENSIONS", raising=False)
    assert _native._why_not_compiled() == "failed to compile: gateway.exchange: gateway/exchange.py:12:4: undeclared name"


def test_the_build_names_a_module_that_fails_and_goes_on(capsys):
    import runpy
    import types
    from unittest import mock

    import setuptools
    from setuptools import Extension

    with mock.patch.object(setuptools, "setup", lambda **kw: None), \
            mock.patch.dict(sys.modules, {"Cython": types.SimpleNamespace(__version__="3.0.0")}):
        setup_py = runpy.run_path(str(ROOT / "setup.py"), run_name="setup_under_test")

    def broken(ext):
        raise RuntimeError("gateway/wire.py:3:0: Cython says no\nmore detail")

    build = types.SimpleNamespace(_build_or_reuse=broken)
    setup_py["BuildExt"].build_extension(build, Extension("gateway.wire", ["gateway/wire.py"], optional=True))
    assert build.failed == {"gateway.wire": "gateway/wire.py:3:0: Cython says no"}
    assert "gateway.wire FAILED to compile" in capsys.readouterr().err
    with pytest.raises(RuntimeError):  # a required extension still stops the build
        setup_py["BuildExt"].build_extension(build, Extension("gateway.wire", ["gateway/wire.py"], optional=False))
