"""Loopback ports for the servers tests start, safe with parallel pytest-xdist workers.

Each worker hands out ports from its own slice of bench.procs.PORT_RANGE (below the
kernel's ephemeral range: see there why not bind(0)), so two workers never hand out the
same port. Within a worker the ports go round the slice in order rather than at random:
a port is often only bound some time after it is picked (a gateway's listen and admin
ports, a fake API server), so two random picks could name the same free port — that
happened, once in a few thousand picks — while in order a port comes back only after
the whole slice (~1,600 ports) has gone by.
"""

from __future__ import annotations

import itertools
import os

from bench.procs import PORT_RANGE, port_free

_WORKERS = 8  # slices; workers beyond 8 share them (rarely at the same moment)


def _slice() -> tuple[int, int]:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    n = int(worker[2:]) if worker[2:].isdigit() else 0
    lo, hi = PORT_RANGE
    size = (hi - lo + 1) // _WORKERS
    start = lo + (n % _WORKERS) * size
    return start, start + size - 1


_LO, _HI = _slice()
# Start where a previous run in this worker slot is least likely to have left a port in use.
_NEXT = itertools.cycle(range(_LO, _HI + 1))
for _ in range(os.getpid() % (_HI - _LO + 1)):
    next(_NEXT)


def free_port() -> int:
    for _ in range(_HI - _LO + 1):
        port = next(_NEXT)
        if port_free(port):
            return port
    raise RuntimeError(f"no free loopback port in {_LO}-{_HI}")
