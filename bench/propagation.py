"""Scenario 7, propagation: from a manifest written to the first request it routes.

For each table size of the ladder (10, 1,000, --routes) a crdgate starts on
that many filler routes; then, ``--propagation-samples`` times, a new
APIEndpoint with a unique path (to backend 1, while the filler goes to backend
0) is written atomically, and the path is polled over one keep-alive
connection until it answers 200 from backend 1. The time from just before the
write to that answer is one sample. Polls are 1 ms apart, so the resolution is
about a millisecond plus one request. p99 is nearest-rank: with 20 samples it
is the slowest one. No wrk is needed.

``propagation-httproute`` is the same through Gateway API: the filler is that
many HTTPRoutes on one Gateway of crdgate's GatewayClass (to a Service with an
EndpointSlice to backend 0), and each change is a new HTTPRoute with an Exact
path to a second Service (backend 1). Besides the route itself, such a change
moves the Gateway's listener status (``attachedRoutes``), which must not cost
a recount over every route.
"""

from __future__ import annotations

import random
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from . import manifests
from .backends import Backend
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


@dataclass(frozen=True)
class RouteKind:
    """What the routes of one propagation scenario are written as."""

    scenario: str
    title: str
    write_filler: Callable[[Path, int, Backend], None]  # folder, routes, backend
    filler_path: Callable[[int], str]
    change: Callable[[str, str, Backend], dict]  # name, Exact path, backend -> a route to backend 1


GATEWAY_SERVICES = ("bench-backend", "bench-backend-1")  # Services to backend 0 and backend 1


def _write_httproute_filler(folder: Path, size: int, backend: Backend) -> None:
    services = {name: backend.ports[i] for i, name in enumerate(GATEWAY_SERVICES)}
    manifests.write(folder / "gateway.yaml", manifests.gateway_setup(services))
    for fname, docs in manifests.httproute_filler(size, GATEWAY_SERVICES[0]).items():
        manifests.write(folder / fname, docs)


KINDS = {
    k.scenario: k
    for k in (
        RouteKind(
            "propagation", "propagation: manifest write -> first request routed",
            lambda folder, size, backend: manifests.write_filler(folder, size, backend.url),
            manifests.filler_path,
            lambda name, path, backend: manifests.api_endpoint(name, path, backend.url_of(1), pathType="Exact"),
        ),
        RouteKind(
            "propagation-httproute", "propagation: HTTPRoute write -> first request routed",
            _write_httproute_filler,
            manifests.httproute_filler_path,
            lambda name, path, backend: manifests.http_route(name, path, GATEWAY_SERVICES[1], path_type="Exact"),
        ),
    )
}


def measure_size(ctx: Context, size: int, kind: RouteKind = KINDS["propagation"]) -> dict:
    s = ctx.settings
    folder = ctx.folder(f"{kind.scenario}-{size}")
    mdir = folder / "manifests"
    kind.write_filler(mdir, size, ctx.backend)
    ctx.progress.update(f"{kind.scenario}: starting crdgate with {size:,} routes")
    out: dict = {"routes": size}
    gw = ctx.start_gateway(f"{kind.scenario}-{size}", folder)  # GatewayError goes to the caller
    client = Client(gw.port, timeout=2.0)
    try:
        out["ready_after_s"] = round(gw.ready_after_s, 3)
        problem = preflight(gw, [kind.filler_path(size - 1)], {})
        if problem:
            out["error"] = problem
            return out
        rng = random.Random(size)
        samples: list[float] = []
        timeouts: list[str] = []
        for n in range(s.propagation_samples):
            ctx.progress.update(f"{kind.scenario}: {size:,} routes, change {n + 1}/{s.propagation_samples}")
            path = f"/prop/{size}-{n}-{secrets.token_hex(4)}"
            doc = kind.change(f"prop-{n}", path, ctx.backend)
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


def run_propagation(ctx: Context, scenario: str = "propagation") -> Result:
    s = ctx.settings
    kind = KINDS[scenario]
    result = Result(kind.scenario, "propagation", kind.title)
    sizes = []
    errors = []
    for size in s.ladder:
        try:
            entry = measure_size(ctx, size, kind)
        except GatewayError as exc:
            entry = {"routes": size, "error": str(exc)}
        sizes.append(entry)
        if "error" in entry:
            errors.append(f"{size:,} routes: {entry['error']}")
    result.extra = {"sizes": sizes, "samples_per_size": s.propagation_samples}
    if errors:
        result.fail("; ".join(errors))
    return result
