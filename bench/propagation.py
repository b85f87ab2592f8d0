"""Scenario 7, propagation: from a manifest written to the first request it routes.

For each table size of the ladder (10, 1,000, --routes) a crdgate starts on
that many filler routes; then, ``--propagation-samples`` times, a new
APIEndpoint with a unique path (to backend 1, while the filler goes to backend
0) is written atomically, and the path is polled over one keep-alive
connection until it answers 200 from backend 1. The time from just before the
write to that answer is one sample. Polls are 1 ms apart, so the resolution is
about a millisecond plus one request. p99 is nearest-rank: with 20 samples it
is the slowest one. No wrk is needed.
"""

from __future__ import annotations

import random
import secrets
import time

from . import manifests
from .client import Client
from .gateway import GatewayError
from .scenarios import Context, Result, preflight
from .stats import percentile

SAMPLE_TIMEOUT_S = 30.0
POLL_INTERVAL_S = 0.001


def wait_routed(client: Client, path: str, identity: int, timeout: float) -> tuple[bool, str]:
    deadline = time.perf_counter() + timeout
    want = f"backend-{identity} "
    last = ""
    while time.perf_counter() < deadline:
        status, body = client.get(path)
        if status == 200 and body.startswith(want):
            return True, ""
        last = f"{status} {body.strip()[:120]!r}"
        time.sleep(POLL_INTERVAL_S)
    return False, last


def measure_size(ctx: Context, size: int) -> dict:
    s = ctx.settings
    folder = ctx.folder(f"propagation-{size}")
    mdir = folder / "manifests"
    manifests.write_filler(mdir, size, ctx.backend.url)
    ctx.progress.update(f"propagation: starting crdgate with {size:,} routes")
    out: dict = {"routes": size}
    gw = ctx.start_gateway(f"propagation-{size}", folder)  # GatewayError goes to the caller
    client = Client(gw.port, timeout=2.0)
    try:
        out["ready_after_s"] = round(gw.ready_after_s, 3)
        problem = preflight(gw, [manifests.filler_path(size - 1)], {})
        if problem:
            out["error"] = problem
            return out
        rng = random.Random(size)
        samples: list[float] = []
        timeouts: list[str] = []
        for n in range(s.propagation_samples):
            ctx.progress.update(f"propagation: {size:,} routes, change {n + 1}/{s.propagation_samples}")
            path = f"/prop/{size}-{n}-{secrets.token_hex(4)}"
            doc = manifests.api_endpoint(f"prop-{n}", path, ctx.backend.url_of(1), pathType="Exact")
            t0 = time.perf_counter()
            manifests.write(mdir / f"prop-{n}.yaml", [doc])
            ok, last = wait_routed(client, path, 1, SAMPLE_TIMEOUT_S)
            if ok:
                samples.append((time.perf_counter() - t0) * 1000)
            else:
                timeouts.append(f"{path}: last answer {last}")
            gw.check_alive()
            time.sleep(rng.uniform(0.05, 0.25))  # do not fall into step with a debounce period
        out.update(
            samples_ms=[round(x, 2) for x in samples],
            p50_ms=percentile(samples, 50),
            p99_ms=percentile(samples, 99),
            max_ms=max(samples) if samples else None,
            timeouts=len(timeouts),
        )
        if timeouts:
            out["error"] = f"{len(timeouts)} changes never routed within {SAMPLE_TIMEOUT_S:g}s (e.g. {timeouts[0]})"
        return out
    finally:
        client.close()
        gw.stop()


def run_propagation(ctx: Context) -> Result:
    s = ctx.settings
    result = Result("propagation", "propagation", "propagation: manifest write -> first request routed")
    sizes = []
    errors = []
    for size in s.ladder:
        try:
            entry = measure_size(ctx, size)
        except GatewayError as exc:
            entry = {"routes": size, "error": str(exc)}
        sizes.append(entry)
        if "error" in entry:
            errors.append(f"{size:,} routes: {entry['error']}")
    result.extra = {"sizes": sizes, "samples_per_size": s.propagation_samples}
    if errors:
        result.fail("; ".join(errors))
    return result
