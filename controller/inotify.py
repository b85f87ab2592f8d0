"""Linux inotify on the event loop: a folder watch that costs nothing while nothing changes.

The manifests source (controller/files.py) used watchfiles' ``awatch``, whose
Rust thread wakes every ``step`` (10 ms, so that a change reaches the table
well inside 50 ms) and takes the GIL at each wake to check for cancellation:
a hundred wake-ups a second in an idle gateway, and under load each one a GIL
hand-off with the proxy's event loop and, with the gateway pinned to a CPU, a
preemption of it. Here the inotify descriptor itself is registered with the
event loop (``loop.add_reader``): the process is woken only when the kernel has
an event, and the short wait that batches an editor's burst of events
(``quiet``, ``debounce``) is a loop timer that exists only while events arrive.

``InotifyWatch`` watches a folder, recursively, following symlinked folders as
the manifests scan does (``ignore_dirs`` are not entered), and yields batches
of changed paths. ``IN_Q_OVERFLOW`` (the kernel dropped events) yields an empty
batch, which the caller treats as "rescan everything". The iteration ends when
the watched folder itself is deleted or moved away (the caller restarts it).

``InotifyUnavailable`` is raised where inotify cannot be used (not Linux, no
libc symbol, the per-user instance or watch limit reached); the caller then
falls back to a polling watcher.
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import functools
import logging
import os
import struct
import sys
import time
from typing import AsyncIterator, Callable, Iterable

from gateway.errors import InotifyUnavailable

log = logging.getLogger("crdgate.controller.inotify")

# <sys/inotify.h>
IN_MODIFY = 0x00000002
IN_ATTRIB = 0x00000004
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ONLYDIR = 0x01000000
IN_ISDIR = 0x40000000

# Everything that can change what a file gives: its content (MODIFY while it is
# written, CLOSE_WRITE at the end), a rename onto or away from it, creation,
# deletion, and ATTRIB (a `touch`, or the link count of a hard-linked file).
MASK = (IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE
        | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR)
_FOLDER_EVENTS = IN_CREATE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE  # with IN_ISDIR: the tree changed
_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len; then len bytes of NUL-padded name
_READ_SIZE = 64 << 10


@functools.cache
def _libc():
    if not sys.platform.startswith("linux"):
        raise InotifyUnavailable(f"inotify is Linux only (this is {sys.platform})")
    try:
        # The process's own symbols, libc's among them (glibc and musl alike): no
        # ctypes.util.find_library, which runs ldconfig in a subprocess.
        libc = ctypes.CDLL(None, use_errno=True)
        init1, add, rm = libc.inotify_init1, libc.inotify_add_watch, libc.inotify_rm_watch
    except (OSError, AttributeError) as exc:
        raise InotifyUnavailable(f"no inotify in the C library: {exc}") from None
    init1.argtypes, init1.restype = [ctypes.c_int], ctypes.c_int
    add.argtypes, add.restype = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32], ctypes.c_int
    rm.argtypes, rm.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return init1, add, rm


class InotifyWatch:
    """An async iterator of changed-path batches for one folder (see the module docstring).

    ``quiet``: a batch is handed over once no event came for this long;
    ``debounce``: or at the latest this long after its first event;
    ``idle_timeout``: an empty batch after this long without any event (the
    caller's periodic rescan), None for none;
    ``wanted(path)``: events on other paths are dropped;
    ``recursive``: watch the folders below too;
    ``ignore_dirs``: folder names not watched (``.git``: a fetch would be a storm).
    """

    def __init__(self, root: str, *, quiet: float, debounce: float, idle_timeout: float | None = None,
                 wanted: Callable[[str], bool] = lambda path: True, recursive: bool = True,
                 ignore_dirs: Iterable[str] = ()):
        self.root = os.path.abspath(root)
        self.quiet = quiet
        self.debounce = max(debounce, quiet)
        self.idle_timeout = idle_timeout
        self.wanted = wanted
        self.recursive = recursive
        self.ignore_dirs = frozenset(ignore_dirs)
        init1, self._add, self._rm = _libc()
        fd = init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if fd < 0:
            err = ctypes.get_errno()
            raise InotifyUnavailable(err, f"inotify_init1: {os.strerror(err)}")
        self.fd = fd
        self._dirs: dict[int, str] = {}  # watch descriptor -> the folder it watches (as reached from root)
        self._root_wd = -1
        self._pending: set[str] = set()
        self._overflow = False
        self._ended = False
        self._event = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        try:
            self._root_wd = self._watch(self.root, required=True)
            if self.recursive:
                self._watch_tree()
        except BaseException:
            os.close(fd)
            raise

    # -- the iterator ------------------------------------------------------------------

    def __aiter__(self) -> AsyncIterator[set[str]]:
        return self._batches()

    async def _batches(self) -> AsyncIterator[set[str]]:
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self.fd, self._on_readable)
        try:
            while not self._ended:
                if not await self._wait(self.idle_timeout):
                    yield set()  # idle: the caller's periodic rescan
                    continue
                # Events came: wait until they pause for `quiet`, at most `debounce`
                # from the first, so an editor's save (truncate, writes, close) or a
                # `git checkout` is one batch and one reload.
                first = time.monotonic()
                while not self._ended:
                    left = min(self.quiet, first + self.debounce - time.monotonic())
                    if left <= 0 or not await self._wait(left):
                        break
                paths, self._pending = self._pending, set()
                overflow, self._overflow = self._overflow, False
                if overflow:
                    yield set()  # the kernel dropped events: only a full rescan can tell
                elif paths:
                    yield paths
        finally:
            self.close()

    async def _wait(self, timeout: float | None) -> bool:
        """True when events arrived (now or before), False after ``timeout`` without any."""
        if not self._event.is_set():
            try:
                async with asyncio.timeout(timeout):
                    await self._event.wait()
            except TimeoutError:
                return False
        self._event.clear()
        return True

    def close(self) -> None:
        if self.fd < 0:
            return
        if self._loop is not None and not self._loop.is_closed():
            self._loop.remove_reader(self.fd)
        os.close(self.fd)
        self.fd = -1

    # -- events ------------------------------------------------------------------------

    def _on_readable(self) -> None:
        rewatch = False
        while True:
            try:
                data = os.read(self.fd, _READ_SIZE)
            except BlockingIOError:
                break
            except OSError as exc:
                log.warning("reading inotify events failed: %s; rescanning", exc)
                self._overflow = True
                break
            if not data:
                break
            rewatch |= self._parse(data)
        if rewatch and not self._ended:
            try:
                self._watch_tree()
            except InotifyUnavailable as exc:
                log.warning("%s: changes below that folder are seen by the periodic rescan only", exc)
        self._event.set()

    def _parse(self, data: bytes) -> bool:
        """Record the events in ``data``; True when a folder appeared, moved or went."""
        rewatch = False
        pos, size = 0, len(data)
        while pos + _EVENT.size <= size:
            wd, mask, _cookie, length = _EVENT.unpack_from(data, pos)
            name = data[pos + _EVENT.size: pos + _EVENT.size + length].rstrip(b"\0")
            pos += _EVENT.size + length
            if mask & IN_Q_OVERFLOW:
                self._overflow = True
                rewatch = True
                continue
            folder = self._dirs.get(wd)
            if mask & IN_IGNORED:  # the watch is gone (its folder deleted, or rm_watch)
                self._dirs.pop(wd, None)
                if wd == self._root_wd:
                    self._ended = True
                continue
            if folder is None:
                continue
            if mask & (IN_DELETE_SELF | IN_MOVE_SELF):
                if wd == self._root_wd:
                    self._ended = True  # the folder itself went: the caller starts again
                continue
            path = os.path.join(folder, os.fsdecode(name)) if name else folder
            if mask & IN_ISDIR and mask & _FOLDER_EVENTS and self.recursive:
                rewatch = True
            if self.wanted(path):
                self._pending.add(path)
        return rewatch

    # -- watches -----------------------------------------------------------------------

    def _watch(self, folder: str, required: bool = False) -> int:
        wd = self._add(self.fd, os.fsencode(folder), MASK)
        if wd < 0:
            err = ctypes.get_errno()
            if required and err == errno.ENOENT:
                raise FileNotFoundError(err, os.strerror(err), folder)
            if required or err == errno.ENOSPC:
                # ENOSPC: fs.inotify.max_user_watches reached; a partial watch would miss changes.
                raise InotifyUnavailable(err, f"inotify_add_watch {folder}: {os.strerror(err)}")
            return -1  # vanished meanwhile, or not a folder: the next walk settles it
        self._dirs[wd] = folder
        return wd

    def _watch_tree(self) -> None:
        """Watch every folder under the root (new ones included), and drop watches on
        folders no longer reached from it. Adding a watch to a folder already watched
        returns its descriptor again, so this is also how a moved folder's path is fixed."""
        seen: set[int] = {self._root_wd}
        visited: set[tuple[int, int]] = set()

        def walk(folder: str) -> None:
            try:
                st = os.stat(folder)
                entries = list(os.scandir(folder))
            except OSError:
                return
            if (st.st_dev, st.st_ino) in visited:  # a symlink loop
                return
            visited.add((st.st_dev, st.st_ino))
            for entry in entries:
                try:
                    if entry.name in self.ignore_dirs or not entry.is_dir():  # is_dir follows symlinks
                        continue
                except OSError:
                    continue
                wd = self._watch(entry.path)
                if wd >= 0:
                    seen.add(wd)
                    walk(entry.path)

        walk(self.root)
        for wd in [wd for wd in self._dirs if wd not in seen]:
            del self._dirs[wd]
            self._rm(self.fd, wd)  # its IN_IGNORED finds no folder any more: dropped
