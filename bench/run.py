"""One benchmark run, start to end: tools, pinning, backend, baselines, scenarios, cleanup.

The order is fixed: find tools and say what is missing; start the backend (and
redis-server when a scenario needs it); measure the two baselines; run each
selected scenario, each with its own crdgate; run the lookup microbenchmark;
stop every child. A scenario that fails or raises is recorded and the run goes
on; only the harness's own setup (e.g. no backend at all) ends it early.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import tempfile
import time
import traceback
from pathlib import Path

from . import hostnoise, lookup, report
from .backends import start_backend, start_nginx_proxy
from .churn import STABLE, run_churn
from .equalload import run_fixed_rate
from .pinning import BACKEND, GATEWAY, LOAD, available_cpus, plan
from .procs import Child, free_port
from .progress import Progress
from .propagation import run_propagation
from .kubescale import run_scale
from .scenarios import FAILED, LOAD_SCENARIOS, Context, Result, run_baseline, run_load
from .tracing import run_tracing
from .accesslog import run_access_log
from .http2 import run_http2
from .settings import HTTP2 as HTTP2_NAMES
from .settings import LOAD as LOAD_NAMES
from .settings import Settings
from .tools import find_tools, install_hint
from .wrk import WrkRunner

NOTES = [
    "p99 in the table is compared at the same connection count; p99-fixed compares it at equal offered load "
    "(bench/fixedrate.py and its C loop, open loop: wrk 4 has no fixed-rate mode and wrk2 is not in Debian).",
    "vs nginx: each load scenario's runs alternate with nginx reverse-proxy runs (plain proxy, no auth, one "
    "location) taken just before them; the ratio is the median of the per-pair ratios, so auth / rate-limit / "
    "many-routes ratios include the cost of the feature. Without paired runs, the nginx baseline is used.",
    "the direct baseline shows the backend's and wrk's ceiling on this machine; nobody can beat it.",
]


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def _start_redis(tools, workdir: Path, pin: list[str]) -> tuple[Child, str]:
    port = free_port()
    child = Child(
        "redis", [*pin, tools.path("redis-server"), "--port", str(port), "--bind", "127.0.0.1",
                  "--save", "", "--appendonly", "no", "--dir", str(workdir)], workdir,
    )
    child.wait_port(port, timeout=10)
    return child, f"redis://127.0.0.1:{port}/0"


def _pin_self(cpus: tuple[int, ...] | None) -> set[int] | None:
    """Move this process onto ``cpus``; returns the affinity to restore (None if unchanged)."""
    if not cpus or not hasattr(os, "sched_setaffinity"):
        return None
    old = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    return old


def _guard(name: str, fn) -> Result:
    """Run one scenario; an unexpected exception becomes a FAILED result, never a crashed run."""
    try:
        return fn()
    except Exception as exc:  # noqa: BLE001 - the point is to keep the run going
        tb = traceback.format_exc(limit=3)
        return Result(name, "load", name, state=FAILED, reason=f"harness error: {type(exc).__name__}: {exc}\n{tb}")


def run(settings: Settings, progress: Progress, command: list[str], keep_workdir: bool = False) -> dict:
    started, t0 = _now(), time.monotonic()
    selected = settings.scenarios
    tools = find_tools()
    cpus = available_cpus()
    pinning = plan(cpus, tools.paths.get("taskset"), settings.pin)
    notes = list(NOTES)
    needs_wrk = any(n in selected for n in (*LOAD_NAMES, "tracing", "access-log", "p99-fixed", "churn"))
    needs_h2load = any(n in selected for n in HTTP2_NAMES)
    needs_backend = needs_wrk or needs_h2load or "propagation" in selected or "propagation-httproute" in selected
    wanted = {"wrk": needs_wrk, "nginx": needs_wrk or needs_h2load, "redis-server": "global-ratelimit" in selected,
              "h2load": needs_h2load, "taskset": settings.pin}
    needed = [t for t, want in wanted.items() if want]
    missing = [t for t in needed if not tools.has(t)]
    if missing:
        progress.note(f"missing: {', '.join(missing)} -> install with: {install_hint(missing)}")
    damon = hostnoise.damon_monitors()
    if damon:
        notes.append(hostnoise.describe(damon))
    if not tools.has("nginx") and needs_backend:
        notes.append("nginx missing: the backend is the uvloop fallback (bench/echo_backend.py) and the nginx "
                     "comparison is skipped.")

    workdir = Path(tempfile.mkdtemp(prefix="crdgate-bench-"))
    # The harness's own loops (propagation polls, churn writes, the lookup
    # microbenchmark) belong on the load side, off crdgate's CPU.
    old_affinity = _pin_self(pinning.cpus.get(LOAD))
    children: list[Child] = []
    baselines: dict[str, Result] = {}
    results: list[Result] = []
    backend_kind = None
    try:
        backend = None
        if needs_backend:
            progress.update("starting the backend")
            backend = start_backend(workdir, STABLE, tools.paths.get("nginx"), pinning.prefix(BACKEND))
            children.append(backend.child)
            backend_kind = backend.kind
        wrk = None
        if tools.has("wrk"):
            wrk = WrkRunner(tools.path("wrk"), workdir, settings.connections, settings.threads, pinning.prefix(LOAD))
        ctx = Context(settings, tools, pinning, workdir, backend, wrk, progress)
        if "global-ratelimit" in selected:
            if tools.has("redis-server"):
                try:
                    redis_child, ctx.redis_url = _start_redis(tools, workdir, pinning.prefix(BACKEND))
                    children.append(redis_child)
                except Exception as exc:  # noqa: BLE001
                    ctx.redis_reason = f"redis-server did not start: {exc}"
            else:
                ctx.redis_reason = f"redis-server is missing: {install_hint(['redis-server'])}"

        if needs_wrk:
            baselines["direct"] = _guard("direct", lambda: run_baseline(ctx, "direct", backend.url))
            if tools.has("nginx"):
                def nginx_baseline() -> Result:
                    # Kept up (idle, on crdgate's CPU) for the runs paired with each scenario's.
                    proxy, port = start_nginx_proxy(workdir, tools.path("nginx"), backend.port, pinning.prefix(GATEWAY))
                    children.append(proxy)
                    ctx.nginx_url = f"http://127.0.0.1:{port}"
                    ctx.nginx_pid = proxy.pid
                    return run_baseline(ctx, "nginx", ctx.nginx_url, cpu_pid=proxy.pid)
                baselines["nginx"] = _guard("nginx", nginx_baseline)
                if baselines["nginx"].state != "ok":
                    ctx.nginx_url = None
            else:
                baselines["nginx"] = run_baseline(ctx, "nginx", None, f"nginx is missing: {install_hint(['nginx'])}")
            for r in baselines.values():
                r.kind = "baseline"

        for name in selected:
            if name in LOAD_SCENARIOS:
                r = _guard(name, lambda: run_load(ctx, LOAD_SCENARIOS[name]))
                r.kind = "load"
            elif name in HTTP2_NAMES:
                r = _guard(name, lambda: run_http2(ctx, name))
                r.kind = "load"
            elif name == "tracing":
                r = _guard(name, lambda: run_tracing(ctx))
                r.kind = "tracing"
            elif name == "access-log":
                r = _guard(name, lambda: run_access_log(ctx))
                r.kind = "access-log"
            elif name == "p99-fixed":
                r = _guard(name, lambda: run_fixed_rate(ctx))
                r.kind = "fixed-rate"
            elif name == "churn":
                r = _guard(name, lambda: run_churn(ctx))
                r.kind = "churn"
            elif name == "propagation":
                r = _guard(name, lambda: run_propagation(ctx))
                r.kind = "propagation"
            elif name == "propagation-httproute":
                r = _guard(name, lambda: run_propagation(ctx, name))
                r.kind = "propagation"
            elif name == "lookup":
                r = _guard(name, lambda: _lookup(settings, progress))
                r.kind = "lookup"
            elif name == "scale":
                r = _guard(name, lambda: run_scale(ctx))
                r.kind = "scale"
            else:
                continue
            if r.state != "ok":
                progress.note(f"{r.state.upper()} {r.name}: {r.reason.splitlines()[0] if r.reason else ''}")
            results.append(r)
    finally:
        for child in reversed(children):
            child.stop()
        if old_affinity is not None:
            os.sched_setaffinity(0, old_affinity)
        progress.done()
        if keep_workdir:
            progress.note(f"kept the work folder (manifests, logs, wrk scripts): {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    meta = {
        "started_at": started,
        "finished_at": _now(),
        "elapsed_s": round(time.monotonic() - t0, 1),
        "command": command,
        "cpus": len(cpus),
        "settings": settings.to_json(),
        "pinning": pinning.describe(),
        "tools": dict(tools.paths),
        "missing": missing,
        "install_hint": install_hint(missing) if missing else "",
        "backend": backend_kind,
        "notes": notes,
        "damon": damon,
    }
    return report.document(meta, baselines, results)


def _lookup(settings: Settings, progress: Progress) -> Result:
    result = Result("lookup", "lookup", "route lookup microbenchmark (RouteTable.match)", target="in-process")
    result.extra = lookup.run(settings.ladder, settings.lookup_iterations, progress)
    if result.extra.get("error"):
        result.fail(result.extra["error"])
    return result
