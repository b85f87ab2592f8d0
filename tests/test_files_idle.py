"""An idle manifests watch costs the process nothing: no thread wakes while no file changes.

The watch used to poll from a thread every 10 ms (watchfiles' ``step``), a
hundred wake-ups a second, each one a GIL hand-off with the proxy's event loop;
the bench drives every scenario from a manifests folder, so every p99 paid it.
"""

from __future__ import annotations

import asyncio
import threading

import pytest

from controller import files
from controller.files import ManifestSource
from controller.store import Store
from polling import eventually
from wakeups import needs_proc, thread_switches, woken

SVC = "apiVersion: v1\nkind: Service\nmetadata: {{name: users, namespace: shop}}\nspec: {{ports: [{{port: {port}}}]}}\n"
IDLE_S = 1.5
# Wake-ups allowed in IDLE_S: the event loop's own timers of the test; polling every
# 10 ms is about 150.
MAX_WAKEUPS = 20


@needs_proc
async def test_an_idle_watch_wakes_no_thread_and_a_change_still_arrives(tmp_path, monkeypatch):
    # No periodic rescan in the test's time: neither counted as idle cost nor
    # delivering the change the watch must deliver itself.
    monkeypatch.setattr(files, "RESYNC_MS", 600_000)
    (tmp_path / "a.yaml").write_text(SVC.format(port=80))
    store = Store()
    source = ManifestSource(store, tmp_path)
    loop_thread = threading.get_native_id()
    threads_before = set(thread_switches())
    task = asyncio.ensure_future(source.run())
    try:
        await eventually(store.synced)
        await asyncio.sleep(0.2)  # the watch is in place
        before = thread_switches()
        await asyncio.sleep(IDLE_S)
        # The loop's thread, and any thread the watch started (not pytest's own).
        wakeups = woken(before, thread_switches(), only={loop_thread} | (set(before) - threads_before))
        assert sum(wakeups.values()) < MAX_WAKEUPS, wakeups
        (tmp_path / "a.yaml").write_text(SVC.format(port=81))
        await eventually(lambda: store.get("Service", "shop", "users")["spec"]["ports"][0]["port"] == 81)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
