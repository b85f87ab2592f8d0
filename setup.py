"""Builds the proxy core as C extensions; everything else is in pyproject.toml.

gateway/http.py, gateway/upstream.py, gateway/routing.py, gateway/policies.py,
gateway/ratelimit.py, gateway/metrics.py and gateway/auth/apikey.py are ordinary
Python modules.
Cython compiles them, with the field and method types declared in their .pxd
files (policies.pxd types only the rate-limit glue), into extension modules
that replace them on import: the per-request path (parsing callbacks, routing
glue, header forwarding, policy checks) then runs as C calls on C structs
instead of bytecode on instance dicts (the README's Benchmark section has the
figures). gateway/_native.py lists the same modules (MODULES).
Without a C compiler the build goes on and the same modules run as plain
Python; ``CRDGATE_NO_EXTENSIONS=1`` forces that at run time, and a compiled
module older than its source is never used (gateway/_native.py).
"""

import hashlib
import json
import os
import time

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

# The proxy core: written for C semantics (no negative indexes, no bounds checks).
CORE = ("gateway.http", "gateway.upstream")
# The routing table and per-request policy code: compiled with Python's indexing rules kept.
POLICY = ("gateway.routing", "gateway.ratelimit", "gateway.policies", "gateway.metrics", "gateway.auth.apikey")
COMPILED = CORE + POLICY


def _source(module: str) -> str:
    return module.replace(".", "/") + ".py"


class BuildExt(build_ext):
    """Records the hash of each source compiled by this build next to the extensions.

    Only extensions this run wrote get a new hash: one skipped (no Cython, a
    compiler error, ``optional``) keeps the hash it was built from, so an older
    extension beside an edited source is detected and not used.
    """

    def run(self):
        started = time.time()
        super().run()
        folder = os.path.dirname(self.get_ext_fullpath("gateway._native"))  # the package's own folder
        record = os.path.join(folder, "_native.json")
        try:
            with open(record) as f:
                digests = json.load(f)
        except (OSError, ValueError):
            digests = {}
        for ext in self.extensions:
            built = self.get_ext_fullpath(ext.name)
            if ext.name in COMPILED and os.path.exists(built) and os.path.getmtime(built) >= started - 1:
                with open(_source(ext.name), "rb") as f:
                    digests[ext.name] = hashlib.sha256(f.read()).hexdigest()
        os.makedirs(folder, exist_ok=True)
        with open(record, "w") as f:
            json.dump(digests, f, indent=1, sort_keys=True)


def _extensions():
    if os.environ.get("CRDGATE_NO_EXTENSIONS"):
        return []
    try:
        from Cython.Build import cythonize
    except ImportError:
        return []
    # Types come from the .pxd files only; the .py annotations are documentation.
    # The policy code keeps Python semantics: negative indexes, IndexError, and
    # no C integer inferred for an untyped local (it could overflow).
    directives = {"annotation_typing": False, "binding": False, "auto_pickle": False}
    fast = dict(directives, infer_types=True, boundscheck=False, wraparound=False)

    def build(modules, compiler_directives):
        exts = [Extension(m, [_source(m)], optional=True) for m in modules]
        return cythonize(exts, language_level=3, compiler_directives=compiler_directives, quiet=True)

    return build(CORE, fast) + build(POLICY, directives)


setup(ext_modules=_extensions(), cmdclass={"build_ext": BuildExt})
