"""CPU time a process tree used, from /proc: the efficiency half of a throughput run.

On a shared machine the requests/s of a run move with whatever else the host
runs; the CPU time the proxy process spent per request moves far less (a
slower CPU shows in both the proxy and its paired nginx run). The load runs
report both. Linux only: elsewhere the figures are absent, not wrong.
"""

from __future__ import annotations

import os

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, user + system seconds) of one process, None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its last ")".
    fields = raw[raw.rindex(b")") + 2 :].split()
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / _TICK  # ppid, utime, stime


def tree_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of ``pid`` and every live descendant (nginx's
    workers, crdgate's worker processes); None when ``pid`` is not readable."""
    if not os.path.isdir("/proc"):
        return None
    own = _stat(pid)
    if own is None:
        return None
    children: dict[int, list[int]] = {}
    times: dict[int, float] = {pid: own[1]}
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == pid:
            continue
        st = _stat(int(name))
        if st is not None:
            children.setdefault(st[0], []).append(int(name))
            times[int(name)] = st[1]
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        total += times.get(p, 0.0)
        todo.extend(children.get(p, ()))
    return total


def cpu_jiffies(cpu: int) -> tuple[int, int] | None:
    """(busy, total) clock ticks of one CPU since boot, from /proc/stat; None off Linux.

    Busy is user, nice, system, interrupts and softirqs; idle, I/O wait and
    steal (the hypervisor running someone else) are not. On a CPU a proxy has
    to itself (bench/pinning.py) that is the whole cost of its traffic, the
    kernel's network work included, which the process's own user + system time
    leaves out (softirq time, the loopback delivery of what it sends, is
    accounted to the CPU, not to it)."""
    try:
        with open("/proc/stat") as f:
            for line in f:
                if line.startswith(f"cpu{cpu} "):
                    ticks = [int(x) for x in line.split()[1:]]
                    ticks += [0] * (8 - len(ticks))
                    busy = ticks[0] + ticks[1] + ticks[2] + ticks[5] + ticks[6]
                    return busy, sum(ticks[:8])
    except (OSError, ValueError):
        return None
    return None


def busy_share(before: tuple[int, int] | None, after: tuple[int, int] | None) -> float | None:
    """The share of the interval the CPU was busy (0..1), from two ``cpu_jiffies`` readings."""
    if before is None or after is None or after[1] <= before[1]:
        return None
    return max(0.0, min(1.0, (after[0] - before[0]) / (after[1] - before[1])))
