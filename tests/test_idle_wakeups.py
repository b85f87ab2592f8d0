"""An idle ``crdgate run --manifests`` leaves its event loop alone: no thread wakes on a timer.

Every thread wake-up takes the GIL, and with the gateway pinned to a CPU the CPU,
from the proxy's event loop; under load that is latency in the tail (the
p99-fixed bench scenario). The manifests watch used to poll from a thread every
10 ms and the process-log writer to wake every 50 ms: about 120 wake-ups a
second with nothing to do. The event loop's own thread is not counted here: its
timers (the connection sweep) run where the requests run, without a hand-off.
"""

from __future__ import annotations

import time

from gatewayproc import GatewayProcess, endpoint_manifests
from wakeups import needs_proc, thread_switches, woken

IDLE_S = 2.0
MAX_WAKEUPS = 10  # the periodic rescan of the folder (every 2 s, in a worker thread) and slack


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
