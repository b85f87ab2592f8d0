"""LoopLogWriter: the access log written by the event loop, never waiting, never touching stdout's flags.

Real pipes, sockets and files with a running event loop: a stalled reader costs
dropped (and counted) lines, never a blocked loop; lines arrive whole and in
order, in batches; the shared file description keeps its blocking flag; a file
keeps one offset with the other writers of the same fd; the access log runs no
thread of its own.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
import threading
import time

import pytest

from gateway.accesslog import AccessLog
from gateway.loopwriter import FileTarget, LoopLogWriter, NowaitTarget, ReopenedTarget, open_target
from polling import eventually, wait_until


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


def read_available(fd: int) -> bytes:
    """What can be read from ``fd`` now (the test's own read end, made non-blocking)."""
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


async def write_lines(writer: LoopLogWriter, n: int, pad: int = 200) -> int:
    """Write ``n`` lines as requests would: from the loop, with the loop turning in between."""
    accepted = 0
    for i in range(n):
        accepted += writer.write(line(i, pad))
        if i % 50 == 0:
            await asyncio.sleep(0)
    return accepted


def parse(data: bytes) -> list[int]:
    assert data.endswith(b"\n")
    return [json.loads(x)["n"] for x in data.decode().splitlines()]  # a torn line would not parse


async def test_a_stalled_pipe_costs_dropped_lines_never_a_blocked_loop(pipe):
    r, w = pipe
    drops: list[int] = []
    writer = LoopLogWriter(open_target(w), "test", on_drops=drops.append, max_buffer=32 << 10, interval=0.01,
                           warning_interval=0.0)
    ticks = 0

    async def ticker():  # the loop keeps turning while the pipe is full
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.005)

    tick_task = asyncio.create_task(ticker())
    try:
        n = 2000  # ~420 KB: far more than the pipe (64 KB) and the buffer (32 KB) hold
        started = time.monotonic()
        accepted = await write_lines(writer, n)
        await asyncio.sleep(0.1)  # batches are due: the pipe is full, nobody reads
        assert time.monotonic() - started < 5, "the loop waited for the reader"
        assert ticks > 5
        assert writer.dropped == n - accepted > 0
        assert writer.buffered <= 32 << 10  # bounded, whatever the stream does
        assert os.get_blocking(w), "stdout's file description was made non-blocking"

        # The reader drains: every accepted line arrives whole and in order, and the drops are told.
        data = b""

        def drained() -> bool:
            nonlocal data
            data += read_available(r)
            return writer.buffered == 0 and sum(drops) == writer.dropped

        await eventually(drained, what="the buffer written out and the drops told")
        data += read_available(r)
        numbers = parse(data)
        assert len(numbers) == accepted
        assert numbers == sorted(numbers) and numbers[0] == 0
        assert await writer.aclose(timeout=5)
    finally:
        tick_task.cancel()


async def test_lines_go_out_in_batches_not_one_write_per_line(pipe):
    r, w = pipe
    target = open_target(w)
    writes: list[int] = []
    real_write = target.write

    def counting_write(data):
        n = real_write(data)
        writes.append(n)
        return n

    target.write = counting_write
    writer = LoopLogWriter(target, "test", interval=0.05)
    for i in range(100):
        writer.write(line(i, pad=10))
    await eventually(lambda: writer.buffered == 0, what="the batch written")
    assert parse(read_available(r)) == list(range(100))
    assert len(writes) == 1, writes
    await writer.aclose()


async def test_a_regular_file_is_written_at_the_offset_the_other_writers_share(tmp_path):
    # stdout and stderr often share one description of a file (`> log 2>&1`): the
    # access log must write through it, not through a second offset that overwrites.
    path = tmp_path / "out.log"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        target = open_target(fd)
        assert isinstance(target, FileTarget)
        writer = LoopLogWriter(target, "test", interval=0.01)
        os.write(fd, b"before\n")
        for i in range(3):
            writer.write(line(i, pad=5))
        await eventually(lambda: writer.buffered == 0, what="the batch written")
        os.write(fd, b"after\n")
        assert await writer.aclose()
    finally:
        os.close(fd)
    rows = path.read_bytes().splitlines()
    assert rows[0] == b"before" and rows[-1] == b"after"
    assert [json.loads(x)["n"] for x in rows[1:-1]] == [0, 1, 2]


async def test_a_socket_is_written_without_waiting_and_keeps_its_flags():
    a, b = socket.socketpair()
    try:
        a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        writer = LoopLogWriter(open_target(a.fileno()), "test", max_buffer=32 << 10, interval=0.01)
        accepted = await write_lines(writer, 2000)
        await asyncio.sleep(0.1)
        assert writer.dropped == 2000 - accepted > 0
        assert a.getblocking() and os.get_blocking(a.fileno())
        b.setblocking(False)
        data = b""

        def drained() -> bool:
            nonlocal data
            try:
                while True:
                    data += b.recv(1 << 16)
            except BlockingIOError:
                pass
            return writer.buffered == 0

        await eventually(drained, what="the buffer written out")
        await asyncio.sleep(0.05)
        drained()
        assert parse(data) == sorted(parse(data)) and len(parse(data)) == accepted
        await writer.aclose()
    finally:
        a.close()
        b.close()


async def test_aclose_writes_what_is_buffered_and_gives_up_in_bounded_time_when_nobody_reads(pipe):
    r, w = pipe
    writer = LoopLogWriter(open_target(w), "test", interval=10.0)  # nothing written before close
    for i in range(10):
        writer.write(line(i))
    assert await writer.aclose(timeout=5)
    assert parse(read_available(r)) == list(range(10))

    stalled = LoopLogWriter(open_target(w), "stalled", max_buffer=1 << 20, interval=0.01)
    accepted = await write_lines(stalled, 3000)  # more than the pipe holds
    started = time.monotonic()
    assert await stalled.aclose(timeout=0.3) is False
    assert time.monotonic() - started < 3
    assert stalled.write("after close") is False
    assert stalled.dropped > 3000 - accepted  # what could not be written is counted as lost


async def test_close_without_a_loop_writes_what_the_loop_left(pipe):
    r, w = pipe
    writer = LoopLogWriter(open_target(w), "test", interval=10.0)

    async def requests():
        for i in range(5):
            writer.write(line(i))

    await asyncio.create_task(requests())
    # As at exit, after the loop stopped: the synchronous close writes the batch.
    assert await asyncio.to_thread(writer.close, 5)
    assert parse(read_available(r)) == list(range(5))


async def test_a_closed_reader_counts_lost_lines_and_stays_quiet(pipe):
    r, w = pipe
    os.close(r)
    drops: list[int] = []
    writer = LoopLogWriter(open_target(w), "test", on_drops=drops.append, interval=0.01, warning_interval=0.0)
    for i in range(5):
        writer.write(line(i))
    await eventually(lambda: writer.dropped == 5, what="the lines counted as lost")
    assert not drops  # nowhere to say it: the counter does
    await writer.aclose(timeout=1)


def test_each_kind_of_stdout_gets_a_write_that_never_waits(pipe, tmp_path):
    r, w = pipe
    assert isinstance(open_target(w), (NowaitTarget, ReopenedTarget))
    assert os.get_blocking(w)
    with open(tmp_path / "f", "wb") as f:
        assert isinstance(open_target(f.fileno()), FileTarget)
    fd = os.open(os.devnull, os.O_WRONLY)  # a character device: opened again, non-blocking, its own description
    try:
        target = open_target(fd)
        assert isinstance(target, ReopenedTarget) and target.fd != fd
        assert not os.get_blocking(target.fd) and os.get_blocking(fd)
        target.close()
    finally:
        os.close(fd)
    closed = os.dup(w)
    os.close(closed)
    assert open_target(closed) is None  # the caller falls back to the writer thread


async def test_the_access_log_writes_from_the_event_loop_without_a_thread(pipe, monkeypatch):
    # A writer thread sharing the GIL with the event loop cost more than the lines
    # themselves (docs/metrics.md, "Access log"): the access log must not start one.
    r, w = pipe

    class Stdout:  # what the access log needs of sys.stdout: its fd
        def fileno(self):
            return w

    monkeypatch.setattr(sys, "stdout", Stdout())
    threads = threading.active_count()
    log = AccessLog()
    assert isinstance(log.writer, LoopLogWriter)
    assert threading.active_count() == threads
    await log.aclose()
    assert wait_until(lambda: threading.active_count() == threads)


async def test_lines_past_the_buffers_first_size_and_non_ascii_text_come_out_whole_batch_after_batch(tmp_path):
    # The batch's buffer starts at 64 KiB and grows (a line bigger than that, a batch of many);
    # the buffer of a batch written is used again for a later one.
    path = tmp_path / "log"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    writer = LoopLogWriter(open_target(fd), "test", interval=0.01)
    expected = []
    for batch in range(3):
        for i in range(400):
            n = batch * 1000 + i
            text = line(n, pad=100_000 if i == 7 else 300)
            if i == 9:
                text = json.dumps({"n": n, "x": "h\u00e9 \u2603"}, ensure_ascii=False)
            assert writer.write(text)
            expected.append(n)
        await eventually(lambda: writer.buffered == 0, what=f"batch {batch} written")
    await writer.aclose()
    os.close(fd)
    data = path.read_bytes()
    assert parse(data) == expected
    assert "h\u00e9 \u2603".encode() in data  # UTF-8, as given
