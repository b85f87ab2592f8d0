"""Scenario scale: the control plane at --routes APIEndpoints (`python -m bench.kubescale`).

Like bench/kubeprop.py, this drives `crdgate run --kube` against the fake API
server of the test suite (tests/fakekube.py: real list/watch streams,
resourceVersions, 410 Gone, the status subresource; a source checkout is
needed), run in this process. With N APIEndpoints (default 10,000) created
before the gateway starts, it measures:

- ready_s: from the start of the process to /readyz answering 200;
- status_s: from the start until every APIEndpoint's status shows
  observedGeneration (written by the gateway, --status-qps/--status-burst), and
  the peak of status writes per second the server saw;
- echo_swaps: routing tables swapped from the first table until the statuses
  have come back through the watch (each write's echo must cost none), with
  the status-only updates counted;
- restart: the fake API server goes away for --down seconds, forgets its
  history (a restarted kube-apiserver rebuilds its watch cache: resuming a
  watch gets 410, so the gateway relists), comes back; one new APIEndpoint is
  created at once and polled until it answers: restart_served_s (from the
  server's return). Repeated --relists times; RSS after each (settled) and
  before the first.
- watches: the watch streams the gateway holds open on the API server, per kind;
- workers (``--workers 2``, one controller and two proxy processes, started
  against the same objects after the single-process gateway stopped): its
  ready_s, its watches per kind (one replica: the same as one process's), and
  the RSS of the controller and of each worker (each holds its table, not the
  object cache).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from aiohttp import web

from .procs import Child, free_port
from .scenarios import Context, Result

ROOT = Path(__file__).resolve().parent.parent
FAKE_SERVER = ROOT / "tests" / "fakekube.py"
SETTLE_S = 2.0  # after a relist: let the gateway's heap settle before reading RSS
RESTARTS = 3  # in `crdgate bench`: API server restarts, each forcing a relist
WORKERS = 2  # in `crdgate bench`: the --workers N gateway measured after the single-process one
DOWN_S = 3.0  # how long the API server stays away each time




def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def _cpu_s(pid: int) -> float:
    """utime + stime of a process, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _worker_pids(pid: int) -> list[int]:
    """The proxy workers of a ``--workers N`` gateway: its children started by multiprocessing's
    spawn (not its resource tracker)."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            try:
                cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
            except OSError:
                continue
            if b"spawn_main" in cmdline:
                found.append(int(child))
    return sorted(found)


def _watches(fk) -> dict[str, int]:
    """Open watch streams on the fake API server, per kind."""
    counts: dict[str, int] = {}
    for w in list(fk.watchers):
        counts[w.res.kind] = counts.get(w.res.kind, 0) + 1
    return dict(sorted(counts.items()))


def _metric(text: str, name: str, labels: str = "") -> float:
    """The sum of a metric's series (those whose labels contain ``labels``) in a scrape."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        series, _, value = line.rpartition(" ")
        if series.split("{", 1)[0] == name and labels in series:
            total += float(value)
    return total


async def _backend() -> tuple[web.AppRunner, int]:
    """The backend every route goes to: answers 200 to anything."""
    async def ok(_):
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", ok)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, port


async def _metrics(s: aiohttp.ClientSession, admin: int) -> str:
    async with s.get(f"http://127.0.0.1:{admin}/metrics") as r:
        return await r.text()


async def _until(check, timeout: float, what: str, proc: subprocess.Popen, step: float = 0.01) -> float:
    """Poll ``check`` (async) until truthy; seconds it took. Raises after ``timeout``."""
    t0 = time.monotonic()
    while True:
        if await check():
            return time.monotonic() - t0
        if proc.poll() is not None:
            raise RuntimeError(f"the gateway exited while waiting for {what}")
        if time.monotonic() - t0 > timeout:
            raise RuntimeError(f"timed out after {timeout:g}s waiting for {what}")
        await asyncio.sleep(step)


def _start_gateway(kubeconfig: Path, workdir: Path, name: str, extra_args) -> tuple[Child, int, int]:
    gw_port, admin = free_port(), free_port()
    child = Child(name, [sys.executable, "-m", "crdgate", "run", "--kube", "--kubeconfig", str(kubeconfig),
                         "--listen", f"127.0.0.1:{gw_port}", "--admin-listen", f"127.0.0.1:{admin}",
                         "--leader-elect", "off", "--access-log", "off", "--drain-seconds", "0", *extra_args],
                  workdir, cwd=str(ROOT))
    return child, gw_port, admin


async def measure(size: int, relists: int, down_s: float, workdir: Path, extra_args: list[str] = (),
                  progress=lambda text: None, workers: int = WORKERS) -> dict:
    sys.path.insert(0, str(ROOT / "tests"))
    from fakekube import FakeKube, apiendpoint  # noqa: E402

    fk = FakeKube(history=max(10_000, 3 * size))
    await fk.start()
    runner, port = await _backend()
    fk.create({"apiVersion": "v1", "kind": "Service", "metadata": {"namespace": "bench", "name": "app"},
               "spec": {"ports": [{"name": "http", "port": 80, "targetPort": port}]}})
    fk.create({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
               "metadata": {"namespace": "bench", "name": "app-x", "labels": {"kubernetes.io/service-name": "app"}},
               "addressType": "IPv4", "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": True}}],
               "ports": [{"name": "http", "port": port, "protocol": "TCP"}]})
    progress(f"scale: creating {size:,} APIEndpoints in the fake API server")
    for i in range(size):
        fk.create(apiendpoint("bench", f"filler-{i}", path=f"/filler/{i}", backendService="app"))
    endpoints = fk.objects[fk.by_kind["APIEndpoint"]]
    gc.collect()
    gc.freeze()  # see bench/kubeprop.py: the fake server's objects live to the end
    kubeconfig = Path(fk.kubeconfig(workdir / "kubeconfig"))
    # Status writes are counted from the start: with few objects they are all done before /readyz is seen.
    patches_from = len(fk.requests)
    gw, gw_port, admin = _start_gateway(kubeconfig, workdir, f"kubescale-{size}", extra_args)
    proc = gw.proc
    started = time.monotonic()
    out: dict = {"routes": size, "down_s": down_s}
    try:
        async with aiohttp.ClientSession() as s:
            async def ready() -> bool:
                try:
                    async with s.get(f"http://127.0.0.1:{admin}/readyz") as r:
                        return r.status == 200
                except aiohttp.ClientError:
                    return False

            progress(f"scale: waiting for the first table of {size:,} routes")
            await _until(ready, 120, "/readyz", proc, step=0.05)
            out["ready_s"] = round(time.monotonic() - started, 2)
            text = await _metrics(s, admin)
            swaps_at_ready = _metric(text, "crdgate_table_swaps_total")

            def unwritten() -> int:
                return sum(1 for o in endpoints.values()
                           if (o.get("status") or {}).get("observedGeneration") != o["metadata"].get("generation"))

            async def all_written() -> bool:
                return unwritten() == 0

            progress(f"scale: waiting for {size:,} statuses")
            cpu_gw, cpu_here = _cpu_s(proc.pid), time.process_time()
            await _until(all_written, 600, "every status written", proc, step=0.1)
            out["status_s"] = round(time.monotonic() - started, 2)
            # CPU per status write: the gateway's (write + its echo), and the fake server's (this process).
            out["status_cpu_ms_per_write"] = round((_cpu_s(proc.pid) - cpu_gw) * 1000 / size, 2)
            out["fake_server_cpu_ms_per_write"] = round((time.process_time() - cpu_here) * 1000 / size, 2)
            times = [t for (m, _, _), t in zip(fk.requests[patches_from:], fk.request_times[patches_from:])
                     if m == "PATCH"]
            out["status_writes"] = len(times)
            out["status_peak_per_s"] = max((sum(1 for u in times[i:i + 2000] if u < t + 1.0)
                                            for i, t in enumerate(times)), default=0)

            # The echoes of the writes reach the gateway's cache: counted, and they swap nothing.
            async def echoed() -> bool:
                m = await _metrics(s, admin)
                return _metric(m, "crdgate_store_status_only_updates_total", 'kind="APIEndpoint"') >= size

            try:
                await _until(echoed, 60, "the status echoes", proc, step=0.2)
            except RuntimeError:
                out["echo_error"] = "not every echo was counted as status-only"
            text = await _metrics(s, admin)
            out["echo_swaps"] = int(_metric(text, "crdgate_table_swaps_total") - swaps_at_ready)
            out["status_only_updates"] = int(_metric(text, "crdgate_store_status_only_updates_total",
                                                     'kind="APIEndpoint"'))
            await asyncio.sleep(SETTLE_S)
            out["rss_mib"] = [_rss_mib(proc.pid)]
            out["watches"] = _watches(fk)

            served: list[float] = []
            for n in range(relists):
                progress(f"scale: API server restart {n + 1}/{relists} ({down_s:g}s down)")
                await fk.stop()
                await asyncio.sleep(down_s)
                # A restarted API server's watch cache starts at etcd's current revision, which other
                # writes (Leases, Events...) have moved on: resuming the watch gets 410, and we relist.
                fk.create({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                           "metadata": {"namespace": "bench", "name": f"elsewhere-{n}"}, "spec": {}})
                fk.compact()
                await fk.start()
                back = time.monotonic()
                path = f"/after-restart/{n}"
                fk.create(apiendpoint("bench", f"after-restart-{n}", path=path, backendService="app"))

                async def routed() -> bool:
                    try:
                        async with s.get(f"http://127.0.0.1:{gw_port}{path}") as r:
                            await r.read()
                            return r.status == 200
                    except aiohttp.ClientError:
                        return False

                await _until(routed, 60, f"{path} after the restart", proc, step=0.02)
                served.append(round(time.monotonic() - back, 3))
                await _until(all_written, 60, "the new object's status", proc, step=0.1)
                await asyncio.sleep(SETTLE_S)
                out["rss_mib"].append(_rss_mib(proc.pid))
            text = await _metrics(s, admin)
            out["restart_served_s"] = served
            out["relists"] = int(_metric(text, "crdgate_relists_total", 'kind="APIEndpoint"')) - 1
            out["swaps_total"] = int(_metric(text, "crdgate_table_swaps_total"))

            if workers > 1:
                gw.stop(30)
                fk.drop_watches()  # the stopped gateway's streams: the server may not have seen them end yet
                progress(f"scale: --workers {workers} at {size:,} routes")
                gw, gw_port, admin = _start_gateway(kubeconfig, workdir, f"kubescale-{size}-workers",
                                                    [*extra_args, "--workers", str(workers)])
                proc = gw.proc
                started = time.monotonic()
                await _until(ready, 120, f"/readyz of --workers {workers}", proc, step=0.05)
                ready_s = round(time.monotonic() - started, 2)
                await asyncio.sleep(SETTLE_S)
                pids = _worker_pids(proc.pid)
                out["workers"] = {"workers": workers, "ready_s": ready_s, "watches": _watches(fk),
                                  "controller_rss_mib": _rss_mib(proc.pid),
                                  "worker_rss_mib": [_rss_mib(p) for p in pids]}
                if len(pids) != workers:
                    out["workers"]["error"] = f"{len(pids)} worker processes found, {workers} expected"
    finally:
        gw.stop(30)
        await runner.cleanup()
        await fk.stop()
        gc.unfreeze()
    return out


def describe(r: dict) -> str:
    rss = " -> ".join(f"{x:g}" for x in r.get("rss_mib", []))
    served = ", ".join(f"{x:g}" for x in r.get("restart_served_s", []))
    return (f"{r['routes']:,} APIEndpoints: ready {r.get('ready_s')} s; all statuses {r.get('status_s')} s "
            f"({r.get('status_writes')} writes, peak {r.get('status_peak_per_s')}/s); swaps from echoes "
            f"{r.get('echo_swaps')} ({r.get('status_only_updates')} status-only updates); CPU per write "
            f"{r.get('status_cpu_ms_per_write')} ms (fake server {r.get('fake_server_cpu_ms_per_write')} ms); {r.get('relists')} "
            f"relists; served after API "
            f"server restart ({r['down_s']:g}s down, relist): {served} s; RSS MiB {rss}"
            + _describe_watches_and_workers(r))


def _describe_watches_and_workers(r: dict) -> str:
    def kinds(w: dict) -> str:
        if len(set(w.values())) == 1:
            return f"{next(iter(w.values()))} per kind ({len(w)} kinds)"
        return ", ".join(f"{k} {n}" for k, n in w.items()) or "none"

    text = f"; watches on the API server: {kinds(r['watches'])}" if "watches" in r else ""
    w = r.get("workers")
    if w:
        each = " / ".join(f"{x:g}" for x in w["worker_rss_mib"])
        text += (f"; --workers {w['workers']}: ready {w['ready_s']} s, watches {kinds(w['watches'])}, RSS MiB "
                 f"controller {w['controller_rss_mib']:g}, workers {each}")
    return text


def run_scale(ctx: Context) -> Result:
    """`crdgate bench --scenario scale`: one measure() at --routes, as a Result."""
    s = ctx.settings
    result = Result("scale", "scale", f"control plane at {s.routes:,} APIEndpoints (fake API server)")
    if not FAKE_SERVER.exists():
        return result.skip(f"needs a source checkout: the fake API server {FAKE_SERVER} is not here")
    folder = ctx.folder("scale")
    try:
        result.extra = asyncio.run(measure(s.routes, RESTARTS, DOWN_S, folder, progress=ctx.progress.update))
    except Exception as exc:  # noqa: BLE001 — a scenario failure is reported, never a crashed run
        result.extra = {"routes": s.routes}
        return result.fail(f"{type(exc).__name__}: {exc}")
    if result.extra.get("echo_error"):
        result.fail(result.extra["echo_error"])
    elif (result.extra.get("workers") or {}).get("error"):
        result.fail(result.extra["workers"]["error"])
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.kubescale", description=__doc__.splitlines()[0])
    p.add_argument("--routes", type=int, default=10_000)
    p.add_argument("--relists", type=int, default=RESTARTS, help="API server restarts (each forces a relist)")
    p.add_argument("--down", type=float, default=DOWN_S, help="seconds the API server stays away at each restart")
    p.add_argument("--workers", type=int, default=WORKERS,
                   help="then a --workers N gateway: its watches and each process's RSS (0 or 1: skipped)")
    p.add_argument("--json", help="write the result here")
    p.add_argument("gateway_args", nargs="*", help="more `crdgate run` flags (after --)")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="crdgate-kubescale-") as tmp:
        r = asyncio.run(measure(args.routes, args.relists, args.down, Path(tmp), args.gateway_args,
                                progress=lambda text: print(text, file=sys.stderr, flush=True), workers=args.workers))
    print(describe(r), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(r, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
