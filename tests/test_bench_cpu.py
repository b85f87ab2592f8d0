"""bench/cpu.py: CPU time of a process tree, read from /proc."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from bench.cpu import busy_share, cpu_jiffies, tree_cpu_seconds

# A parent that spins for a while, with a child that spins too; both then sleep.
# The child renames itself with spaces and parentheses: /proc/<pid>/stat must
# still be split after the command name.
_CHILD = """
import time
open("/proc/self/comm", "w").write("a) (b c")
end = time.process_time() + 0.4
while time.process_time() < end:
    pass
print("child done", flush=True)
time.sleep(30)
"""
_PARENT = f"""
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", {_CHILD!r}], stdout=sys.stdout)
end = time.process_time() + 0.4
while time.process_time() < end:
    pass
print("parent done", flush=True)
time.sleep(30)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_counts_the_process_and_its_descendants():
    proc = subprocess.Popen([sys.executable, "-c", _PARENT], stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        seen = {proc.stdout.readline().strip(), proc.stdout.readline().strip()}
        assert seen == {"parent done", "child done"}
        total = tree_cpu_seconds(proc.pid)
        assert total is not None and total >= 0.7, total  # 0.4 s each, measured in clock ticks
        assert total < 5
        time.sleep(0.2)
        assert tree_cpu_seconds(proc.pid) - total < 0.05, "sleeping processes add nothing"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the parent and its child
        proc.wait()
    assert tree_cpu_seconds(proc.pid) is None, "a process that is gone reads as None"


def test_busy_share_of_two_readings():
    assert busy_share((100, 1000), (190, 1100)) == 0.9
    assert busy_share((100, 1000), (100, 1000)) is None, "no time passed"
    assert busy_share(None, (1, 2)) is None and busy_share((1, 2), None) is None
    assert busy_share((100, 1000), (250, 1100)) == 1.0, "clamped"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/stat")
def test_cpu_jiffies_reads_a_cpu_and_not_a_missing_one():
    cpu = sorted(os.sched_getaffinity(0))[0]
    busy, total = cpu_jiffies(cpu)
    assert 0 <= busy <= total and total > 0
    assert cpu_jiffies(100_000) is None
