"""The bench names periodic kernel work of the host (DAMON's kdamond) read from sysfs."""

from __future__ import annotations

from bench.hostnoise import damon_monitors, describe


def _kdamond(root, n: int, state: str, sample_us: str, actions=("pageout",)):
    kd = root / str(n)
    (kd / "contexts" / "0" / "monitoring_attrs" / "intervals").mkdir(parents=True)
    (kd / "state").write_text(state + "\n")
    (kd / "pid").write_text("75\n")
    (kd / "contexts" / "0" / "operations").write_text("paddr\n")
    (kd / "contexts" / "0" / "monitoring_attrs" / "intervals" / "sample_us").write_text(sample_us + "\n")
    for i, action in enumerate(actions):
        (kd / "contexts" / "0" / "schemes" / str(i)).mkdir(parents=True)
        (kd / "contexts" / "0" / "schemes" / str(i) / "action").write_text(action + "\n")


def test_a_running_monitor_is_described_and_a_stopped_one_is_not(tmp_path):
    (tmp_path / "nr_kdamonds").write_text("2\n")
    _kdamond(tmp_path, 0, "on", "500000")
    _kdamond(tmp_path, 1, "off", "5000")
    found = damon_monitors(tmp_path)
    assert found == [{"kdamond": 0, "pid": 75, "operations": "paddr", "sample_us": 500000, "actions": ["pageout"]}]
    line = describe(found)
    assert "kdamond.0 (paddr) samples every 500 ms, schemes: pageout" in line


def test_no_damon_says_nothing(tmp_path):
    assert damon_monitors(tmp_path / "missing") == []
    assert describe([]) is None
