"""An open-loop HTTP/1.1 load generator: requests at a fixed rate, latency from the schedule.

wrk (closed loop) sends the next request on a connection only when the last
one has been answered, so a server that stalls is simply sent less, and the
stall shows up in one sample instead of in every request that should have
been sent meanwhile ("coordinated omission"). Here request ``k`` is due at
``start + k / rate`` whatever happened before; it goes out on an idle
keep-alive connection as soon as it is due, or waits in a queue when every
connection is busy, and its latency is counted from the time it was due. That
is wrk2's model (``-R``). wrk2 is not packaged in Debian; Debian's ``hey -q``
caps each worker's rate but times from the actual send, and ``h2load --rate``
paces new connections, not requests. autocannon (npm) has ``--overallRate``
with ``-C/--correctCoordinatedOmission``, but it would make Node.js a
dependency of a harness that is Python, wrk and nginx, and was not evaluated;
hence this module.

The loop runs on non-blocking sockets: epoll says which connections have
answers, and the wait until the next request is due is a sleep on the epoll
descriptor with a microsecond timeout (epoll's and libuv's timers round to
milliseconds, which would add up to a millisecond of the generator's own lag to
every sample). It is written twice, the same loop: in C (bench/fixedrate.c,
built on first use with the host's C compiler and cached by its source's hash)
and in Python here, used where there is no compiler or with ``--python-loop``.
The C loop costs ~15 µs of CPU a request against the Python loop's ~21 (both
mostly the kernel's loopback TCP): on a two-CPU host the generator shares the
load CPU with the backend, and at the p99-fixed scenario's rate the Python loop
asked for more than that CPU had (bench/HISTORY.md, 2026-12-04 20:30). The JSON
says which loop ran (``generator``). How late the generator itself sent what it
could send at once is measured too (``send_lag_us``), and ``python -m
bench.fixedrate`` against the backend directly shows what the generator adds on
its own.

Run as ``python -m bench.fixedrate --port P --rate R --duration S [--path /x ...]
[--watch-cpu N]`` (pinned like wrk by bench/equalload.py); it prints one
``FIXEDRATE_JSON {...}`` line, read back by ``parse_output`` into the same
``WrkResult`` the wrk runs make, so the report handles both alike. With
``--watch-cpu`` the line also says how busy that CPU (the proxy's) was from the
first request to the last answer.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import deque
from dataclasses import dataclass, field, replace
from pathlib import Path

from .cpu import busy_share, cpu_jiffies, tree_cpu_seconds
from .wrk import PERCENTILES, WrkResult

MARK = "FIXEDRATE_JSON "
GRACE_S = 2.0  # after the last request is due, answers still awaited this long (then: timeouts)
MAX_RESPONSE = 1 << 20
# Latency histogram buckets are 1% wide on a log scale (HdrHistogram's idea with two significant
# digits): runs merge by adding counts, so percentiles over many runs come from every sample,
# not from each run's percentiles, in a few hundred numbers a run instead of every sample.
HIST_STEP = 0.01


def percentiles(samples_us: list[float]) -> dict[str, float]:
    """Nearest-rank p50/p90/p99/p99.9 plus mean, stdev and max (microseconds); zeros when empty."""
    out: dict[str, float] = {}
    if not samples_us:
        return {**{f"p{p:g}": 0.0 for p in PERCENTILES}, "mean": 0.0, "stdev": 0.0, "max": 0.0}
    ordered = sorted(samples_us)
    n = len(ordered)
    for p in PERCENTILES:
        out[f"p{p:g}"] = ordered[max(1, math.ceil(p * n / 100 - 1e-9)) - 1]  # 0.9 * 1000 is 900.0000000000001
    mean = sum(ordered) / n
    out["mean"] = mean
    out["stdev"] = math.sqrt(sum((x - mean) ** 2 for x in ordered) / n)
    out["max"] = ordered[-1]
    return out


def histogram(samples_us: list[float]) -> list[list[int]]:
    """``[[bucket, count], ...]`` in bucket order; bucket ``b`` holds latencies in
    ``(e^(b*step), e^((b+1)*step)]`` microseconds (below 1 µs: bucket 0)."""
    counts: dict[int, int] = {}
    step, log = HIST_STEP, math.log
    for x in samples_us:
        b = max(0, math.ceil(log(x) / step) - 1) if x > 1.0 else 0
        counts[b] = counts.get(b, 0) + 1
    return [[b, n] for b, n in sorted(counts.items())]


def pooled_percentiles(histograms: list[list[list[int]]]) -> dict[str, float]:
    """Percentiles (``p50``... as ``percentiles``) of every sample of several runs' ``histogram``s,
    plus ``samples``; each value is its bucket's upper edge: at most 1% above the sample."""
    counts: dict[int, int] = {}
    for hist in histograms:
        for b, n in hist:
            counts[b] = counts.get(b, 0) + n
    total = sum(counts.values())
    out: dict[str, float] = {"samples": float(total)}
    ordered = sorted(counts.items())
    for p in PERCENTILES:
        rank = max(1, math.ceil(p * total / 100 - 1e-9)) if total else 0
        seen, value = 0, 0.0
        for b, n in ordered:
            seen += n
            if seen >= rank:
                value = math.exp((b + 1) * HIST_STEP)
                break
        out[f"p{p:g}"] = value
    return out


def response_length(buf: bytes | bytearray) -> int:
    """Bytes of the first complete response in ``buf``, 0 while incomplete, -1 when unreadable.

    Content-Length and chunked bodies (the chunked end is found by its last-chunk
    marker, enough for the small bodies the benchmark's backends send)."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return 0 if len(buf) < MAX_RESPONSE else -1
    head = bytes(buf[:end]).lower()
    if not head.startswith(b"http/1."):
        return -1
    i = head.find(b"\r\ncontent-length:")
    if i >= 0:
        j = head.find(b"\r\n", i + 2)
        try:
            length = int(head[i + 17 : j if j >= 0 else len(head)])
        except ValueError:
            return -1
        total = end + 4 + length
        return total if len(buf) >= total else 0
    if b"\r\ntransfer-encoding:" in head and b"chunked" in head:
        k = buf.find(b"\r\n0\r\n\r\n", end)
        if k < 0:
            k = buf.find(b"0\r\n\r\n", end + 4, end + 9)  # an empty body: the last chunk first
            return k + 5 if k == end + 4 else 0
        return k + 7
    if head[9:12] in (b"204", b"304") or head[9:10] == b"1":
        return end + 4
    return -1  # a body delimited by close: not something a keep-alive benchmark can time


@dataclass
class _Conn:
    sock: socket.socket
    buf: bytearray = field(default_factory=bytearray)
    due: float = 0.0  # when the request in flight was due (perf_counter seconds)


@dataclass
class Outcome:
    """What one fixed-rate run measured (times in microseconds)."""

    rate: float
    duration_s: float
    scheduled: int
    completed: int
    latency_us: list[float]
    send_lag_us: list[float]  # sent at once on an idle connection: how late the generator was
    queued: int  # requests that found every connection busy and waited for one
    errors: dict[str, int]
    cpu_busy: float | None = None  # share of the run ``watch_cpu`` was busy (bench/cpu.py)
    generator: str = "python"  # which loop ran: "c" (bench/fixedrate.c) or "python"

    def to_json(self) -> dict:
        lag = percentiles(self.send_lag_us)
        return {
            "rate": self.rate, "duration_s": self.duration_s, "scheduled": self.scheduled,
            "completed": self.completed, "queued": self.queued, "errors": self.errors,
            "latency_us": percentiles(self.latency_us),
            "send_lag_us": {k: lag[k] for k in ("p50", "p99", "max")},
            "cpu_busy": self.cpu_busy,
            "histogram": histogram(self.latency_us),
            "generator": self.generator,
        }


NATIVE_SOURCE = Path(__file__).resolve().with_name("fixedrate.c")


def native_loop() -> Path | None:
    """The C loop's executable, built on first use (cached under the user's cache folder
    by the hash of its source); None where there is no C compiler or it fails to build."""
    cc = shutil.which(os.environ.get("CC") or "cc") or shutil.which("gcc")
    if cc is None or not NATIVE_SOURCE.exists():
        return None
    digest = hashlib.sha256(NATIVE_SOURCE.read_bytes()).hexdigest()[:16]
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "crdgate" / "bench"
    exe = cache / f"fixedrate-{digest}"
    if exe.exists():
        return exe
    try:
        cache.mkdir(parents=True, exist_ok=True)
        tmp = cache / f"fixedrate-{digest}.{os.getpid()}.tmp"
        built = subprocess.run([cc, "-O2", "-o", str(tmp), str(NATIVE_SOURCE)], capture_output=True, text=True,
                               timeout=120)
        if built.returncode != 0:
            print(f"bench.fixedrate: the C loop did not build, using the Python loop:\n{built.stderr[-2000:]}",
                  file=sys.stderr)
            return None
        os.replace(tmp, exe)  # whole or not at all: another run may be building it too
        for old in cache.glob("fixedrate-*"):  # builds of earlier sources
            if old != exe and not old.name.endswith(".tmp"):
                old.unlink(missing_ok=True)
    except (OSError, subprocess.TimeoutExpired) as exc:
        print(f"bench.fixedrate: the C loop did not build ({exc}), using the Python loop", file=sys.stderr)
        return None
    return exe


def run_native(exe: Path, port: int, rate: float, duration_s: float, paths: list[str], connections: int = 64,
               watch_cpu: int | None = None) -> Outcome:
    """``run``, by the C loop (requests to 127.0.0.1 only, no extra headers)."""
    with tempfile.NamedTemporaryFile("w", suffix=".paths") as f:
        f.write("\n".join(paths) + "\n")
        f.flush()
        busy_before = cpu_jiffies(watch_cpu) if watch_cpu is not None else None
        proc = subprocess.run([str(exe), str(port), f"{rate:.17g}", f"{duration_s:.17g}", str(connections),
                               f"{GRACE_S:g}", f.name], capture_output=True, text=True,
                              timeout=duration_s + GRACE_S + 60)
        busy_after = cpu_jiffies(watch_cpu) if busy_before is not None else None
    if proc.returncode != 0:
        raise FixedRateError(f"the C loop exited with {proc.returncode}: {proc.stderr[-2000:]}")
    lines = proc.stdout.splitlines()
    if len(lines) != 3 or not lines[0].startswith("counts ") or not lines[1].startswith("latency_us"):
        raise FixedRateError(f"unreadable output of the C loop: {proc.stdout[:500]!r}")
    total, completed, queued, *errs = (int(x) for x in lines[0].split()[1:])
    errors = dict(zip(("connect", "read", "write", "status", "timeout"), errs))
    latency = [float(x) for x in lines[1].split()[1:]]
    lag = [float(x) for x in lines[2].split()[1:]]
    if len(latency) != completed:
        raise FixedRateError(f"the C loop counted {completed} answers but gave {len(latency)} latencies")
    return Outcome(rate, duration_s, total, completed, latency, lag, queued, errors,
                   busy_share(busy_before, busy_after), generator="c")


def run(port: int, rate: float, duration_s: float, paths: list[str], connections: int = 64,
        host: str = "127.0.0.1", headers: dict[str, str] | None = None, watch_cpu: int | None = None) -> Outcome:
    """Send ``rate * duration_s`` GETs to ``host:port``, cycling over ``paths``, on schedule;
    ``watch_cpu``: a CPU whose busy share from the first request to the last answer is reported
    (the proxy's own, where its whole cost, the kernel's network work included, shows)."""
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    reqs = [f"GET {p} HTTP/1.1\r\nHost: {host}:{port}\r\n{extra}\r\n".encode("latin-1") for p in paths]
    total = max(1, int(rate * duration_s))
    errors = {"connect": 0, "read": 0, "write": 0, "status": 0, "timeout": 0}
    conns: dict[int, _Conn] = {}
    idle: list[_Conn] = []
    # Readiness from epoll (what is ready, not a scan of every connection per wake-up);
    # the sleep until the next request is due is a select() on the epoll descriptor,
    # whose timeout has the microsecond resolution epoll's own lacks.
    ep = select.epoll() if hasattr(select, "epoll") else None

    def connect() -> _Conn | None:
        try:
            s = socket.create_connection((host, port), timeout=5)
        except OSError:
            errors["connect"] += 1
            return None
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.setblocking(False)
        c = _Conn(s)
        conns[s.fileno()] = c
        if ep is not None:
            ep.register(s.fileno(), select.EPOLLIN)
        return c

    def wait_ready(timeout: float) -> list[int]:
        if ep is None:
            return select.select(list(busy), [], [], timeout)[0]
        ready = ep.poll(0)
        if not ready:
            select.select([ep.fileno()], [], [], timeout)
            ready = ep.poll(0)
        return [fd for fd, _ in ready]

    for _ in range(max(1, connections)):
        c = connect()
        if c is not None:
            idle.append(c)
    if not conns:
        if ep is not None:
            ep.close()
        return Outcome(rate, duration_s, total, 0, [], [], 0, errors)

    busy: dict[int, _Conn] = {}
    backlog: deque[tuple[int, float]] = deque()  # (request, due time) waiting for a connection
    latency: list[float] = []
    lag: list[float] = []
    queued = 0
    perf = time.perf_counter

    def send(c: _Conn, k: int, due: float) -> bool:
        try:
            sent = c.sock.send(reqs[k % len(reqs)])
        except OSError:
            sent = -1
        if sent != len(reqs[k % len(reqs)]):  # a small request into an empty socket buffer: all or broken
            errors["write"] += 1
            drop(c)
            return False
        c.due = due
        busy[c.sock.fileno()] = c
        return True

    def drop(c: _Conn) -> None:
        conns.pop(c.sock.fileno(), None)
        busy.pop(c.sock.fileno(), None)
        c.sock.close()

    def next_connection() -> _Conn | None:
        if idle:
            return idle.pop()
        if len(conns) < connections:  # the server closed some: open a replacement
            return connect()
        return None

    busy_before = cpu_jiffies(watch_cpu) if watch_cpu is not None else None
    start = perf()
    stop_at = start + duration_s + GRACE_S
    issued = 0
    while True:
        now = perf()
        while issued < total and start + issued / rate <= now:
            due = start + issued / rate
            c = next_connection()
            if c is not None and send(c, issued, due):
                lag.append((perf() - due) * 1e6)
            else:
                backlog.append((issued, due))
                queued += 1
            issued += 1
        if issued >= total and not busy and not backlog:
            break
        if now >= stop_at:
            break
        wait = (start + issued / rate - now) if issued < total else stop_at - now
        for fd in wait_ready(max(0.0, min(wait, 0.05))):
            c = busy.get(fd)
            if c is None:
                c = conns.get(fd)
                if c is not None:  # readable while idle: the server closed it
                    if c in idle:
                        idle.remove(c)
                    drop(c)
                continue
            try:
                data = c.sock.recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data:
                errors["read"] += 1
                drop(c)
                continue
            c.buf += data
            n = response_length(c.buf)
            if n == 0:
                continue
            done = perf()
            if n < 0:
                errors["read"] += 1
                drop(c)
                continue
            if not c.buf.startswith(b"HTTP/1.1 2") and not c.buf.startswith(b"HTTP/1.0 2"):
                errors["status"] += 1
            latency.append((done - c.due) * 1e6)
            closing = b"\r\nconnection: close" in bytes(c.buf[:n]).lower()
            del c.buf[:n]
            del busy[fd]
            if closing:
                drop(c)
                c = next_connection()
            if backlog and c is not None:
                if send(c, *backlog[0]):
                    backlog.popleft()
            elif c is not None:
                idle.append(c)
        while backlog and (idle or len(conns) < connections):
            c = next_connection()
            if c is None or not send(c, *backlog[0]):
                break
            backlog.popleft()
    busy_after = cpu_jiffies(watch_cpu) if busy_before is not None else None
    errors["timeout"] += len(busy) + len(backlog) + (total - issued)
    for c in list(conns.values()):
        c.sock.close()
    if ep is not None:
        ep.close()
    return Outcome(rate, duration_s, total, len(latency), latency, lag, queued, errors,
                   busy_share(busy_before, busy_after))


def to_wrk_result(raw: dict) -> WrkResult:
    """The JSON line's figures as a ``WrkResult`` (what the report reads for every run)."""
    lat = raw["latency_us"]
    return WrkResult(
        requests=raw["completed"],
        duration_s=raw["duration_s"],
        rps=raw["completed"] / raw["duration_s"] if raw["duration_s"] else 0.0,
        latency_us={k: float(lat[k]) for k in ("mean", "stdev", "max", *(f"p{p:g}" for p in PERCENTILES))},
        errors={k: int(v) for k, v in raw["errors"].items()},
    )


class FixedRateError(RuntimeError):
    pass


def parse_output(stdout: str) -> tuple[WrkResult, dict]:
    """The ``FIXEDRATE_JSON`` line: (the run as a WrkResult, the raw figures with rate, lag, queue)."""
    for line in stdout.splitlines():
        if line.startswith(MARK):
            try:
                raw = json.loads(line[len(MARK):])
                return to_wrk_result(raw), raw
            except (ValueError, KeyError, TypeError) as exc:
                raise FixedRateError(f"unreadable {MARK.strip()} line: {exc}") from None
    raise FixedRateError(f"the fixed-rate generator printed no {MARK.strip()} line; output:\n{stdout[-2000:]}")


@dataclass
class FixedRateRunner:
    """Runs the generator as a child process (pinned like wrk, off the proxy's CPU)."""

    workdir: Path
    connections: int = 64
    pin: list[str] = field(default_factory=list)
    watch_cpu: int | None = None  # the proxy's CPU: its busy share per run goes into the raw figures
    python_loop: bool = False  # the Python loop even where the C one builds
    _n: int = 0

    def prepare(self, paths: list[str]) -> Path:
        self._n += 1
        path = self.workdir / f"fixedrate-paths-{self._n}.txt"
        path.write_text("\n".join(paths) + "\n")
        return path

    def run(self, port: int, rate: float, seconds: float, paths_file: Path,
            cpu_pid: int | None = None) -> tuple[WrkResult, dict]:
        argv = [*self.pin, sys.executable, "-m", "bench.fixedrate", "--port", str(port), "--rate", f"{rate:g}",
                "--duration", f"{seconds:g}", "--connections", str(self.connections), "--paths-file", str(paths_file)]
        if self.watch_cpu is not None:
            argv += ["--watch-cpu", str(self.watch_cpu)]
        if self.python_loop:
            argv.append("--python-loop")
        cpu_before = tree_cpu_seconds(cpu_pid) if cpu_pid is not None else None
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + GRACE_S + 60,
                                  cwd=str(Path(__file__).resolve().parent.parent))
        except subprocess.TimeoutExpired:
            raise FixedRateError(f"the fixed-rate generator did not finish within {seconds + GRACE_S + 60:.0f}s") from None
        cpu_after = tree_cpu_seconds(cpu_pid) if cpu_before is not None else None
        if proc.returncode != 0:
            raise FixedRateError(f"the fixed-rate generator exited with {proc.returncode}: "
                                 f"{(proc.stderr or proc.stdout)[-2000:]}")
        result, raw = parse_output(proc.stdout)
        if cpu_before is not None and cpu_after is not None:
            result = replace(result, cpu_s=max(0.0, cpu_after - cpu_before))
        return result, raw


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.fixedrate",
                                description="Open-loop HTTP/1.1 GETs at a fixed rate to 127.0.0.1; latency "
                                            "from each request's scheduled time (coordinated omission corrected).")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--rate", type=float, required=True, help="requests per second")
    p.add_argument("--duration", type=float, default=5.0, help="seconds of scheduled requests")
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--path", action="append", help="request path (repeatable; default /)")
    p.add_argument("--paths-file", help="one request path a line, cycled")
    p.add_argument("--watch-cpu", type=int, help="report how busy this CPU was during the run (cpu_busy, 0..1)")
    p.add_argument("--python-loop", action="store_true",
                   help="run the Python loop even where the C loop (bench/fixedrate.c) builds")
    args = p.parse_args(argv)
    if args.rate <= 0 or args.duration <= 0 or args.connections < 1:
        p.error("--rate and --duration must be positive and --connections at least 1")
    paths = list(args.path or [])
    if args.paths_file:
        paths += [line for line in Path(args.paths_file).read_text().splitlines() if line]
    exe = native_loop() if not args.python_loop and args.host == "127.0.0.1" else None
    if exe is not None:
        outcome = run_native(exe, args.port, args.rate, args.duration, paths or ["/"], args.connections,
                             watch_cpu=args.watch_cpu)
    else:
        outcome = run(args.port, args.rate, args.duration, paths or ["/"], args.connections, args.host,
                      watch_cpu=args.watch_cpu)
    print(MARK + json.dumps(outcome.to_json()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
