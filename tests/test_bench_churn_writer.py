"""The churn scenario's writer: what it writes, deletes and expects the gateway to serve (no sockets)."""

from __future__ import annotations

import yaml

from bench.churn import POOL_HIGH, POOL_LOW, STABLE, Churner, expectations

URLS = [f"http://127.0.0.1:{9000 + i}" for i in range(STABLE)]


def _load(path):
    (doc,) = list(yaml.safe_load_all(path.read_text()))
    return doc


def test_churn_files_follow_the_live_set(tmp_path):
    churner = Churner(tmp_path, URLS, rate=50, seed=1)
    for _ in range(600):
        churner.change()
    assert churner.changes == 600
    assert POOL_LOW <= len(churner.live) <= POOL_HIGH + 1
    assert churner.removed, "600 changes must include removals"
    files = {p.name for p in tmp_path.glob("*.yaml")}
    assert files == {f"churn-{j}.yaml" for j in churner.live}
    assert not list(tmp_path.glob(".*"))  # no temp file left behind
    for j, (path, ident, path_type) in churner.live.items():
        doc = _load(tmp_path / f"churn-{j}.yaml")
        assert doc["kind"] == "APIEndpoint" and doc["metadata"]["name"] == f"churn-{j}"
        assert doc["spec"]["path"] == path == f"/stable/{j % STABLE}/churn-{j}"
        assert doc["spec"]["pathType"] == path_type
        assert doc["spec"]["backends"] == [{"url": URLS[ident]}]
        # a churned route never points at the backend of the stable route it sits under,
        # so a request answered by the wrong table shows up as a misroute
        assert ident != j % STABLE


def test_expectations_cover_live_and_removed_routes(tmp_path):
    churner = Churner(tmp_path, URLS, rate=50, seed=2)
    for _ in range(300):
        churner.change()
    expected = dict(expectations(churner, sample=5))
    live = {path: ident for path, ident, _ in churner.live.values()}
    removed = set(churner.removed.values())
    assert len(expected) == 10
    for path, ident in expected.items():
        if path in live:
            assert ident == live[path]
        else:
            assert path in removed
            stable = int(path.split("/")[2])
            assert ident == stable  # a removed route falls back to its stable prefix
