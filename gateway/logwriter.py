"""Log lines to stdout and stderr without ever stalling the proxy.

A log collector that stops reading its pipe turns every blocking write into a
stall: the access log's flush, on the event loop, froze the proxy after a few
hundred requests. ``LogWriter`` takes whole lines into a bounded buffer
(``MAX_BUFFER`` characters, bytes for the ASCII JSON lines) and a writer thread
writes them in batches, every ``INTERVAL`` seconds while lines come. With
nothing to write the thread sleeps until a line comes: a thread that woke every
interval anyway took the GIL, and with the gateway pinned to one CPU the CPU,
from the proxy's event loop twenty times a second. When the buffer is full a
new line is dropped and counted (``dropped``), the proxy goes on; once the
stream takes lines again, ``on_drops`` is told how many were lost, at most once
per ``DROP_WARNING_INTERVAL`` (a line it logs to this same writer, as the process
log's warning does, is never dropped: the writer thread's own line may pass the
bound). Lines are never split: a batch is whole lines,
and it is written to its end before the next one starts.

Users: ``LogWriterHandler`` for the process log (stderr, installed by
crdgate/logs.py), and the access log (stdout) only where stdout cannot be written
without waiting from the event loop (gateway/accesslog.py's ``stdout_writer``;
the usual writer is gateway/loopwriter.py); gateway/metrics.py exports both
``dropped`` counters.

Why a thread that writes with ordinary blocking writes: the process log is
written from several threads, before the event loop starts and after it stops,
and a thread works on any kind of fd (file, pipe, terminal, socket) without
touching O_NONBLOCK, a flag of the open file description that stderr shares with
whoever else holds it (the shell's terminal, the supervisor and the sibling
``--workers``): setting it would make their writes fail with EAGAIN. A caller's
whole share is an append to a deque and two integer updates (``one_producer``:
no lock, for a single writing thread; callers from several threads take an
uncontended lock), plus, when the writer thread sleeps idle, one wake-up
(``_idle``: the caller appends, then reads the flag; the thread sets the flag,
then looks at the buffer, so one of them sees the other). The writer thread
never takes a lock: deque appends and pops are atomic, and each counter has one
writing thread. Its blocked write waits for
the reader, never for the proxy. For the access log, written on every request,
a thread costs more than the lines (GIL hand-offs with the event loop on every
batch): see gateway/loopwriter.py.
"""

from __future__ import annotations

import asyncio
import logging
import os
import select
import threading
import time
from collections import deque
from typing import Callable

MAX_BUFFER = 4 << 20  # characters held per stream, written or waiting (--log-buffer-bytes)
MIN_BUFFER = 4096  # smaller and a long line (a traceback) could never fit
BATCH = 64 << 10  # characters per write (whole lines: a long line makes a longer write)
INTERVAL = 0.05  # seconds between batches: one write per interval, not per line
DROP_WARNING_INTERVAL = 10.0  # at most one "lines were dropped" warning per stream per this many seconds
CLOSE_TIMEOUT = 2.0  # seconds a shutdown waits for what is buffered to be written


class DropReport:
    """Tells ``on_drops`` how many lines a writer lost since it last did, at most once per ``interval``.

    Shared by both writers (this module's thread and gateway/loopwriter.py's
    event loop): each calls ``report`` after a batch went out, so the warning
    comes once the stream takes lines again, never while it is broken.
    """

    def __init__(self, on_drops: Callable[[int], None] | None, interval: float):
        self.on_drops = on_drops
        self.interval = interval
        self.reported = 0  # lines already told
        self.last = -interval  # time.monotonic() of the last call

    def due_in(self, dropped: int, broken: bool) -> float | None:
        """Seconds until ``report`` would tell of lines lost so far (None: nothing to tell)."""
        if dropped <= self.reported or broken or self.on_drops is None:
            return None
        return max(0.0, self.last + self.interval - time.monotonic())

    def report(self, dropped: int, broken: bool) -> None:
        """``dropped``: the writer's lines lost so far; ``broken``: its stream failed on the last write."""
        lost = dropped - self.reported
        if lost <= 0 or broken or self.on_drops is None:
            return
        now = time.monotonic()
        if now - self.last < self.interval:
            return
        self.reported += lost
        self.last = now
        try:
            self.on_drops(lost)
        except Exception:  # a warning must not break the log it is about
            pass


class LogWriter:
    """Whole lines to one fd, through a bounded buffer and a writer thread; never blocks a caller."""

    def __init__(self, fd: int, name: str, on_drops: Callable[[int], None] | None = None,
                 max_buffer: int = MAX_BUFFER, interval: float = INTERVAL,
                 warning_interval: float = DROP_WARNING_INTERVAL, one_producer: bool = False):
        self.fd = fd
        self.name = name
        # Told from the writer thread the lines lost since the last time, once the
        # stream takes lines again (to log a warning elsewhere, or here).
        self.drop_report = DropReport(on_drops, warning_interval)
        self.max_buffer = max_buffer
        self.interval = interval
        # Each counter has one writing thread, so no update is lost without a lock:
        # the callers' side counts what it queued and what did not fit, the writer
        # thread what it took off the buffer and what the stream lost.
        self._lines: deque[str] = deque()  # append and popleft are atomic: the writer thread takes no lock
        self._queued = 0  # characters ever queued
        self._taken = 0  # characters ever written (or lost) by the writer thread
        self._dropped_full = 0
        self._dropped_lost = 0
        self._lock = threading.Lock()  # serialises callers of several threads (the process log)
        if one_producer:
            # Only ever called from one thread (the access log: the event loop): no lock at all.
            self.write = self._queue_line
        self._closing = False
        self._wake = threading.Event()  # set by close(): ends the batch wait
        self._idle = False  # the writer thread sleeps until a line comes (see _sleep_until_a_line)
        self._line = threading.Event()  # wakes it: set by the caller that finds it idle, and by close()
        self._broken = False
        self._thread = threading.Thread(target=self._run, name=f"crdgate-{name}-writer", daemon=True)
        self._thread.start()

    # -- callers' side (any thread) ---------------------------------------------------------

    def write(self, line: str) -> bool:
        """Queue one line (without its newline); False when it was dropped."""
        n = len(line) + 1
        with self._lock:  # _queue_line's body, inlined: the process log's path (one call less)
            if self._queued - self._taken + n > self.max_buffer or self._closing:
                # The writer thread's own line is the drop warning (``on_drops`` logging
                # to this same writer): dropped, it would leave the loss it tells of untold
                # for a whole warning interval, while callers still fill the buffer. One
                # line per interval is let over the bound.
                if self._closing or threading.get_ident() != self._thread.ident:
                    self._dropped_full += 1
                    return False
            self._lines.append(line)
            self._queued += n
        if self._idle:
            self._idle = False
            self._line.set()
        return True

    def _queue_line(self, line: str) -> bool:
        n = len(line) + 1
        if self._queued - self._taken + n > self.max_buffer or self._closing:
            self._dropped_full += 1
            return False
        self._lines.append(line)
        self._queued += n
        if self._idle:
            self._idle = False
            self._line.set()
        return True

    @property
    def dropped(self) -> int:
        """Lines lost: the buffer was full, or the stream closed or broke."""
        return self._dropped_full + self._dropped_lost

    @property
    def buffered(self) -> int:
        """Characters held now (waiting or being written): never above ``max_buffer``."""
        return self._queued - self._taken

    def close(self, timeout: float = CLOSE_TIMEOUT) -> bool:
        """Write what is buffered, then stop; True if it all went out within ``timeout``.

        A stalled reader cannot hold the shutdown: after ``timeout`` the thread
        (a daemon) is left behind and the process exits without it.
        """
        self._closing = True
        self._wake.set()
        self._line.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)
        return not self._thread.is_alive()

    async def aclose(self, timeout: float = CLOSE_TIMEOUT) -> bool:
        """``close`` from the event loop: the wait happens in a worker thread."""
        return await asyncio.to_thread(self.close, timeout)

    # -- the writer thread ------------------------------------------------------------------

    def _run(self) -> None:
        lines = self._lines
        while True:
            if not lines and not self._closing:
                self._sleep_until_a_line()
            self._wake.wait(self.interval)  # the lines of one interval go out in one write
            closing = self._closing  # read before draining: what was queued before close() goes out
            if lines:
                self._write_lines()
            self.drop_report.report(self.dropped, self._broken)
            if closing and not lines:
                return

    def _sleep_until_a_line(self) -> None:
        """Sleep until a caller queues a line or close() is called; no periodic wake-up,
        except to tell of drops not told yet (held back by the warning interval)."""
        self._line.clear()
        self._idle = True
        if self._lines or self._closing:  # queued before the flag was seen: no wake-up will come
            self._idle = False
            return
        self._line.wait(self._drops_due_in())
        self._idle = False

    def _drops_due_in(self) -> float | None:
        """Seconds until the drops not told yet can be told (None: nothing to tell)."""
        return self.drop_report.due_in(self.dropped, self._broken)

    def _write_lines(self) -> None:
        lines = self._lines
        while lines:
            batch, size = [], 0
            while lines and size < BATCH:
                line = lines.popleft()
                batch.append(line)
                size += len(line) + 1
            data = ("\n".join(batch) + "\n").encode("utf-8", "backslashreplace")
            if not self._write_all(data):
                self._dropped_lost += len(batch)
            self._taken += size

    def _write_all(self, data: bytes) -> bool:
        view = memoryview(data)
        while view:
            try:
                n = os.write(self.fd, view)
            except BlockingIOError:
                # Somebody else made the shared fd non-blocking: wait here, in this thread.
                select.select([], [self.fd], [], 1.0)
                continue
            except OSError:  # closed, broken pipe: nothing can be written there any more
                self._broken = True
                return False
            view = view[n:]
        self._broken = False
        return True


class LogWriterHandler(logging.Handler):
    """A logging handler that formats a record and hands the line to a ``LogWriter``."""

    def __init__(self, writer: LogWriter):
        super().__init__()
        self.writer = writer

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:
            self.handleError(record)
            return
        self.writer.write(line)

    def close(self) -> None:
        # logging.shutdown (at exit) closes handlers: what is buffered goes out, in bounded time.
        self.writer.close()
        super().close()


def stream_fd(stream, default: int) -> int:
    """The fd under ``stream`` (sys.stdout, sys.stderr), or ``default`` when it has none."""
    try:
        return stream.fileno()
    except (AttributeError, OSError, ValueError):
        return default
