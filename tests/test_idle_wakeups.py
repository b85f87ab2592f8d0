"""An idle ``crdgate run --manifests`` leaves its event loop alone: no thread wakes on a timer.

Every thread wake-up takes the GIL, and with the gateway pinned to a CPU the CPU,
from the proxy's event loop; under load that is latency in the tail (the
p99-fixed bench scenario). The manifests watch used to poll from a thread every
10 ms and the process-log writer to wake every 50 ms: about 120 wake-ups a
second with nothing to do. The event loop's own thread is counted apart: the
connection sweep woke it every 100 ms with no connection to sweep; now it sleeps
until a connection comes (gateway/server.py, ``_sweep``).
"""

from __future__ import annotations

import time

from gatewayproc import GatewayProcess, endpoint_manifests
from wakeups import needs_proc, thread_switches, woken

IDLE_S = 2.0
MAX_WAKEUPS = 10  # the periodic rescan of the folder (every 2 s, in a worker thread) and slack
# The event loop's thread in IDLE_S: the folder's rescan (a stat, the hand-off to
# its thread and back) and slack. The sweep every 100 ms was 20.
MAX_LOOP_WAKEUPS = 8


@needs_proc
def test_an_idle_gateway_wakes_no_thread_but_the_event_loop(tmp_path):
    (tmp_path / "services.yaml").write_text(endpoint_manifests("shop", "users", 9))
    gw = GatewayProcess(tmp_path)
    try:
        gw.wait_ready()
        time.sleep(1.0)  # the start-up's own work (first table, heap settling) is over
        pid = gw.proc.pid
        before = thread_switches(pid)
        time.sleep(IDLE_S)
        wakeups = woken(before, thread_switches(pid))
        others = {name: n for name, n in wakeups.items() if not name.endswith(f"/{pid}")}
        assert sum(others.values()) < MAX_WAKEUPS, others
    finally:
        gw.close()


@needs_proc
def test_an_idle_gateway_leaves_its_event_loop_asleep(tmp_path):
    (tmp_path / "services.yaml").write_text(endpoint_manifests("shop", "users", 9))
    gw = GatewayProcess(tmp_path)
    try:
        gw.wait_ready()  # its last request has closed: no client connection is left
        time.sleep(1.0)  # the start-up's own work is over
        pid = gw.proc.pid
        before = thread_switches(pid)
        time.sleep(IDLE_S)
        loop = woken(before, thread_switches(pid), only={pid}).get(f"{before[pid][0]}/{pid}", 0)
        assert loop < MAX_LOOP_WAKEUPS, f"the event loop woke {loop} times in {IDLE_S} s with nothing to do"
    finally:
        gw.close()
