"""LogWriter: a stalled reader costs dropped (and counted) lines, never a blocked caller.

Real pipes, no event loop: the writer's promises are about memory (bounded),
lines (whole, in order, never torn) and time (``write`` returns at once; ``close``
returns within its timeout even when nobody reads).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time

import pytest

from gateway.logwriter import LogWriter, LogWriterHandler
from polling import wait_until
from wakeups import needs_proc, thread_switches


@pytest.fixture
def pipe():
    r, w = os.pipe()
    yield r, w
    for fd in (r, w):
        try:
            os.close(fd)
        except OSError:
            pass


def line(i: int, pad: int = 200) -> str:
    return json.dumps({"n": i, "pad": "x" * pad})


@pytest.mark.parametrize("one_producer", [False, True], ids=["locked", "one-producer"])
def test_a_stalled_reader_costs_dropped_lines_never_a_blocked_writer(pipe, one_producer):
    # one_producer: the access log's lock-free path (only the event loop writes) keeps the same promises.
    r, w = pipe
    drops: list[int] = []
    writer = LogWriter(w, "test", on_drops=drops.append, max_buffer=32 << 10, interval=0.01, warning_interval=0.0,
                       one_producer=one_producer)
    n = 2000  # ~420 KB: far more than the pipe (64 KB) and the buffer (32 KB) hold
    started = time.monotonic()
    accepted = sum(writer.write(line(i)) for i in range(n))
    assert time.monotonic() - started < 5, "write() waited for the reader"
    assert writer.dropped == n - accepted > 0
    assert writer.buffered <= 32 << 10  # bounded, whatever the thread is doing

    # The reader drains: every accepted line arrives whole and in order, and the drops are told.
    got: list[dict] = []
    buf = b""
    os.set_blocking(r, False)

    def drained() -> bool:
        nonlocal buf
        try:
            buf += os.read(r, 1 << 16)
        except BlockingIOError:
            pass
        return writer.buffered == 0 and sum(drops) == writer.dropped

    assert wait_until(drained)
    while True:  # what the writer wrote before its buffer emptied may still sit in the pipe
        try:
            chunk = os.read(r, 1 << 16)
        except BlockingIOError:
            break
        if not chunk:
            break
        buf += chunk
    assert buf.endswith(b"\n")
    got = [json.loads(x) for x in buf.decode().splitlines()]  # a torn line would not parse
    assert len(got) == accepted
    numbers = [g["n"] for g in got]
    assert numbers == sorted(numbers) and numbers[0] == 0
    assert writer.close(timeout=5)


def test_drops_are_told_at_most_once_per_interval(pipe):
    r, w = pipe
    drops: list[int] = []
    writer = LogWriter(w, "test", on_drops=drops.append, max_buffer=8 << 10, interval=0.01, warning_interval=3600)
    os.set_blocking(r, False)
    for _ in range(2):  # two stalls, each drained
        for i in range(2000):
            writer.write(line(i))
        assert wait_until(lambda: (read_all_available(r), writer.buffered == 0 and bool(drops))[1])
    assert len(drops) == 1 and 0 < drops[0] < writer.dropped
    writer.close(timeout=5)


def test_lines_are_written_in_batches_not_one_write_per_line(pipe, monkeypatch):
    r, w = pipe
    writes: list[int] = []
    real_write = os.write

    def counting_write(fd, data):
        if fd == w:
            writes.append(len(data))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", counting_write)
    writer = LogWriter(w, "test", interval=0.2)
    for i in range(100):
        writer.write(line(i, pad=10))
    assert writer.close(timeout=5)
    data = read_all_available(r)
    assert len(data.splitlines()) == 100
    assert len(writes) < 10, writes


def read_all_available(fd: int) -> bytes:
    os.set_blocking(fd, False)
    out = b""
    while True:
        try:
            chunk = os.read(fd, 1 << 16)
        except BlockingIOError:
            return out
        if not chunk:
            return out
        out += chunk


def test_close_writes_what_is_buffered_and_returns_in_bounded_time_when_nobody_reads(pipe):
    r, w = pipe
    writer = LogWriter(w, "test", max_buffer=1 << 20, interval=10.0)  # nothing written before close
    for i in range(10):
        writer.write(line(i))
    assert writer.close(timeout=5)
    assert len(read_all_available(r).splitlines()) == 10

    stalled = LogWriter(os.dup(w), "stalled", max_buffer=1 << 20, interval=0.01)
    for i in range(3000):  # more than the pipe holds: the thread blocks in write
        stalled.write(line(i))
    started = time.monotonic()
    assert stalled.close(timeout=0.5) is False
    assert time.monotonic() - started < 3
    assert stalled.write("after close") is False


def test_a_closed_reader_counts_lost_lines_and_stays_quiet(pipe):
    r, w = pipe
    os.close(r)
    drops: list[int] = []
    writer = LogWriter(w, "test", on_drops=drops.append, interval=0.01, warning_interval=0.0)
    for i in range(5):
        writer.write(line(i))
    assert wait_until(lambda: writer.dropped == 5)
    assert not drops  # nowhere to say it: the counter does
    writer.close(timeout=1)


def test_the_logging_handler_sends_whole_records_through_the_writer(pipe):
    r, w = pipe
    writer = LogWriter(w, "test", interval=0.01)
    handler = LogWriterHandler(writer)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger = logging.getLogger("crdgate.test.logwriter")
    logger.propagate = False
    logger.addHandler(handler)
    try:
        logger.warning("first")
        try:
            raise ValueError("boom")
        except ValueError:
            logger.exception("with a traceback")
    finally:
        logger.removeHandler(handler)
    handler.close()
    text = read_all_available(r).decode()
    assert text.startswith("WARNING first\nERROR with a traceback\nTraceback")
    assert text.endswith("ValueError: boom\n")


@needs_proc
def test_an_idle_writer_thread_sleeps_until_a_line_comes(pipe):
    # A thread that woke every interval with nothing to write took the GIL (and, the
    # gateway pinned to one CPU, the CPU) from the proxy's event loop each time.
    r, w = pipe
    writer = LogWriter(w, "test", interval=0.01)
    tid = writer._thread.native_id
    writer.write("first")
    assert wait_until(lambda: read_all_available(r) == b"first\n")
    time.sleep(0.05)  # back asleep
    before = thread_switches()[tid][1]
    time.sleep(0.5)  # fifty intervals
    assert thread_switches()[tid][1] - before < 5
    writer.write("second")  # wakes it
    assert wait_until(lambda: read_all_available(r) == b"second\n")
    assert writer.close(timeout=5)


def test_drops_held_back_by_the_warning_interval_are_told_without_a_new_line(pipe):
    r, w = pipe
    drops: list[int] = []
    writer = LogWriter(w, "test", on_drops=drops.append, max_buffer=8 << 10, interval=0.01, warning_interval=0.3)
    os.set_blocking(r, False)
    for _ in range(2):  # the second stall ends within the warning interval of the first one's report
        for i in range(2000):
            writer.write(line(i))
        assert wait_until(lambda: (read_all_available(r), writer.buffered == 0 and bool(drops))[1])
    assert wait_until(lambda: len(drops) == 2)  # told once the interval is over, with the thread idle
    assert sum(drops) == writer.dropped
    writer.close(timeout=5)


def test_the_drop_warning_written_to_the_same_full_writer_is_kept(pipe):
    # The process log tells of its own drops through itself (crdgate/logs.py). When the
    # report comes while callers still hold the buffer full, the warning must still go
    # out: dropped, the loss would stay untold for a whole warning interval.
    r, w = pipe
    told: list[bool] = []
    full = threading.Event()

    def flood() -> None:  # another thread's callers, filling the buffer to its last character
        while writer.write(line(0)):
            pass
        while writer.write(""):  # one character each: its newline
            pass
        full.set()

    def warn(lost: int) -> None:  # on the writer thread, like crdgate/logs.py's warning
        full.clear()
        threading.Thread(target=flood).start()
        assert full.wait(5)
        told.append(writer.write(json.dumps({"warning": f"{lost} lines dropped"})))

    writer = LogWriter(w, "test", on_drops=warn, max_buffer=8 << 10, interval=0.01, warning_interval=3600)
    for i in range(2000):
        writer.write(line(i))
    out = b""

    def drained() -> bool:
        nonlocal out
        out += read_all_available(r)
        return writer.buffered == 0 and b'"warning"' in out

    assert wait_until(drained)
    assert told == [True]
    records = [json.loads(x) for x in out.decode().splitlines() if x]  # whole lines (the flood's are empty)
    assert records[-1]["warning"].endswith("lines dropped")
    # A caller's line is still refused when the buffer is full: only the writer thread's own goes over.
    flood()
    assert writer.buffered == 8 << 10
    writer.close(timeout=5)
