"""Running h2load (nghttp2's HTTP/2 load generator) and reading its results.

h2load prints a summary (requests/s, succeeded/failed/errored/timeout counts,
status classes) but no latency percentiles; with ``--log-file`` it writes one
line per request (start time, status, latency in microseconds), from which the
percentiles are taken. The result is a ``WrkResult`` (bench/wrk.py) so that
HTTP/2 runs go through the same report, pairing and table as wrk's.

``http://`` URLs are cleartext HTTP/2 with prior knowledge (h2c), ``https://``
negotiates h2 by ALPN: the two client sides the gateway offers.
"""

from __future__ import annotations

import math
import re
import subprocess
from dataclasses import dataclass, field, replace
from pathlib import Path

from .cpu import tree_cpu_seconds
from .wrk import PERCENTILES, WrkError, WrkResult

_FINISHED = re.compile(r"finished in ([\d.]+)(m?s), ([\d.]+) req/s")
_REQUESTS = re.compile(
    r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout"
)
_STATUS = re.compile(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx")
_PROTOCOL = re.compile(r"Application protocol: (\S+)")


def protocol(stdout: str) -> str:
    """The protocol h2load spoke ("h2", "h2c", "http/1.1"), "" if it never connected."""
    m = _PROTOCOL.search(stdout)
    return m.group(1) if m else ""


def percentile(sorted_values: list[int], p: float) -> float:
    """Nearest-rank percentile of an ascending list (0 for an empty one)."""
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(p * len(sorted_values) / 100 - 1e-9))  # 99.9 * 1000 / 100 is 999.0000000000001
    return float(sorted_values[min(rank, len(sorted_values)) - 1])


def parse_output(stdout: str, log_lines: list[str]) -> WrkResult:
    """The summary from h2load's stdout, latency percentiles from its ``--log-file`` lines."""
    finished, reqs, status = _FINISHED.search(stdout), _REQUESTS.search(stdout), _STATUS.search(stdout)
    if not (finished and reqs and status):
        raise WrkError(f"h2load printed no summary; output:\n{stdout[-2000:]}")
    seconds = float(finished.group(1)) / (1000 if finished.group(2) == "ms" else 1)
    done, succeeded, failed, errored, timeout = (int(reqs.group(i)) for i in (3, 4, 5, 6, 7))
    non2xx = sum(int(status.group(i)) for i in (2, 3, 4))
    latencies = []
    for line in log_lines:
        parts = line.split()
        if len(parts) >= 3 and parts[1].isdigit() and parts[2].isdigit():
            latencies.append(int(parts[2]))
    latencies.sort()
    latency = {f"p{p:g}": percentile(latencies, p) for p in PERCENTILES}
    mean = sum(latencies) / len(latencies) if latencies else 0.0
    stdev = math.sqrt(sum((v - mean) ** 2 for v in latencies) / len(latencies)) if latencies else 0.0
    latency.update(mean=round(mean, 1), stdev=round(stdev, 1), max=float(latencies[-1]) if latencies else 0.0)
    return WrkResult(
        requests=succeeded,
        duration_s=seconds,
        rps=succeeded / seconds if seconds > 0 else 0.0,
        latency_us=latency,
        # h2load's "failed" counts every request that did not succeed (errored and timed out among them).
        errors={"failed": max(0, failed - errored - timeout), "errored": errored, "timeout": timeout,
                "status": non2xx, "unfinished": max(0, done - succeeded - failed)},
        non2xx=non2xx,
    )


@dataclass
class H2loadRunner:
    h2load: str
    workdir: Path
    clients: int = 4  # connections
    streams: int = 100  # concurrent streams per connection (-m)
    threads: int = 1
    pin: list[str] = field(default_factory=list)
    _n: int = 0
    last_protocol: str = ""  # what the last run spoke: h2 over TLS can fall back to http/1.1 by ALPN
    last_output: str = ""

    def run(self, url: str, seconds: float, headers: dict[str, str] | None = None, data: Path | None = None,
            cpu_pid: int | None = None) -> WrkResult:
        """One timed run (``-D``); ``data`` makes every request a POST of that file's bytes."""
        self._n += 1
        log = self.workdir / f"h2load-{self._n}.log"
        secs = max(1, math.ceil(seconds))
        argv = [*self.pin, self.h2load, "-D", str(secs), "-c", str(self.clients), "-m", str(self.streams),
                "-t", str(self.threads), "--log-file", str(log)]
        for k, v in (headers or {}).items():
            argv += ["-H", f"{k}: {v}"]
        if data is not None:
            argv += ["-d", str(data)]
        argv.append(url)
        cpu_before = tree_cpu_seconds(cpu_pid) if cpu_pid is not None else None
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=secs + 60)
        except subprocess.TimeoutExpired:
            raise WrkError(f"h2load did not finish within {secs + 60}s") from None
        cpu_after = tree_cpu_seconds(cpu_pid) if cpu_before is not None else None
        try:
            lines = log.read_text().splitlines()
            log.unlink()
        except OSError:
            lines = []
        self.last_protocol, self.last_output = protocol(proc.stdout), proc.stdout + proc.stderr
        if proc.returncode != 0:
            raise WrkError(f"h2load exited with {proc.returncode}: {(proc.stderr or proc.stdout)[-2000:]}")
        result = parse_output(proc.stdout, lines)
        if cpu_before is not None and cpu_after is not None:
            result = replace(result, cpu_s=max(0.0, cpu_after - cpu_before))
        return result
