"""Watch event -> route served, through the Kubernetes source (`python -m bench.kubeprop`).

No kube-apiserver ships in the package registries, so this drives `crdgate run
--kube` against the fake API server of the test suite (tests/fakekube.py: real
list/watch streams, resourceVersions, bookmarks); it needs a source checkout.
For each size (default 10, 1,000, 10,000 APIEndpoints in the cache) it creates
one new APIEndpoint with a unique path, polls that path until it answers 200,
and records the time from the create to the answer; it also reports the first
compile's duration (from /metrics) and the gateway's RSS. The fake API server
runs in this process: its objects are frozen out of this process's garbage
collector, whose pauses would otherwise count as propagation time.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from aiohttp import web

from .procs import free_port

ROOT = Path(__file__).resolve().parent.parent




async def _backend() -> tuple[web.AppRunner, int]:
    async def ok(_):
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", ok)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, port


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def measure(size: int, samples: int, workdir: Path) -> dict:
    sys.path.insert(0, str(ROOT / "tests"))
    from fakekube import FakeKube, apiendpoint  # noqa: E402

    fk = FakeKube()
    await fk.start()
    runner, port = await _backend()
    fk.create({"apiVersion": "v1", "kind": "Service", "metadata": {"namespace": "bench", "name": "app"},
               "spec": {"ports": [{"name": "http", "port": 80, "targetPort": port}]}})
    fk.create({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
               "metadata": {"namespace": "bench", "name": "app-x", "labels": {"kubernetes.io/service-name": "app"}},
               "addressType": "IPv4", "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": True}}],
               "ports": [{"name": "http", "port": port, "protocol": "TCP"}]})
    for i in range(size):
        fk.create(apiendpoint("bench", f"filler-{i}", path=f"/filler/{i}", backendService="app"))
    # The fake API server lives in this process, beside the poller: a full collection
    # of its 10,000 objects (and their event history) would stall both for 50-150 ms
    # and show up as propagation time. They live until the end: keep them out of it.
    gc.collect()
    gc.freeze()
    gw_port, admin_port = free_port(), free_port()
    log = open(workdir / f"kube-{size}.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "crdgate", "run", "--kube", "--kubeconfig", fk.kubeconfig(workdir / "kubeconfig"),
         "--listen", f"127.0.0.1:{gw_port}", "--admin-listen", f"127.0.0.1:{admin_port}",
         "--access-log", "off", "--lease-namespace", "default", "--drain-seconds", "0"],
        cwd=ROOT, stdout=log, stderr=log)
    out: dict = {"routes": size}
    try:
        async with aiohttp.ClientSession() as s:
            t0 = time.monotonic()
            while True:
                try:
                    async with s.get(f"http://127.0.0.1:{admin_port}/readyz") as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                if proc.poll() is not None or time.monotonic() - t0 > 120:
                    raise RuntimeError(f"gateway did not become ready (see {log.name})")
                await asyncio.sleep(0.05)
            out["first_table_s"] = round(time.monotonic() - t0, 3)
            async with s.get(f"http://127.0.0.1:{admin_port}/metrics") as r:
                text = await r.text()
            # The histogram's sum and count when the first table is up: the first
            # compile's duration when the count is 1 (later ones are incremental).
            for line in text.splitlines():
                if line.startswith("crdgate_compile_duration_seconds_sum"):
                    out["compile_s_sum"] = round(float(line.split()[-1]), 3)
                elif line.startswith("crdgate_compile_duration_seconds_count"):
                    out["compiles"] = int(float(line.split()[-1]))
            times = []
            for n in range(samples):
                path = f"/new/{size}/{n}"
                t = time.perf_counter()
                fk.create(apiendpoint("bench", f"new-{n}", path=path, backendService="app"))
                while True:
                    async with s.get(f"http://127.0.0.1:{gw_port}{path}") as r:
                        await r.read()
                        if r.status == 200:
                            break
                    if time.perf_counter() - t > 30:
                        raise RuntimeError(f"{path} never routed")
                    await asyncio.sleep(0.001)
                times.append((time.perf_counter() - t) * 1000)
                await asyncio.sleep(0.05)
            out["samples_ms"] = [round(x, 2) for x in times]
            times.sort()
            out["p50_ms"] = round(statistics.median(times), 1)
            out["p99_ms"] = round(times[min(len(times) - 1, int(len(times) * 0.99))], 1)
            out["rss_mib"] = round(_rss_mib(proc.pid), 1)
    finally:
        proc.terminate()
        proc.wait(30)
        await runner.cleanup()
        await fk.stop()
        gc.unfreeze()
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.kubeprop", description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="10,1000,10000")
    p.add_argument("--samples", type=int, default=20)
    p.add_argument("--json", help="write the results here")
    args = p.parse_args(argv)
    results = []
    with tempfile.TemporaryDirectory(prefix="crdgate-kubeprop-") as tmp:
        for size in (int(x) for x in args.sizes.split(",")):
            r = asyncio.run(measure(size, args.samples, Path(tmp)))
            print(f"{size:>6} APIEndpoints: event->served p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms; "
                  f"first table {r['first_table_s']} s (compile {r.get('compile_s_sum')} s, "
                  f"{r.get('compiles')} compile(s)); RSS {r['rss_mib']} MiB", flush=True)
            results.append(r)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
