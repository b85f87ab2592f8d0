"""The scale scenario (bench/kubescale.py) end to end at a small size, against the fake API server:
statuses, echoes, a relist, and one controller for two workers (one watch per kind)."""

from __future__ import annotations

import asyncio

from bench import kubescale


def test_scale_measures_statuses_relists_and_one_controller_for_two_workers(tmp_path):
    r = asyncio.run(kubescale.measure(40, 1, 0.5, tmp_path, workers=2))
    assert r["routes"] == 40 and r["ready_s"] > 0 and r["status_writes"] >= 40
    assert r["echo_swaps"] == 0 and r["status_only_updates"] >= 40
    assert r["relists"] == 1 and len(r["restart_served_s"]) == 1 and len(r["rss_mib"]) == 2
    # One process holds one watch per kind; so does a replica of one controller and two workers.
    single, replica = r["watches"], r["workers"]["watches"]
    assert single and set(single.values()) == {1}, single
    assert {"APIEndpoint", "Service", "EndpointSlice", "Secret"} <= set(single)
    assert replica == single, (replica, single)
    w = r["workers"]
    assert "error" not in w and w["workers"] == 2 and w["ready_s"] > 0
    assert len(w["worker_rss_mib"]) == 2 and all(x > 0 for x in w["worker_rss_mib"])
    assert w["controller_rss_mib"] > 0
    line = kubescale.describe(r)
    assert "watches on the API server: 1 per kind" in line and "--workers 2: ready" in line
    assert "RSS MiB controller" in line


def test_scale_without_workers_leaves_them_out(tmp_path):
    r = asyncio.run(kubescale.measure(10, 0, 0.5, tmp_path, workers=0))
    assert "workers" not in r and r["watches"] and r["rss_mib"]
    assert "--workers" not in kubescale.describe(r)
