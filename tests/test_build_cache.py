"""setup.py's cache of compiled extensions: reused only for the same inputs, stored atomically, pruned.

The build itself (Cython + a C compiler, minutes) is not run here: CI's install runs it, and
tests/test_native_core.py fails there if the core did not compile. These tests load setup.py
with setuptools.setup stubbed out and check the cache's rules on a fake package.
"""

from __future__ import annotations

import os
import runpy
import sys
import types
from pathlib import Path

import pytest
import setuptools
from setuptools import Extension

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def setup_py(monkeypatch, tmp_path):
    monkeypatch.setattr(setuptools, "setup", lambda **kw: None)
    monkeypatch.setitem(sys.modules, "Cython", types.SimpleNamespace(__version__="3.0.0"))
    monkeypatch.delenv("CRDGATE_NO_EXTENSIONS", raising=False)
    module = runpy.run_path(str(ROOT / "setup.py"), run_name="setup_under_test")
    # A package laid out like ours, in a folder of its own.
    (tmp_path / "gateway" / "auth").mkdir(parents=True)
    for name in ("http", "routing"):
        (tmp_path / "gateway" / f"{name}.py").write_text(f"# {name}\n")
        (tmp_path / "gateway" / f"{name}.pxd").write_text(f"cdef class {name.title()}: pass\n")
    monkeypatch.chdir(tmp_path)
    return module


def key(module: dict, name: str = "gateway.http", flags=("gcc", "-O3")) -> str:
    build = types.SimpleNamespace(compiler=types.SimpleNamespace(compiler_so=list(flags), linker_so=["gcc", "-shared"],
                                                                 compiler_type="unix"), debug=False)
    return module["BuildExt"]._cache_key(build, Extension(name, [name.replace(".", "/") + ".py"]))


def test_the_key_is_stable_for_the_same_inputs(setup_py):
    assert key(setup_py) == key(setup_py)


@pytest.mark.parametrize("change", ["source", "pxd of another module", "cython", "compiler flags"])
def test_any_input_of_the_binary_changes_the_key(setup_py, monkeypatch, change):
    before = key(setup_py)
    flags = ("gcc", "-O3")
    if change == "source":
        Path("gateway/http.py").write_text("# http, edited\n")
    elif change == "pxd of another module":  # http cimports routing's types
        Path("gateway/routing.pxd").write_text("cdef class Routing:\n    cdef int x\n")
    elif change == "cython":
        monkeypatch.setitem(sys.modules, "Cython", types.SimpleNamespace(__version__="3.1.0"))
    else:
        flags = ("gcc", "-O2")
    assert key(setup_py, flags=flags) != before


def test_modules_do_not_share_keys(setup_py):
    assert key(setup_py, "gateway.http") != key(setup_py, "gateway.routing")


def test_store_then_reuse_and_prune(setup_py, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    built = tmp_path / "built.so"
    for i in range(setup_py["CACHE_KEEP"] + 2):
        built.write_bytes(b"binary %d" % i)
        setup_py["_store"](str(built), str(cache), str(cache / f"gateway.http-{i:032d}.so"), "gateway.http")
        os.utime(cache / f"gateway.http-{i:032d}.so", (1000 + i, 1000 + i))
    kept = sorted(p.name for p in cache.iterdir())
    assert len(kept) == setup_py["CACHE_KEEP"] and kept[0] == "gateway.http-" + "2".zfill(32) + ".so"
    target = tmp_path / "lib" / "gateway" / "http.so"
    assert setup_py["_reuse"](str(cache / kept[-1]), str(target))
    assert target.read_bytes() == (cache / kept[-1]).read_bytes()
    assert not setup_py["_reuse"](str(cache / "gateway.http-missing.so"), str(tmp_path / "other.so"))


def test_the_cache_folder_can_be_moved_or_turned_off(setup_py, monkeypatch, tmp_path):
    monkeypatch.setenv("CRDGATE_BUILD_CACHE", str(tmp_path / "c"))
    assert setup_py["_cache_dir"]() == str(tmp_path / "c")
    monkeypatch.setenv("CRDGATE_BUILD_CACHE", "off")
    assert setup_py["_cache_dir"]() is None
    monkeypatch.delenv("CRDGATE_BUILD_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert setup_py["_cache_dir"]() == str(tmp_path / "xdg" / "crdgate" / "extensions")
