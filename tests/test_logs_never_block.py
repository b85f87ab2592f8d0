"""A log reader that stalls never stalls the proxy: lines are dropped and counted instead.

The real gateway runs with the access log on and stdout and stderr pipes that
the test does not read (a log collector that stopped). Before, the access
log's flush blocked the event loop once the pipe was full: a few hundred
requests were answered, then none. Now every request is answered,
``crdgate_access_log_dropped_total`` counts the lines that did not fit, and
what did get through is whole JSON lines; once the pipe is read again, the
process log says how many were dropped.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from proxyharness import free_port, read_response

ROOT = Path(__file__).resolve().parent.parent
CONNECTIONS = 10
PER_CONNECTION = 300  # 3,000 requests; their access log lines are ~10x what the pipe and buffer hold
BUFFER = 64 << 10


def scrape(admin: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=5) as r:
        text = r.read().decode()
    out = {}
    for row in text.splitlines():
        if row.startswith("crdgate_") and " " in row:
            name, _, value = row.rpartition(" ")
            out[name] = float(value)
    return out


def wait_ready(proc: subprocess.Popen, admin: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"crdgate exited with {proc.returncode}"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{admin}/readyz", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise TimeoutError("crdgate not ready")


async def keepalive_client(port: int, n: int, answered: list[int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for i in range(n):
            writer.write(f"GET /nothing/{i} HTTP/1.1\r\nHost: logs.test\r\n\r\n".encode())
            response = await read_response(reader)
            assert response.status == 404  # no route: answered by the proxy itself, and logged
            answered[0] += 1
    finally:
        writer.close()


def read_to_end(proc: subprocess.Popen, timeout: float) -> tuple[bytes, bytes]:
    """Both pipes until the process exits (read in threads: either may be the one that is full)."""
    chunks: dict[str, bytes] = {}

    def drain(name, stream):
        chunks[name] = stream.read()

    threads = [threading.Thread(target=drain, args=(n, s), daemon=True)
               for n, s in (("out", proc.stdout), ("err", proc.stderr))]
    for t in threads:
        t.start()
    proc.send_signal(signal.SIGTERM)
    for t in threads:
        t.join(timeout)
    assert not any(t.is_alive() for t in threads), "crdgate did not exit after SIGTERM"
    return chunks["out"], chunks["err"]


def test_a_stdout_nobody_reads_never_stalls_the_proxy(tmp_path):
    port, admin = free_port(), free_port()
    args = [
        sys.executable, "-m", "crdgate", "run", "--manifests", str(tmp_path),
        "--listen", f"127.0.0.1:{port}", "--admin-listen", f"127.0.0.1:{admin}",
        "--log-format", "json", "--access-log", "on", "--log-buffer-bytes", str(BUFFER),
        "--drain-seconds", "0", "--shutdown-timeout", "2",
    ]
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_ready(proc, admin)
        answered = [0]

        async def drive():
            await asyncio.gather(*(keepalive_client(port, PER_CONNECTION, answered) for _ in range(CONNECTIONS)))

        total = CONNECTIONS * PER_CONNECTION
        try:
            asyncio.run(asyncio.wait_for(drive(), 60))
        except asyncio.TimeoutError:
            raise AssertionError(f"the proxy stalled: {answered[0]} of {total} requests answered") from None
        assert answered[0] == total

        metrics = scrape(admin)
        dropped = metrics.get("crdgate_access_log_dropped_total")
        assert dropped is not None and dropped > 0, metrics
        assert metrics.get("crdgate_log_dropped_total") is not None
    finally:
        if proc.poll() is None:
            out, err = read_to_end(proc, 30)
        else:
            out, err = proc.communicate(timeout=10)

    # What got through is whole JSON lines, one per request that was not dropped.
    assert out.endswith(b"\n")
    lines = [json.loads(row) for row in out.decode().splitlines()]
    assert all(e["status"] == 404 and e["path"].startswith("/nothing/") for e in lines)
    assert len(lines) + dropped == total
    # The process log too is whole lines, and says what was lost once stdout was read again.
    records = [json.loads(row) for row in err.decode().splitlines()]
    assert any("access log" in r["message"] and "dropped" in r["message"] for r in records), records[-5:]


def test_the_process_log_on_a_stderr_nobody_reads_drops_lines_instead_of_blocking(monkeypatch):
    from gateway import metrics
    from crdgate.config import LogConfig
    from crdgate.logs import setup_logging

    r, w = os.pipe()

    class StalledStderr:  # what setup_logging needs of sys.stderr: its fd
        def fileno(self):
            return w

    root = logging.getLogger()
    saved = root.handlers[:], root.level
    monkeypatch.setattr(sys, "stderr", StalledStderr())
    try:
        setup_logging(LogConfig(format="json", level="info", buffer_bytes=8192))
        writer = metrics.LOG_DROPS.process
        log = logging.getLogger("crdgate.test")
        started = time.monotonic()
        for i in range(5000):  # ~500 KB: far more than the pipe and the buffer hold
            log.warning("line %d of a log nobody reads", i)
        assert time.monotonic() - started < 30, "logging waited for the reader"
        assert writer.dropped > 0
        os.set_blocking(r, False)
        data = b""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not (writer.buffered == 0 and b"log lines dropped" in data):
            try:
                data += os.read(r, 1 << 16)
            except BlockingIOError:
                time.sleep(0.01)
        records = [json.loads(row) for row in data.decode().splitlines()]  # whole lines only
        assert records[0]["message"] == "line 0 of a log nobody reads"
        assert any(rec["message"].endswith("(crdgate_log_dropped_total)") for rec in records)
    finally:
        for h in root.handlers:
            h.close()
        root.handlers[:], level = saved
        root.setLevel(level)
        os.close(r)
        os.close(w)
