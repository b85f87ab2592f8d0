"""The manifests-folder source: a folder of YAML/JSON manifests feeds the Store.

This is how crdgate runs without a cluster (``crdgate run --manifests DIR``) and
what ``crdgate validate`` / ``crdgate routes`` read (through ``load_folder``).
It plays the part the kube reflectors (controller/kube.py) play in a cluster:
after every (re)load it calls ``Store.replace`` for every kind in
``controller.store.KINDS``, and the publisher (controller/publish.py) compiles.

What a file gives, and what the API server would have done to it:
- every ``*.yaml`` / ``*.yml`` / ``*.json`` under the folder, recursively, in
  sorted path order; hidden files and folders and editor leftovers are skipped;
- multi-document YAML, ``kind: List`` (or ``*List``) with ``items``, JSON objects;
- known kinds only (APIEndpoint, Service, EndpointSlice, Ingress, IngressClass,
  Secret, Namespace, and Gateway API's ReferenceGrant, GatewayClass, Gateway,
  HTTPRoute); others (Deployment, ConfigMap, ...) are ignored and counted
  (``ManifestSource.ignored``), except in the groups crdgate knows in full
  (``KNOWN_GROUPS`` in controller/manifestdoc.py), where an unknown kind is a typo and a load error; the
  spec of a Gateway API object is checked here, as the API server would check
  it against the CRD (controller/refgrant.py, controller/gatewayapi/), so a
  typo is a load error naming the field rather than an object that does
  something else;
- defaults: namespace ``default`` (IngressClass, GatewayClass and Namespace are
  cluster-scoped: ``""``),
  ``generation`` 1, a deterministic ``uid``, ``resourceVersion`` = content hash,
  Secret ``stringData`` folded into base64 ``data``;
- ``creationTimestamp`` defaults to the epoch, so objects without one tie and
  the tie is broken by ``namespace/name``. Give ``metadata.creationTimestamp``
  explicitly in a file to decide which of two conflicting routes wins.

A file that does not load (YAML syntax, a document that is not an object, no
kind or name, ...) is a ``LoadError`` with file, document and line, and keeps
serving the objects it gave last time it loaded: an editor's half-written save
never empties the table. A file seen for the first time with an error gives the
documents that did load. Semantic errors inside a well-formed object are the
compiler's job (controller/compile/), which reports them with the origin
(``path#document``) recorded here.

Reloads are incremental: the folder is rescanned (one ``stat`` per file) and
only files whose stat changed, or that the watcher named, are parsed again;
only the objects those files provided before or provide now are handed to the
store (``Store.update``), so one edited file costs its own objects, not the
folder's.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import os
import stat as stat_mod
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator, NamedTuple

from controller import store as store_mod
from controller.inotify import InotifyWatch
from controller.manifestdoc import Entry, LoadError, parse_file
from controller.store import Store
from gateway import metrics
from gateway.errors import InotifyUnavailable, ManifestFolderError

log = logging.getLogger("crdgate.controller.files")

SUFFIXES = (".yaml", ".yml", ".json")
RESYNC_MS = 2000  # idle rescan period of the watcher (see ManifestSource.run)
# A batch of changes is read once events pause this long (at most ``debounce``
# after the first): an editor's save is one reload. It is also the polling step
# of the fallback watcher where inotify is missing (see ManifestSource._changes).
STEP_MS = 10
# A file written less than this long ago that now provides fewer objects is read
# again after this delay before the objects are dropped: a writer that truncates
# then writes (not an atomic rename) is caught half way far more often than a
# file is meant to lose routes, and dropping them would 404 live traffic.
SETTLE_S = 0.25
# A change of at most this many files, this many bytes in all, is read on the
# event loop (ManifestSource._small): YAML costs about 1 us a byte here, so at
# most about 2 ms, less than one GIL switch interval (5 ms) of a thread.
INLINE_FILES = 8
INLINE_BYTES = 2048

@dataclass(frozen=True, slots=True)
class _FileState:
    """What one file gives now, and the signature it was parsed at."""

    signature: tuple
    entries: tuple[Entry, ...] = ()  # the last good content (see module docstring)
    errors: tuple[LoadError, ...] = ()
    ever_good: bool = False
    ignored: tuple[str, ...] = ()  # kinds of the objects ignored (not kinds crdgate reads)


def _young(abs_path: str, now: float) -> bool:
    try:
        return now - os.stat(abs_path).st_mtime < SETTLE_S
    except OSError:
        return False


def _skipped(name: str) -> bool:
    # Hidden entries cover editor temp files (.#x, .x.swp) and ConfigMap mounts'
    # ..data / ..2024_* folders, whose files are reached through the top-level symlinks.
    return name.startswith(".") or name.endswith("~") or name.startswith("#")


def _signature(st: os.stat_result) -> tuple:
    return (st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino, st.st_dev)


def _scan(root: str) -> dict[str, tuple[str, tuple]]:
    """relative path -> (absolute path, stat signature) of every manifest file."""
    found: dict[str, tuple[str, tuple]] = {}
    if os.path.isfile(root):
        st = os.stat(root)
        found[os.path.basename(root)] = (root, _signature(st))
        return found
    visited: set[tuple[int, int]] = set()

    def walk(abs_dir: str, rel_dir: str) -> None:
        try:
            st = os.stat(abs_dir)
        except OSError:
            return
        if (st.st_dev, st.st_ino) in visited:  # a symlink loop
            return
        visited.add((st.st_dev, st.st_ino))
        try:
            entries = list(os.scandir(abs_dir))
        except OSError as e:
            log.warning("cannot list %s: %s", abs_dir, e)
            return
        for entry in entries:
            name = entry.name
            if _skipped(name):
                continue
            rel = f"{rel_dir}{name}"
            try:
                if entry.is_dir():  # follows symlinks
                    walk(entry.path, rel + "/")
                elif name.endswith(SUFFIXES):
                    st = entry.stat()  # follows symlinks: a swapped target changes the inode
                    if stat_mod.S_ISREG(st.st_mode):
                        found[rel] = (entry.path, _signature(st))
            except OSError:
                continue  # vanished between listing and stat: the next scan sees it gone

    walk(root, "")
    return found


def _stat_files(root: str, rels: set[str]) -> dict[str, tuple[str, tuple]]:
    """``_scan`` for the files ``rels`` alone (relative, none in a skipped folder):
    those that exist as regular files, with their signature."""
    found: dict[str, tuple[str, tuple]] = {}
    for rel in rels:
        abs_path = os.path.join(root, rel)
        try:
            st = os.stat(abs_path)  # follows symlinks, as the scan does
        except OSError:
            continue  # gone
        if stat_mod.S_ISREG(st.st_mode):
            found[rel] = (abs_path, _signature(st))
    return found


def manifest_files(root: Path | str) -> list[str]:
    """The manifest files a folder (or a single file) gives, relative to it, sorted."""
    return sorted(_scan(str(root)))


class _Plan(NamedTuple):
    """What one rescan looks at (ManifestSource._plan)."""

    single_file: bool  # the source is one file, not a folder
    forced: set[str]  # files the watcher named: parsed again even if their stat looks the same
    named: set[str] | None  # the only files to look at; None: scan the whole folder


class ManifestSource:
    """Feeds a Store from a folder of manifests and keeps it in step with edits."""

    def __init__(self, store: Store, root: Path | str, debounce: float = 0.05):
        self.store = store
        self.root = Path(root)
        self.debounce = debounce
        self._files: dict[str, _FileState] = {}
        # Files whose objects changed since the last publish: (rel, old entries, new entries).
        self._moved: list[tuple[str, tuple[Entry, ...], tuple[Entry, ...]]] = []
        # (kind, key) -> the files providing it, as ((rel, position in file), entry), sorted:
        # the first one wins, the others are duplicates.
        self._providers: dict[tuple[str, str], list[tuple[tuple[str, int], Entry]]] = {}
        self._duplicates: dict[tuple[str, str], tuple[LoadError, ...]] = {}
        self._folder_error: LoadError | None = None
        self._unsettled = False  # a removal was deferred (see SETTLE_S)
        self._scanned_at = float("-inf")  # time.monotonic() of the last scan of the whole folder
        self._real: tuple[float, str] | None = None  # (at which scan, the folder's real path)
        self._abs_root = os.path.abspath(self.root)
        self._logged: set[LoadError] = set()
        self.loads = 0  # completed (re)loads; lets tests and the CLI see progress
        self._polling_noted = False  # the fallback to a polling watcher was logged

    # -- public ----------------------------------------------------------------

    @property
    def errors(self) -> tuple[LoadError, ...]:
        """The current load errors, by file then document."""
        errs = [e for st in self._files.values() for e in st.errors]
        errs.extend(e for dups in self._duplicates.values() for e in dups)
        if self._folder_error is not None:
            errs.append(self._folder_error)
        return tuple(sorted(errs, key=LoadError.sort_key))

    @property
    def ignored(self) -> dict[str, int]:
        """How many objects of each kind crdgate does not read the files hold, by kind."""
        return dict(sorted(Counter(k for st in self._files.values() for k in st.ignored).items()))

    def load(self) -> None:
        """(Re)load the folder and feed the store. Raises ManifestFolderError if it is missing."""
        self._check_root()
        if self._rescan(()) or self.loads == 0:
            self._publish()

    async def run(self) -> None:
        """Load, then watch the folder and reload on every change until cancelled."""
        self._check_root()
        await asyncio.to_thread(self._rescan, ())
        self._publish()
        watch_root, only = self._watch_target()

        async def reload(paths=()) -> None:
            plan = self._plan(paths)
            if self._small(plan):
                changed = self._rescan(paths, plan=plan)  # see _small
            else:
                changed = await asyncio.to_thread(self._rescan, paths, False, plan)
            if changed:
                self._publish()
            if self._unsettled:
                await asyncio.sleep(SETTLE_S)
                if await asyncio.to_thread(self._rescan, (), True):
                    self._publish()

        while True:
            if not os.path.exists(watch_root):
                await reload()  # records the error (once) and keeps the last objects
                while not os.path.exists(watch_root):
                    await asyncio.sleep(0.5)
                await reload()
            try:
                # An empty batch every RESYNC_MS when idle: its rescan (one stat per
                # file, no parsing unless something changed) covers writes made
                # before the watch was in place and any event the kernel dropped
                # (inotify queue overflow, network filesystems).
                async with contextlib.aclosing(self._watch_batches(watch_root, only)) as batches:
                    async for paths in batches:  # aclosing: a break closes the watch at once
                        await reload(paths)
                        if not os.path.exists(watch_root):
                            break
            except FileNotFoundError:
                pass
            # The watch ended (its folder vanished or was replaced): whatever
            # happened in between is found by the rescan at the next start.
            await asyncio.sleep(0.1)
            if os.path.exists(watch_root):
                await reload()

    def _watch_batches(self, watch_root: str, only: str | None) -> AsyncIterator[set[str]]:
        """Batches of changed paths under ``watch_root`` (only the file ``only``, when
        set); an empty batch when idle for RESYNC_MS or when only a rescan can tell.

        inotify on the event loop (controller/inotify.py) where the kernel has it:
        the process sleeps until something changes. Elsewhere watchfiles, which
        polls from a thread every STEP_MS."""
        from watchfiles import DefaultFilter  # imported here: offline validate needs none of it

        base_filter = DefaultFilter()

        def wanted(path: str) -> bool:
            if only is not None and os.path.basename(path) != only:
                return False
            return base_filter(None, path)  # the kind of change plays no part in its decision

        quiet_ms = max(1, min(int(self.debounce * 1000), STEP_MS))
        try:
            watch = InotifyWatch(watch_root, quiet=quiet_ms / 1000, debounce=self.debounce,
                                 idle_timeout=RESYNC_MS / 1000, wanted=wanted, recursive=only is None,
                                 ignore_dirs=base_filter.ignore_dirs)
        except InotifyUnavailable as exc:
            if not self._polling_noted:
                log.info("watching %s by polling every %d ms: %s", watch_root, quiet_ms, exc)
                self._polling_noted = True
            return self._polled_changes(watch_root, wanted, quiet_ms, only is None)
        return aiter(watch)

    async def _polled_changes(self, watch_root: str, wanted, step_ms: int, recursive: bool):
        from watchfiles import awatch

        # watchfiles checks for events every `step` ms and yields at the first
        # check that finds no new one (or after `debounce` ms of steady events):
        # a write reaches us one to two steps later. Its 1600 ms default is far
        # too slow here; at 10 ms a change is in the table well inside 50 ms, and
        # a truncate-then-write caught half way is handled by SETTLE_S.
        async for changes in awatch(
            watch_root,
            watch_filter=lambda change, path: wanted(path),
            debounce=max(1, int(self.debounce * 1000)),
            step=step_ms,
            rust_timeout=RESYNC_MS,
            yield_on_timeout=True,
            recursive=recursive,
        ):
            yield {p for _, p in changes}

    # -- internals -------------------------------------------------------------

    def _check_root(self) -> None:
        if not self.root.exists():
            raise ManifestFolderError(f"manifests folder {self.root} does not exist")
        if not (self.root.is_dir() or self.root.is_file()):
            raise ManifestFolderError(f"manifests path {self.root} is neither a folder nor a file")

    def _watch_target(self) -> tuple[str, str | None]:
        # A single file is watched through its folder: an editor's atomic rename
        # replaces the inode, which a watch on the file itself would lose.
        if self.root.is_file():
            return str(self.root.parent), self.root.name
        return str(self.root), None

    def _shown(self, rel: str, single_file: bool) -> str:
        return str(self.root) if single_file else os.path.join(str(self.root), rel)  # as Path's /, cheaper

    def _rescan(self, changed_paths, settled: bool = False, plan: _Plan | None = None) -> bool:
        """Bring ``self._files`` up to date; parse only what changed. True if anything did.

        ``settled``: apply removals even from files written moments ago.
        ``plan``: ``_plan(changed_paths)`` when the caller made it already.
        """
        root = str(self.root)
        if not os.path.exists(root):
            # Keep the last objects: a vanished folder is far more often a
            # checkout or remount in progress than a wish to drop every route.
            gone = LoadError(root, None, "manifests path is gone; keeping the last objects")
            changed = self._folder_error != gone
            self._folder_error = gone
            return changed
        changed = self._folder_error is not None
        self._folder_error = None
        single_file, forced, named = plan or self._plan(changed_paths)
        if named is None:
            found = _scan(root)
            self._scanned_at = time.monotonic()
            files: dict[str, _FileState] = {}
        else:
            # Only the files the watcher named: one stat each, whatever the folder holds.
            found = _stat_files(root, named)
            files = self._files.copy()  # a copy: the dict is swapped whole (see below)
        moved = self._moved
        self._unsettled = False
        now = time.time()
        for rel, (abs_path, sig) in found.items():
            old = self._files.get(rel)
            if old is not None and old.signature == sig and rel not in forced:
                files[rel] = old
                continue
            changed = True
            entries, errors, ignored = parse_file(abs_path, self._shown(rel, single_file))
            if not errors:
                new = _FileState(sig, tuple(entries), (), True, tuple(ignored))
            elif old is not None and old.ever_good:
                new = _FileState(sig, old.entries, tuple(errors), True, tuple(ignored))
            else:
                new = _FileState(sig, tuple(entries), tuple(errors), False, tuple(ignored))
            if (
                not settled
                and old is not None
                and {(e.kind, e.key) for e in old.entries} - {(e.kind, e.key) for e in new.entries}
                and _young(abs_path, now)
            ):
                # Possibly caught half written: keep the old objects and look again
                # once the file has settled (an unchanged signature is re-parsed then).
                files[rel] = _FileState(None, old.entries, old.errors, old.ever_good, old.ignored)
                self._unsettled = True
                continue
            files[rel] = new
            if old is None or old.entries != new.entries:
                moved.append((rel, old.entries if old is not None else (), new.entries))
        gone = self._files.keys() - found.keys() if named is None else (named & self._files.keys()) - found.keys()
        for rel in gone:
            changed = True
            moved.append((rel, self._files[rel].entries, ()))
            files.pop(rel, None)
        # One assignment: readers on the event loop see the old or the new dict, never half.
        self._files = files
        return changed

    def _plan(self, changed_paths) -> _Plan:
        """What a rescan for these watcher paths has to look at (see ``_named``)."""
        root = str(self.root)
        single_file = os.path.isfile(root)
        forced = self._relative(changed_paths, single_file)
        named = None
        # Even while changes keep coming, the whole folder is scanned every
        # RESYNC_MS, as the watcher's idle timeout does (see run).
        if changed_paths and not single_file and time.monotonic() - self._scanned_at <= RESYNC_MS / 1000:
            named = self._named(root, forced)
        return _Plan(single_file, forced, named)

    def _small(self, plan: _Plan) -> bool:
        """True when the watcher named a few files, small ones: reading them is then
        done on the event loop (a fraction of a millisecond per file; in a thread
        it would hold the GIL as long, plus two hand-offs). A folder, a big file or
        a scan of the whole folder goes to a thread."""
        if plan.named is None or len(plan.named) > INLINE_FILES:
            return False
        size = 0
        for rel in plan.named:
            try:
                size += os.stat(os.path.join(self.root, rel)).st_size
            except OSError:
                pass  # gone: nothing to read
        return size <= INLINE_BYTES

    def _relative(self, paths, single_file: bool) -> set[str]:
        if not paths:
            return set()
        if single_file:
            return {self.root.name}
        bases = (self._abs_root, self._real_root())
        out = set()
        for p in paths:
            for b in bases:
                if p.startswith(b) and p[len(b):len(b) + 1] == os.sep:  # the watcher's usual form
                    out.add(p[len(b) + 1:].replace(os.sep, "/"))
                    continue
                rel = os.path.relpath(p, b)
                if not rel.startswith(".."):
                    out.add(rel.replace(os.sep, "/"))
        return out

    def _real_root(self) -> str:
        """The folder's real path, resolved again on every full scan (not per change:
        resolving costs a system call per path element); a stale one only makes
        the watcher's paths look outside the folder, which makes a full scan."""
        if self._real is None or self._real[0] != self._scanned_at:
            self._real = (self._scanned_at, os.path.realpath(self.root))
        return self._real[1]

    def _named(self, root: str, rels: set[str]) -> set[str] | None:
        """The manifest files to look at again for the paths the watcher named
        (relative, see ``_relative``), or None when only a scan of the whole folder
        can tell what they changed.

        A named file is all a write, a rename onto it or a deletion changes: those
        are looked at alone, so one change costs a stat and a parse, not a stat
        per file of the folder. A folder (new, moved away, or a ConfigMap mount's
        hidden ``..data`` swapped), a path outside the folder (a symlink's target)
        or one inside a hidden folder (a target the folder's symlinks may reach)
        needs the whole scan. Hidden files and other files that are not
        manifests (editor temp files, a temp file renamed onto a manifest) change
        nothing by themselves.
        """
        out: set[str] = set()
        for rel in rels:
            if rel == "." or not rel:
                return None
            *folders, name = rel.split("/")
            if any(_skipped(part) for part in folders):
                return None
            if rel in self._files:
                out.add(rel)  # changed, replaced or gone: its stat tells
                continue
            try:
                st = os.stat(os.path.join(root, rel))
            except OSError:  # gone: a temp file, or a folder moved away with files we know
                if not _skipped(name):
                    prefix = rel + "/"
                    if any(known.startswith(prefix) for known in self._files):
                        return None
                continue
            if stat_mod.S_ISDIR(st.st_mode):
                return None
            if not _skipped(name) and name.endswith(SUFFIXES):
                out.add(rel)  # a new file
        return out

    def merged(self, kinds=store_mod.KINDS) -> tuple[dict[str, dict[str, dict]], dict[str, dict[str, str]]]:
        """The objects of ``kinds`` over all files; the first file in sorted path order wins duplicates.

        Returns (objects: kind -> "ns/name" -> object, origins: kind -> "ns/name" -> origin).
        """
        self._index_all()
        objects: dict[str, dict[str, dict]] = {k: {} for k in kinds}
        origins: dict[str, dict[str, str]] = {k: {} for k in kinds}
        for (kind, key), providers in self._providers.items():
            if kind in objects:
                entry = providers[0][1]
                objects[kind][key] = entry.obj
                origins[kind][key] = entry.origin
        return objects, origins

    def _index_all(self) -> None:
        """Index every file from scratch (the first load, and offline use)."""
        self._moved = []
        self._providers = {}
        self._duplicates = {}
        for rel in sorted(self._files):
            self._index(rel, (), self._files[rel].entries)
        for key in self._providers:
            self._settle_duplicates(key)

    def _index(self, rel: str, old: tuple[Entry, ...], new: tuple[Entry, ...]) -> set[tuple[str, str]]:
        """Move one file's entries in the provider index; the (kind, key)s it touched."""
        touched = set()
        for e in old:
            key = (e.kind, e.key)
            rest = [p for p in self._providers.get(key, ()) if p[0][0] != rel]
            if rest:
                self._providers[key] = rest
            else:
                self._providers.pop(key, None)
            touched.add(key)
        for i, e in enumerate(new):
            key = (e.kind, e.key)
            bisect.insort(self._providers.setdefault(key, []), ((rel, i), e), key=lambda p: p[0])
            touched.add(key)
        return touched

    def _settle_duplicates(self, key: tuple[str, str]) -> None:
        providers = self._providers.get(key, ())
        if len(providers) < 2:
            self._duplicates.pop(key, None)
            return
        first = providers[0][1]
        self._duplicates[key] = tuple(
            LoadError(
                e.origin.split("#", 1)[0],
                e.document,
                f"duplicate {e.kind} {e.key}: already defined in {first.origin}; this one is ignored",
                e.line,
            )
            for _, e in providers[1:]
        )

    def _publish(self) -> None:
        now = time.time()
        if self.loads == 0:
            # The first load hands over every kind, even empty ones: that is what
            # tells the publisher each kind has been listed.
            objects, origins = self.merged()
            for kind in store_mod.KINDS:
                self.store.replace(kind, objects[kind].values(), origins=origins[kind])
                metrics.LAST_SYNC.labels(kind).set(now)
        else:
            for kind, (upserts, deletes, origins) in self._changes().items():
                self.store.update(kind, upserts, deletes, origins)
                metrics.LAST_SYNC.labels(kind).set(now)
        self.loads += 1
        self._log_errors()

    def _changes(self) -> dict[str, tuple[dict[str, dict], list[str], dict[str, str]]]:
        """What the files that moved since the last publish change in the store, by kind:
        (objects to add or replace, keys to delete, origins)."""
        moved, self._moved = self._moved, []
        touched: set[tuple[str, str]] = set()
        for rel, old, new in moved:
            touched |= self._index(rel, old, new)
        out: dict[str, tuple[dict[str, dict], list[str], dict[str, str]]] = {}
        for kind, key in touched:
            self._settle_duplicates((kind, key))
            upserts, deletes, origins = out.setdefault(kind, ({}, [], {}))
            providers = self._providers.get((kind, key))
            if providers:
                entry = providers[0][1]
                upserts[key] = entry.obj
                origins[key] = entry.origin
            else:
                deletes.append(key)
        return out

    def _log_errors(self) -> None:
        current = set(self.errors)
        for err in sorted(current - self._logged, key=LoadError.sort_key):
            log.warning("manifest not loaded: %s", err)
        fixed_files = {e.path for e in self._logged - current} - {e.path for e in current}
        for path in sorted(fixed_files):
            log.info("manifest errors resolved: %s", path)
        self._logged = current


class Manifests(NamedTuple):
    """A folder loaded offline (``load_manifests``)."""

    objects: dict[str, dict[str, dict]]  # kind -> "ns/name" -> object
    origins: dict[str, str]  # "Kind:ns/name" -> "path#doc"
    errors: list[LoadError]
    ignored: dict[str, int]  # kind -> objects of that kind ignored (not kinds crdgate reads)


def load_manifests(root: Path | str) -> Manifests:
    """Load a folder (or one file) offline, for ``validate`` and ``routes``.

    The objects and origins have the shape of ``controller.store.Snapshot``.
    Raises ManifestFolderError if ``root`` does not exist.
    """
    source = ManifestSource(Store(), root)
    source._check_root()
    source._rescan(())
    objects, by_kind = source.merged()
    origins = {f"{kind}:{key}": origin for kind, keys in by_kind.items() for key, origin in keys.items()}
    return Manifests(objects, origins, list(source.errors), source.ignored)


def load_folder(root: Path | str) -> tuple[dict[str, dict[str, dict]], dict[str, str], list[LoadError]]:
    """``load_manifests`` without the ignored count: (objects, origins, errors)."""
    objects, origins, errors, _ = load_manifests(root)
    return objects, origins, errors
