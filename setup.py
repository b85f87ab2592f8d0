"""Builds the proxy core as C extensions; everything else is in pyproject.toml.

The modules listed in gateway/_native.py (CORE and POLICY: the HTTP/1 protocol,
the exchange, the wire helpers, the request view, upstream connections, the
routing table, the policies, rate limiting, metrics, API keys, the HTTP/2 glue)
are ordinary Python modules. Cython compiles them, with the field and method types declared
in their .pxd files (policies.pxd types only the auth and rate-limit glue), into
extension modules that replace them on import: the per-request path (parsing
callbacks, routing glue, header forwarding, policy checks) then runs as C calls
on C structs instead of bytecode on instance dicts (the README's Benchmark
section has the figures). That list is read here from gateway/_native.py
(with ast: importing the package would select its modules), so the build and
the run-time choice never disagree on what is compiled.
Without a C compiler the build goes on and the same modules run as plain
Python; ``CRDGATE_NO_EXTENSIONS=1`` forces that at run time, and a compiled
module older than its source is never used (gateway/_native.py).

Rebuilds are incremental. pip builds an editable install in fresh temporary
folders every time, so nothing of the last build is seen and every module was
translated and compiled again (about 90 s of the README's test command) even
when no source had changed. Each compiled module is therefore kept in a cache,
under a key made of everything its binary depends on: its .py, every .pxd of
the package (they cimport each other), the Cython version and directives, the
Python build and the exact compiler and linker commands. A module whose key is
in the cache is copied from it; only the others are translated and compiled.
The cache is ``$CRDGATE_BUILD_CACHE``, else ``$XDG_CACHE_HOME/crdgate/extensions``
(``~/.cache/crdgate/extensions``); ``CRDGATE_BUILD_CACHE=off`` turns it off.
It keeps the newest few builds of each module.
"""

import ast
import glob
import hashlib
import json
import os
import shutil
import sys
import sysconfig
import tempfile
import time

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext



def _compiled_modules() -> dict:
    """CORE and POLICY, as gateway/_native.py assigns them (tuples of string literals)."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "gateway", "_native.py")
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    found = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            if node.targets[0].id in ("CORE", "POLICY"):
                found[node.targets[0].id] = ast.literal_eval(node.value)
    return found


_LISTS = _compiled_modules()
# The proxy core: written for C semantics (no negative indexes, no bounds checks).
CORE = _LISTS["CORE"]
# The routing table and per-request policy code: compiled with Python's indexing rules kept.
POLICY = _LISTS["POLICY"]
COMPILED = CORE + POLICY

# Types come from the .pxd files only; the .py annotations are documentation.
# The policy code keeps Python semantics: negative indexes, IndexError, and
# no C integer inferred for an untyped local (it could overflow).
DIRECTIVES = {"annotation_typing": False, "binding": False, "auto_pickle": False}
FAST = dict(DIRECTIVES, infer_types=True, boundscheck=False, wraparound=False)
LANGUAGE_LEVEL = 3

CACHE_FORMAT = "1"  # bump when the key's recipe changes
CACHE_KEEP = 4  # builds kept per module


def _source(module: str) -> str:
    return module.replace(".", "/") + ".py"


def _directives(module: str) -> dict:
    return FAST if module in CORE else DIRECTIVES


def _cache_dir():
    configured = os.environ.get("CRDGATE_BUILD_CACHE")
    if configured is not None:
        return None if configured.strip().lower() in ("", "0", "off", "no", "false") else configured
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "crdgate", "extensions")


class BuildExt(build_ext):
    """Compiles each extension, or reuses the cached build of the same inputs;
    records the hash of each source built by this run next to the extensions.

    Only extensions this run wrote get a new hash: one skipped (no Cython, a
    compiler error, ``optional``) keeps the hash it was built from, so an older
    extension beside an edited source is detected and not used.

    A module that fails to translate or compile is named on stderr and in the
    record (``failed``), which gateway/_native.py gives as the reason the core
    runs as Python (``crdgate run`` logs it; tests/test_native_core.py fails on
    it in CI). With ``CRDGATE_REQUIRE_EXTENSIONS=1`` (.ci/run) the build itself
    fails after trying every module.
    """

    def run(self):
        started = time.time()
        self.failed = {}
        if _required() and not self.extensions:
            raise SystemExit("crdgate: CRDGATE_REQUIRE_EXTENSIONS is set but nothing is compiled "
                             "(Cython is not installed, or CRDGATE_NO_EXTENSIONS is set)")
        super().run()
        folder = os.path.dirname(self.get_ext_fullpath("gateway._native"))  # the package's own folder
        record = os.path.join(folder, "_native.json")
        try:
            with open(record) as f:
                digests = json.load(f)
        except (OSError, ValueError):
            digests = {}
        failed = digests.pop("failed", {})
        for ext in self.extensions:
            built = self.get_ext_fullpath(ext.name)
            if ext.name in COMPILED and os.path.exists(built) and os.path.getmtime(built) >= started - 1:
                with open(_source(ext.name), "rb") as f:
                    digests[ext.name] = hashlib.sha256(f.read()).hexdigest()
                failed.pop(ext.name, None)
        failed.update(self.failed)
        if failed:
            digests["failed"] = failed
        os.makedirs(folder, exist_ok=True)
        with open(record, "w") as f:
            json.dump(digests, f, indent=1, sort_keys=True)
        if self.failed and _required():
            raise SystemExit("crdgate: failed to compile " + ", ".join(sorted(self.failed))
                             + " (CRDGATE_REQUIRE_EXTENSIONS is set; the errors are above)")

    def build_extension(self, ext):
        try:
            self._build_or_reuse(ext)
        except Exception as e:  # Cython's and the C compiler's errors alike
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
            if first == _source(ext.name):  # Cython's error names only the file; its messages went to stderr
                first = "Cython could not translate it (its errors are in the build output)"
            self.__dict__.setdefault("failed", {})[ext.name] = first
            print(f"crdgate: {ext.name} FAILED to compile and will run as plain Python: {first}", file=sys.stderr)
            if not ext.optional:
                raise

    def _build_or_reuse(self, ext):
        target = self.get_ext_fullpath(ext.name)
        cache = _cache_dir()
        key = self._cache_key(ext) if cache else ""
        cached = os.path.join(cache, f"{ext.name}-{key[:32]}{sysconfig.get_config_var('EXT_SUFFIX')}") if cache else ""
        if cache and _reuse(cached, target):
            print(f"{ext.name}: unchanged since it was compiled, reusing {cached}")
            return
        # Translated here rather than when setup.py is loaded: pip loads it three
        # times per install, and a module found in the cache needs no C at all.
        from Cython.Build import cythonize

        (translated,) = cythonize([ext], language_level=LANGUAGE_LEVEL, compiler_directives=_directives(ext.name),
                                  quiet=True)
        # The C file goes into the extension setuptools prepared (finalize_options), not Cython's copy.
        ext.sources = list(translated.sources)
        started = time.time()
        super().build_extension(ext)  # a compiler error here is caught by build_extension
        # Only what this call wrote is cached: never an older file left at the target.
        if cache and os.path.isfile(target) and os.path.getmtime(target) >= started - 1:
            _store(target, cache, cached, ext.name)

    def _cache_key(self, ext) -> str:
        import Cython

        h = hashlib.sha256()

        def add(label: str, data) -> None:
            blob = data if isinstance(data, bytes) else json.dumps(data, sort_keys=True, default=str).encode()
            h.update(f"{label}:{len(blob)}:".encode())
            h.update(blob)

        add("format", CACHE_FORMAT)
        add("module", ext.name)
        with open(_source(ext.name), "rb") as f:
            add("source", f.read())
        for pxd in sorted(glob.glob("gateway/**/*.pxd", recursive=True)):  # they cimport each other
            with open(pxd, "rb") as f:
                add(pxd, f.read())
        add("cython", [Cython.__version__, LANGUAGE_LEVEL, _directives(ext.name)])
        add("python", [sys.version, sys.implementation.cache_tag, sysconfig.get_config_var("EXT_SUFFIX"),
                       sysconfig.get_platform()])
        compiler = self.compiler
        add("compiler", [getattr(compiler, a, None) for a in ("compiler_so", "linker_so", "compiler_type")])
        add("extension", [ext.define_macros, ext.undef_macros, ext.extra_compile_args, ext.extra_link_args,
                          ext.libraries, self.debug])
        return h.hexdigest()


def _reuse(cached: str, target: str) -> bool:
    """Copy a cached build to where build_ext would have written it; False if there is none."""
    try:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copyfile(cached, target)  # a new mtime: counts as built by this run (see BuildExt.run)
    except OSError:  # not cached (or pruned by a build running beside this one)
        return False
    try:
        os.utime(cached)  # recently used: kept by the pruning in _store
    except OSError:
        pass
    return True


def _store(built: str, cache: str, cached: str, module: str) -> None:
    """Copy a fresh build into the cache (atomically: builds may run side by side) and prune it."""
    try:
        os.makedirs(cache, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=cache, prefix=".tmp-")
        os.close(fd)
        shutil.copyfile(built, tmp)
        os.replace(tmp, cached)
        mine = sorted(glob.glob(os.path.join(cache, f"{module}-*")), key=os.path.getmtime, reverse=True)
        for old in mine[CACHE_KEEP:]:
            os.remove(old)
    except OSError as e:  # a read-only or full cache costs speed, never the build
        print(f"{module}: not cached ({e})")


def _required() -> bool:
    return os.environ.get("CRDGATE_REQUIRE_EXTENSIONS", "").strip().lower() in ("1", "true", "yes", "on")


def _extensions():
    if os.environ.get("CRDGATE_NO_EXTENSIONS"):
        return []
    try:
        import Cython  # noqa: F401 - translated in BuildExt.build_extension
    except ImportError:
        return []
    return [Extension(m, [_source(m)], optional=True) for m in COMPILED]


setup(ext_modules=_extensions(), cmdclass={"build_ext": BuildExt})
