"""Loopback ports for the servers tests start, safe with parallel pytest-xdist workers.

bench.procs.free_port picks a random free port below the kernel's ephemeral range (see
there why not bind(0)); here each worker picks from its own slice of that range, so two
workers never hand out the same port, whatever their timing.
"""

from __future__ import annotations

import os

from bench.procs import PORT_RANGE, free_port as free_port_in

_WORKERS = 8  # slices; workers beyond 8 share them (random ports: still rarely the same)


def free_port() -> int:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    n = int(worker[2:]) if worker[2:].isdigit() else 0
    lo, hi = PORT_RANGE
    size = (hi - lo + 1) // _WORKERS
    start = lo + (n % _WORKERS) * size
    return free_port_in(start, start + size - 1)
