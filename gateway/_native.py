"""Picks the compiled proxy core or its Python source, once, at package import.

The modules in MODULES (the proxy core, the routing table it reads and its
per-request policy code) are compiled by Cython when the package is built
(setup.py). Python imports an extension module in preference to a .py file of
the same name, so a compiled module would keep running after its source was
edited (a development install): the build records each source's sha256 in
_native.json, and a mismatch, a missing record, or ``CRDGATE_NO_EXTENSIONS=1``
makes every compiled module load from source instead. All or none: the
compiled modules are typed against each other's classes (the exchange against
the upstream, routing and request modules', the protocol against the
exchange's), and all of them must be the same code.
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import sys

# The compiled modules: the one list (setup.py reads it from this file with ast,
# tests/test_native_pxd.py checks each against its .pxd). A new entry needs a
# .pxd beside its source.
# The proxy core: written for C semantics (no negative indexes, no bounds checks).
CORE = ("gateway.wire", "gateway.request", "gateway.targets", "gateway.exchange", "gateway.http1", "gateway.upstream")
# The routing table and per-request policy code: compiled with Python's indexing rules kept.
POLICY = ("gateway.routing", "gateway.ratelimit", "gateway.policies", "gateway.metrics", "gateway.auth.apikey",
          "gateway.accesslog", "gateway.loopwriter",
          # HTTP/2: the glue around the h2 package, compiled as it is (no class typed in its .pxd).
          "gateway.h2fields", "gateway.h2hpack", "gateway.h2frames", "gateway.h2state", "gateway.h2stream", "gateway.h2server",
          "gateway.h2upstream")
MODULES = CORE + POLICY
_HERE = os.path.dirname(os.path.abspath(__file__))

# What was chosen and why; `crdgate run` logs it at start.
state = "source"
reason = ""


def _path(module: str, suffix: str) -> str:
    """gateway.auth.apikey -> <package folder>/auth/apikey<suffix>"""
    return os.path.join(_HERE, *module.split(".")[1:]) + suffix


def _extension(module: str) -> str | None:
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        p = _path(module, suffix)
        if os.path.exists(p):
            return p
    return None


def _why_not_compiled() -> str:
    if os.environ.get("CRDGATE_NO_EXTENSIONS"):
        return "CRDGATE_NO_EXTENSIONS is set"
    try:
        with open(os.path.join(_HERE, "_native.json")) as f:
            recorded = json.load(f)
    except (OSError, ValueError):
        recorded = None
    failed = recorded.get("failed") if isinstance(recorded, dict) else None
    if failed:  # named by the build (setup.py): say which and why
        return "failed to compile: " + "; ".join(f"{m}: {why}" for m, why in sorted(failed.items()))
    missing = [m for m in MODULES if _extension(m) is None]
    if len(missing) == len(MODULES):
        return "not compiled (no C compiler or Cython at install time)"
    if missing:
        return f"not compiled: {', '.join(missing)} (reinstall to rebuild)"
    if recorded is None:
        return "no build record (_native.json)"
    for m in MODULES:
        if m not in recorded:
            return f"{m} has no build record (reinstall to rebuild)"
        with open(_path(m, ".py"), "rb") as f:
            if hashlib.sha256(f.read()).hexdigest() != recorded[m]:
                return f"{m} changed after it was compiled (reinstall to rebuild)"
    return ""


class _FromSource(importlib.abc.MetaPathFinder):
    """Finds the compiled modules' .py files ahead of their extensions."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname in MODULES:
            return importlib.util.spec_from_file_location(fullname, _path(fullname, ".py"))
        return None


def select() -> None:
    global state, reason
    reason = _why_not_compiled()
    if not reason:
        state = "compiled"
        return
    state = "source"
    if any(m in sys.modules for m in MODULES):
        return  # too late to choose (imported before the package itself: only in odd tooling)
    if any(_extension(m) for m in MODULES):
        sys.meta_path.insert(0, _FromSource())


def describe() -> str:
    return "compiled" if state == "compiled" else f"Python source: {reason}"
