"""How often threads were woken: context switches from /proc (Linux), for idle-cost tests.

A thread that sleeps in a blocking call and is woken counts one voluntary switch
per wake-up; one preempted while running counts an involuntary one. Both are
summed: either way the thread took a CPU (and, in Python, the GIL) from the
event loop's thread.
"""

from __future__ import annotations

import os
import sys

import pytest

needs_proc = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="counts from /proc (Linux)")


def thread_switches(pid: int | None = None) -> dict[int, tuple[str, int]]:
    """Thread id -> (thread name, voluntary context switches so far) for every thread of ``pid``
    (default: this process).

    A voluntary switch is the thread going to sleep, so each wake-up counts once. Preemptions
    (``nonvoluntary_ctxt_switches``) are not counted: on a busy host they come from the other
    work there, not from the thread waking, and made an idle gateway look awake.
    """
    pid = os.getpid() if pid is None else pid
    out: dict[int, tuple[str, int]] = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                name = f.read().strip()
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                status = f.read()
        except OSError:  # ended meanwhile
            continue
        count = sum(int(line.split()[1]) for line in status.splitlines() if line.startswith("voluntary_ctxt_switches:"))
        out[int(tid)] = (name, count)
    return out


def woken(before: dict[int, tuple[str, int]], after: dict[int, tuple[str, int]],
          only: set[int] | None = None) -> dict[str, int]:
    """Wake-ups per thread between two ``thread_switches`` (``only``: those thread ids,
    and threads started in between), as "name/tid" -> count, the busy ones only."""
    out = {}
    for tid, (name, count) in after.items():
        if only is not None and tid not in only and tid in before:
            continue
        n = count - before.get(tid, (name, 0))[1]
        if n:
            out[f"{name}/{tid}"] = n
    return out
