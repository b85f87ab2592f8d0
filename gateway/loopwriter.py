"""The access log's writer: whole lines to stdout from the event loop, batched, never waiting.

The access log used to hand its lines to a writer thread (gateway/logwriter.py,
which the process log keeps). On the one core the proxy is pinned to, that
thread cost more than the lines: each time it woke to write a batch it took
the GIL from the event loop, and uvloop hands the GIL back and forth at every
callback, so one batch became dozens of futex wake-ups and context switches on
both threads (measured: docs/metrics.md, "Access log"). Here the event loop
does the writing itself, as nginx does: lines go into a bounded buffer, and
every ``INTERVAL`` seconds one ``write`` takes the whole batch.

Writing from the loop is only safe if a write can never wait, and the usual way
to get that, O_NONBLOCK, is a flag of the open file description, which stdout
shares with whoever else holds it (the terminal, the supervisor, the sibling
``--workers``): setting it would make their writes fail with EAGAIN. So
``open_target`` finds a non-blocking write that leaves the description alone:

- a pipe, FIFO or socket (a container runtime's log pipe, journald's socket):
  ``pwritev2`` with ``RWF_NOWAIT``, non-blocking for that call only (Linux
  supports it on pipes since 6.x, on sockets for longer: tried first on a pipe
  or socket pair of our own);
- a terminal or another character device, or a pipe on an older kernel:
  opened again through ``/proc/self/fd/N``, non-blocking. That is a new
  description of the same pipe or device, and its flag is ours (a pipe the
  container runtime created for another user cannot be opened again: then the
  first way is the only one);
- a regular file: written as it is. A file never waits for a reader (the page
  cache takes the write, as for nginx's own access log) and O_NONBLOCK means
  nothing to it; a second description would have its own offset and overwrite
  what the process log writes through the shared one.

Anything else gets None, and the caller keeps the writer thread.

A stream that does not take a whole batch (the pipe is full: its reader is
slow) keeps the rest, and the loop writes it when the fd is writable again
(``add_writer``); meanwhile new lines wait in the buffer, and once it holds
``max_buffer`` characters new lines are dropped and counted (``dropped``:
``crdgate_access_log_dropped_total``). Once the stream takes lines again,
``on_drops`` is told how many were lost, at most once per
``DROP_WARNING_INTERVAL``. Lines are never torn by this process: a batch is
whole lines, written to its end before the next one starts.

The lines are bytes from the start (``LineBuffer``): the access log appends a
line's pieces straight into the batch, where the bytes the write takes are
(compiled, a ``memcpy`` per piece). No object is made per line, and no join or
encode per batch; the two buffers (one filling, one being written) are reused
batch after batch, so a batch of a few hundred kilobytes allocates nothing.
"""

from __future__ import annotations

import asyncio
import os
import select
import socket
import stat
import time
from typing import Callable

from gateway.logwriter import CLOSE_TIMEOUT, DROP_WARNING_INTERVAL, INTERVAL, MAX_BUFFER, DropReport


# Compiled, a LineBuffer copies ASCII text and bytes with memcpy (the C names come from
# loopwriter.pxd); as plain Python it takes the same bytes through slices.
_COMPILED = not __file__.endswith(".py")


class LineBuffer:
    """Bytes appended in place: the lines of a batch, or of one line being made.

    ``data`` is allocated ahead (``capacity`` bytes, doubled when full) and only its
    first ``length`` bytes hold lines, so appending a piece is a copy into memory
    already there, and ``clear`` keeps the memory for the next batch.
    """

    def __init__(self, capacity: int = 65536):
        self.data = bytearray(capacity)
        self.capacity = capacity
        self.length = 0

    def put(self, text: str) -> None:
        """Append text; ASCII (what the access log makes: it escapes the rest) is copied as it is."""
        if text is None:  # compiled, the C calls below would read through a null str
            raise TypeError("LineBuffer.put takes a str, not None")
        n = len(text)
        if _COMPILED and PyUnicode_IS_ASCII(text):
            if self.length + n > self.capacity:
                self._grow(n)
            memcpy(PyByteArray_AS_STRING(self.data) + self.length, PyUnicode_DATA(text), n)
            self.length += n
        else:
            self.put_bytes(text.encode("utf-8", "backslashreplace"))

    def put_bytes(self, value: bytes) -> None:
        if value is None:
            raise TypeError("LineBuffer.put_bytes takes bytes, not None")
        n = len(value)
        if self.length + n > self.capacity:
            self._grow(n)
        if _COMPILED:
            memcpy(PyByteArray_AS_STRING(self.data) + self.length, PyBytes_AS_STRING(value), n)
        else:
            self.data[self.length:self.length + n] = value
        self.length += n

    def put_char(self, c: int) -> None:
        """Append one byte (a quote, a newline)."""
        if self.length + 1 > self.capacity:
            self._grow(1)
        self.data[self.length] = c
        self.length += 1

    def _grow(self, n: int) -> None:
        # A new bytearray rather than a resize: the old one may still be exported to a
        # memoryview (a batch written in part), which a resize would refuse.
        capacity = max(self.length + n, 2 * self.capacity)
        grown = bytearray(capacity)
        grown[:self.length] = memoryview(self.data)[:self.length]
        self.data = grown
        self.capacity = capacity

    def cut(self, length: int) -> None:
        """Forget what was appended after ``length`` bytes (a line that is dropped)."""
        self.length = length

    def clear(self) -> None:
        self.length = 0

    def text(self, start: int) -> str:
        """What was appended from ``start`` on, as text."""
        return self.data[start:self.length].decode("utf-8", "backslashreplace")

    def view(self) -> memoryview:
        """The bytes appended so far, without a copy (valid until the next append or clear)."""
        return memoryview(self.data)[:self.length]


class FileTarget:
    """A regular file: plain writes on the shared fd (a file takes them; see the module docstring)."""

    def __init__(self, fd: int):
        self.fd = fd
        self.pollable = False  # epoll refuses regular files; a write to one never waits for a reader

    def write(self, data) -> int:
        return os.write(self.fd, data)

    def close(self) -> None:
        pass  # the fd is stdout's


class NowaitTarget:
    """A pipe or socket written with ``RWF_NOWAIT``: each write is non-blocking by itself."""

    def __init__(self, fd: int):
        self.fd = fd
        self.pollable = True

    def write(self, data) -> int:
        return os.pwritev(self.fd, (data,), -1, os.RWF_NOWAIT)

    def close(self) -> None:
        pass  # the fd is stdout's


class ReopenedTarget:
    """A pipe, FIFO or character device opened again: a non-blocking description of our own."""

    def __init__(self, fd: int):
        # O_NOCTTY: a terminal opened again must not become our controlling terminal.
        self.fd = os.open(f"/proc/self/fd/{fd}", os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
        self.pollable = True

    def write(self, data) -> int:
        return os.write(self.fd, data)

    def close(self) -> None:
        os.close(self.fd)


_nowait_kinds: dict[str, bool] = {}


def nowait_works(kind: str) -> bool:
    """Whether this kernel takes ``RWF_NOWAIT`` writes on a ``pipe`` or a ``socket``: tried once on a pair of our own."""
    if kind not in _nowait_kinds:
        works = False
        if hasattr(os, "pwritev") and hasattr(os, "RWF_NOWAIT"):
            if kind == "pipe":
                r, w = os.pipe()
            else:
                a, b = socket.socketpair()
                r, w = a.detach(), b.detach()
            try:
                works = os.pwritev(w, (b"x",), -1, os.RWF_NOWAIT) == 1
            except OSError:  # EOPNOTSUPP: an older kernel
                pass
            finally:
                os.close(r)
                os.close(w)
        _nowait_kinds[kind] = works
    return _nowait_kinds[kind]


def open_target(fd: int):
    """A way to write to ``fd`` that never waits and leaves its file description alone, or None."""
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        return None
    if stat.S_ISREG(mode):
        return FileTarget(fd)
    if stat.S_ISFIFO(mode) and nowait_works("pipe") or stat.S_ISSOCK(mode) and nowait_works("socket"):
        return NowaitTarget(fd)
    if stat.S_ISFIFO(mode) or stat.S_ISCHR(mode):
        try:
            return ReopenedTarget(fd)
        except OSError:  # no /proc; another user's pipe; a FIFO whose reader is gone (ENXIO)
            return None
    return None


class LoopLogWriter:
    """Whole lines through a bounded buffer, written in batches by the event loop; ``write`` never waits.

    Single-threaded: ``write`` is called from the event loop, and everything
    else runs there too (a timer per batch, ``add_writer`` while the stream is
    full), except ``close``, for when no loop runs any more.
    """

    def __init__(self, target, name: str, on_drops: Callable[[int], None] | None = None,
                 max_buffer: int = MAX_BUFFER, interval: float = INTERVAL,
                 warning_interval: float = DROP_WARNING_INTERVAL):
        self.target = target
        self.name = name
        self.drop_report = DropReport(on_drops, warning_interval)  # told once the stream takes lines again
        self.max_buffer = max_buffer
        self.interval = interval
        self.lines = LineBuffer()  # the lines waiting for the next batch, each with its newline
        self._spare = LineBuffer()  # the buffer of the batch before, kept for the next one
        self._flight = None  # the buffer of the batch in flight
        self._line_start = 0  # where the line being made (``start_line``) begins in ``lines``
        self._waiting_lines = 0
        self._size = 0  # bytes held: the waiting lines and the unwritten rest of the batch in flight
        self._rest = None  # memoryview of what the stream has not taken yet of the batch in flight
        self._rest_lines = 0  # lines of that batch (counted as lost if the stream breaks)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer = None
        self._waiting = False  # add_writer is on: the stream is full
        self._closed = False
        self._dropped_full = 0
        self._dropped_lost = 0
        self._broken = False

    # -- the request path -----------------------------------------------------------------

    def write(self, line: str) -> bool:
        """Queue one line (without its newline); False when it was dropped."""
        self.start_line().put(line)
        return self.end_line()

    def start_line(self) -> LineBuffer:
        """The buffer to append the next line's pieces to (without its newline); then ``end_line``."""
        self._line_start = self.lines.length
        return self.lines

    def end_line(self) -> bool:
        """The line appended since ``start_line`` is complete: queued, or dropped (False) when the
        buffer is full or the writer closed."""
        lines = self.lines
        lines.put_char(10)
        n = lines.length - self._line_start
        if self._size + n > self.max_buffer or self._closed:
            lines.cut(self._line_start)
            self._dropped_full += 1
            return False
        self._size += n
        self._waiting_lines += 1
        if self._timer is None and not self._waiting:
            # The first line of a batch: the batch goes out in ``interval`` seconds, in one write.
            if self._loop is None:
                self._loop = asyncio.get_running_loop()
            self._timer = self._loop.call_later(self.interval, self._flush)
        return True

    @property
    def dropped(self) -> int:
        """Lines lost: the buffer was full, or the stream closed or broke."""
        return self._dropped_full + self._dropped_lost

    @property
    def buffered(self) -> int:
        """Bytes held now (waiting or being written): never above ``max_buffer``."""
        return self._size

    # -- writing (on the loop) ----------------------------------------------------------------

    def _flush(self) -> None:
        self._timer = None
        if not self._waiting:
            self._pump()

    def _on_writable(self) -> None:
        self._pump()

    def _pump(self) -> None:
        """Write the batch in flight, then the lines that waited meanwhile, until done or the stream is full."""
        while True:
            if self._rest is None:
                if not self._waiting_lines:
                    break
                self._start_batch()
            if not self._write_rest():  # the stream is full: go on when it is writable again
                if not self.target.pollable:
                    if self._timer is None:  # a file that took part of a write: try again later
                        self._timer = self._loop.call_later(self.interval, self._flush)
                elif not self._waiting:
                    self._waiting = True
                    self._loop.add_writer(self.target.fd, self._on_writable)
                return
        if self._waiting:
            self._waiting = False
            self._loop.remove_writer(self.target.fd)
        self.drop_report.report(self.dropped, self._broken)

    def _start_batch(self) -> None:
        # The waiting lines become the batch in flight, and the lines to come fill the
        # buffer of the batch before (its memory kept).
        batch = self.lines
        self.lines = self._spare
        self._spare = None
        self._flight = batch
        self._rest = batch.view()
        self._rest_lines = self._waiting_lines
        self._waiting_lines = 0

    def _batch_done(self) -> None:
        self._rest = None
        batch = self._flight
        self._flight = None
        batch.clear()
        self._spare = batch

    def _write_rest(self) -> bool:
        """Write what the stream takes of the batch in flight, without waiting; True when none is left."""
        rest = self._rest
        while rest:
            try:
                n = self.target.write(rest)
            except (BlockingIOError, InterruptedError):
                self._rest = rest
                return False
            except OSError:  # closed, broken pipe: nothing can be written there any more
                self._broken = True
                self._dropped_lost += self._rest_lines
                n = len(rest)
            else:
                self._broken = False
            self._size -= n
            rest = rest[n:]
        rest = None
        self._batch_done()
        return True

    # -- shutdown -------------------------------------------------------------------------

    async def aclose(self, timeout: float = CLOSE_TIMEOUT) -> bool:
        """Write what is buffered, then stop; True if it all went out within ``timeout``.

        On the loop and without blocking it: a stalled reader costs at most ``timeout``.
        """
        self._closed = True
        deadline = time.monotonic() + timeout
        while self.target is not None and (self._rest is not None or self._waiting_lines):
            if not self._waiting:
                self._pump()
                if self._rest is None and not self._waiting_lines:
                    break
            if time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.01)
        return self._finish()

    def close(self, timeout: float = CLOSE_TIMEOUT) -> bool:
        """``aclose`` for when no event loop runs: waits for the stream with ``select``, bounded in time."""
        self._closed = True
        deadline = time.monotonic() + timeout
        while self.target is not None and (self._rest is not None or self._waiting_lines):
            if self._rest is None:
                self._start_batch()
            if self._write_rest():
                continue
            left = deadline - time.monotonic()
            if left <= 0 or not self.target.pollable:
                break
            select.select([], [self.target.fd], [], min(left, 0.1))
        return self._finish()

    def _finish(self) -> bool:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._waiting:
            self._waiting = False
            try:
                self._loop.remove_writer(self.target.fd)
            except RuntimeError:  # the loop is closed: nothing is registered any more
                pass
        done = self._rest is None and not self._waiting_lines
        if not done:
            self._dropped_lost += (self._rest_lines if self._rest is not None else 0) + self._waiting_lines
            if self._rest is not None:
                self._batch_done()
            self.lines.clear()
            self._waiting_lines = self._size = 0
        if self.target is not None:  # closed once, whichever of close and aclose came first
            self.target.close()
            self.target = None
        return done
