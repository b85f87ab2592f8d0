"""Which CPUs each process of a run gets.

With two or more CPUs, crdgate (and the nginx proxy it is compared with, for
fairness) gets the first CPU to itself; the load side (wrk, and the harness
itself: propagation polls, churn writes, the lookup microbenchmark) and the
backend share the rest — on three or more CPUs the backend gets its own.
Children are pinned with `taskset -c` on their command line; bench/run.py moves
the harness onto the load CPUs for the run and back afterwards.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

GATEWAY = "gateway"  # crdgate, nginx proxy
BACKEND = "backend"  # the echo backend, redis-server
LOAD = "load"  # wrk


@dataclass(frozen=True)
class Pinning:
    cpus: dict[str, tuple[int, ...]]  # role -> CPUs; empty when not pinned
    taskset: str | None
    note: str

    def prefix(self, role: str) -> list[str]:
        cpus = self.cpus.get(role)
        if not cpus or self.taskset is None:
            return []
        return [self.taskset, "-c", ",".join(str(c) for c in cpus)]

    def describe(self) -> dict:
        return {"cpus": {k: list(v) for k, v in self.cpus.items()}, "note": self.note}


def available_cpus() -> list[int]:
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return list(range(os.cpu_count() or 1))


def plan(cpus: list[int], taskset: str | None, enabled: bool = True) -> Pinning:
    if not enabled:
        return Pinning({}, None, "pinning disabled (--no-pin)")
    if taskset is None:
        return Pinning({}, None, "not pinned: taskset missing (apt-get install util-linux)")
    if len(cpus) < 2:
        return Pinning({}, None, f"not pinned: only {len(cpus)} CPU available")
    first, rest = cpus[0], tuple(cpus[1:])
    if len(cpus) == 2:
        return Pinning(
            {GATEWAY: (first,), BACKEND: rest, LOAD: rest},
            taskset,
            f"crdgate and the nginx proxy on CPU {first}; wrk and the backend share CPU {rest[0]}",
        )
    return Pinning(
        {GATEWAY: (first,), BACKEND: (rest[0],), LOAD: rest[1:]},
        taskset,
        f"crdgate and the nginx proxy on CPU {first}; backend on CPU {rest[0]}; "
        f"wrk on CPUs {','.join(map(str, rest[1:]))}",
    )
