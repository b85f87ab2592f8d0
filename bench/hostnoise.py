"""Periodic kernel work on the host that a latency benchmark should name.

DAMON (the kernel's data-access monitor, `/sys/kernel/mm/damon/admin`) runs a
kernel thread, ``kdamond.N``, that wakes every sampling interval on any CPU. On
the 2-CPU development host (2026-12-04) one monitored the physical address
space (``paddr``) every 500 ms with a ``pageout`` scheme: each wake took 1.5-4
ms of a CPU, preempting whatever ran there (the proxy, when it landed on the
proxy's CPU), which is the ~0.51 s period of the late event-loop wake-ups the
p99-fixed scenario's probe saw (bench/HISTORY.md). Nothing of the benchmark's
can move it; it is reported so that a p99 taken on such a host is read as such.
"""

from __future__ import annotations

from pathlib import Path

DAMON_ADMIN = Path("/sys/kernel/mm/damon/admin/kdamonds")


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def damon_monitors(root: Path = DAMON_ADMIN) -> list[dict]:
    """The running DAMON monitors: ``{"kdamond", "pid", "operations", "sample_us", "actions"}``
    per context of each kdamond whose state is ``on``; empty without DAMON."""
    out = []
    try:
        kdamonds = sorted((p for p in root.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
    except OSError:
        return out
    for kd in kdamonds:
        if _read(kd / "state") != "on":
            continue
        pid = _read(kd / "pid")
        contexts = kd / "contexts"
        try:
            ctxs = sorted((p for p in contexts.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
        except OSError:
            ctxs = []
        for ctx in ctxs:
            sample = _read(ctx / "monitoring_attrs" / "intervals" / "sample_us")
            try:
                schemes = sorted((p for p in (ctx / "schemes").iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
            except OSError:
                schemes = []
            out.append({
                "kdamond": int(kd.name),
                "pid": int(pid) if pid and pid.isdigit() else None,
                "operations": _read(ctx / "operations"),
                "sample_us": int(sample) if sample and sample.isdigit() else None,
                "actions": [a for a in (_read(s / "action") for s in schemes) if a],
            })
    return out


def describe(monitors: list[dict]) -> str | None:
    """One line for the report, None when there is nothing to say."""
    if not monitors:
        return None
    parts = []
    for m in monitors:
        every = f"every {m['sample_us'] / 1000:g} ms" if m["sample_us"] else "at an unknown interval"
        acts = f", schemes: {', '.join(m['actions'])}" if m["actions"] else ""
        parts.append(f"kdamond.{m['kdamond']} ({m['operations'] or '?'}) samples {every}{acts}")
    return ("the kernel's DAMON monitor is on: " + "; ".join(parts)
            + ": each sample takes a CPU for a few ms, whichever it lands on (p99 at equal load feels it)")
