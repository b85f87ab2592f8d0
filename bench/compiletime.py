"""Compile time in process: a full compile, and one change compiled incrementally (`python -m bench.compiletime`).

For each size (default 10, 1,000, 10,000 APIEndpoints, shaped as the Kubernetes
source stores them: compacted, with metadata and one Service backend) it times
a compile from scratch, then ``--samples`` single changes each compiled from the
previous one, the way the publisher does (store snapshot with the changes since
the last compile -> ``Compiler.compile``): an APIEndpoint added, one modified,
one deleted, and our own status write coming back through the watch. Reported:
the median and the slowest of each, in milliseconds (the full compile: the
median of three). The machine's other load shows in the slowest figures; run it
under the benchmark lock.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from pathlib import Path

from controller.compile import CompileOptions, Compiler
from controller.store import APIENDPOINT, ENDPOINTSLICE, KINDS, SERVICE, Store, compact

T0 = "2024-05-01T10:00:00Z"


def _meta(name: str, rv: int) -> dict:
    return {"namespace": "bench", "name": name, "uid": f"00000000-0000-4000-8000-{rv:012d}", "generation": 1,
            "creationTimestamp": T0, "resourceVersion": str(rv)}


def apiendpoint(i: int, rv: int, path: str | None = None) -> dict:
    return compact({"apiVersion": "crdgate.io/v1", "kind": APIENDPOINT, "metadata": _meta(f"r-{i}", rv),
                    "spec": {"path": path or f"/r/{i}", "backendService": "app"}})


def _store(size: int) -> Store:
    store = Store()
    for kind in KINDS:
        store.replace(kind, [])
    store.replace(SERVICE, [compact({"apiVersion": "v1", "kind": SERVICE, "metadata": _meta("app", 1),
                                     "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]}})])
    store.replace(ENDPOINTSLICE, [compact({
        "apiVersion": "discovery.k8s.io/v1", "kind": ENDPOINTSLICE,
        "metadata": {**_meta("app-x", 2), "labels": {"kubernetes.io/service-name": "app"}},
        "addressType": "IPv4", "endpoints": [{"addresses": ["10.0.0.1"], "conditions": {"ready": True}}],
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
    })])
    store.replace(APIENDPOINT, [apiendpoint(i, 10 + i) for i in range(size)])
    return store


def _status_echo(obj: dict, rv: int) -> dict:
    status = {"state": "Ready", "message": "routed", "observedGeneration": 1, "conditions": [
        {"type": t, "status": "True", "reason": t, "message": "ok", "observedGeneration": 1, "lastTransitionTime": T0}
        for t in ("Accepted", "ResolvedRefs", "Ready")]}
    return compact({**obj, "metadata": {**obj["metadata"], "resourceVersion": str(rv)}, "status": status})


def measure(size: int, samples: int, full_runs: int = 3) -> dict:
    store = _store(size)
    options = CompileOptions()
    snap = store.snapshot()
    fulls = []
    for _ in range(full_runs):  # the median of a few: the machine's other load varies
        compiler = Compiler(options)
        started = time.perf_counter()
        compiler.compile(snap, options, 1)
        fulls.append((time.perf_counter() - started) * 1000)
    out: dict = {"routes": size, "full_ms": round(statistics.median(fulls), 1)}
    # As the gateway does once its first table is up (controller/publish.py _settle_heap):
    # otherwise a full collection over the whole heap lands in some sample.
    gc.collect()
    gc.freeze()
    rv = 10 * size + 100
    changes = {
        "add": lambda n: store.apply(APIENDPOINT, "ADDED", apiendpoint(size + n, rv + n)),
        "modify": lambda n: store.apply(APIENDPOINT, "MODIFIED", apiendpoint(n % size, rv + n, f"/moved/{n}")),
        "delete": lambda n: store.apply(APIENDPOINT, "DELETED", apiendpoint(size + n, rv + n)),
        "status_echo": lambda n: store.apply(
            APIENDPOINT, "MODIFIED", _status_echo(store.get(APIENDPOINT, "bench", f"r-{n % size}"), rv + n)),
    }
    generation = 2
    for name, change in changes.items():
        times = []
        for n in range(samples):
            change(n)
            started = time.perf_counter()
            snap = store.snapshot(since=snap.version)
            compiler.compile(snap, options, generation)
            times.append((time.perf_counter() - started) * 1000)
            generation += 1
        out[f"{name}_ms"] = {"median": round(statistics.median(times), 2), "max": round(max(times), 2)}
    if compiler.failures:
        out["error"] = f"{compiler.failures} incremental compiles failed and were redone from scratch"
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.compiletime", description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="10,1000,10000")
    p.add_argument("--samples", type=int, default=50)
    p.add_argument("--json", help="write the results here")
    args = p.parse_args(argv)
    results = []
    for size in (int(x) for x in args.sizes.split(",")):
        r = measure(size, args.samples)
        inc = ", ".join(f"{k[:-3]} {r[k]['median']}/{r[k]['max']}" for k in ("add_ms", "modify_ms", "delete_ms", "status_echo_ms"))
        print(f"{size:>6} APIEndpoints: full compile {r['full_ms']} ms; one change, median/max ms: {inc}"
              + (f"; {r['error']}" if "error" in r else ""), flush=True)
        results.append(r)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
