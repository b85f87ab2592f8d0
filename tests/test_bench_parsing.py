"""The benchmark's pure pieces: wrk's JSON line, flags, statistics, configs, pinning (no sockets)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from bench import nginx, pinning, stats
from bench.__main__ import duration, main, scenario_list
from bench.tools import install_hint
from bench.wrk import WrkError, lua_script, parse_output

WRK_LINE = (
    'Running 1s test @ http://127.0.0.1:1/\n'
    'WRK_JSON {"requests": 2000, "duration_us": 2000000, "bytes": 1, '
    '"errors": {"connect": 0, "read": 1, "write": 0, "status": 3, "timeout": 2}, '
    '"non2xx": 5, "checked": 1990, "misroutes": 4, "misroute_sample": "backend-2 /stable/1/req\\u000a", '
    '"latency_us": {"mean": 10.5, "stdev": 1.0, "max": 90, "50": 8, "90": 12, "99": 40, "99.9": 80}}\n'
)


def test_wrk_json_line_parsed():
    r = parse_output(WRK_LINE)
    assert r.rps == 1000.0
    assert r.latency_us["p50"] == 8 and r.latency_us["p99"] == 40 and r.latency_us["p99.9"] == 80
    assert r.misroutes == 4 and r.misroute_sample == "backend-2 /stable/1/req\n"
    # wrk's own errors (6) plus the non-2xx below 400 that only the Lua hook saw (5 - 3)
    assert r.errors_total == 8


def test_wrk_without_json_line_is_an_error():
    with pytest.raises(WrkError, match="no WRK_JSON"):
        parse_output("Running 1s test\n")


def test_lua_script_checks_bodies_only_when_asked():
    plain = lua_script("/tmp/paths.txt", {"X-API-Key": 'k"1'})
    checked = lua_script("/tmp/paths.txt", check_identity=True)
    assert "function response" not in plain and "function response" in checked
    assert '["X-API-Key"] = "k\\"1"' in plain


def test_duration_and_scenarios_flags():
    assert duration("5") == 5 and duration("500ms") == 0.5 and duration("1m") == 60
    with pytest.raises(argparse.ArgumentTypeError):
        duration("fast")
    assert scenario_list(["lookup,plain", "plain"]) == ("plain", "lookup")
    with pytest.raises(argparse.ArgumentTypeError, match="unknown scenario"):
        scenario_list(["nope"])
    assert main(["--scenario", "nope"]) == 2
    assert main(["--runs", "0"]) == 2


def test_stats():
    assert stats.percentile([5, 1, 3, 2, 4], 50) == 3
    assert stats.percentile(list(range(1, 21)), 99) == 20
    assert stats.spread_pct([90, 100, 110]) == pytest.approx(20.0)
    assert stats.ratio(50, 100) == 0.5 and stats.ratio(1, 0) is None


def test_nginx_configs(tmp_path: Path):
    backend = nginx.backend_conf(tmp_path, [1001, 1002])
    assert 'listen 127.0.0.1:1002' in backend and 'return 200 "backend-1 $request_uri\\n"' in backend
    proxy = nginx.proxy_conf(tmp_path, 2000, 1001)
    assert "worker_processes 1;" in proxy and "keepalive 256;" in proxy
    assert 'proxy_set_header Connection "";' in proxy and "proxy_http_version 1.1;" in proxy


def test_pinning_plan():
    two = pinning.plan([0, 1], "/usr/bin/taskset")
    assert two.prefix(pinning.GATEWAY) == ["/usr/bin/taskset", "-c", "0"]
    assert two.prefix(pinning.LOAD) == two.prefix(pinning.BACKEND) == ["/usr/bin/taskset", "-c", "1"]
    four = pinning.plan([0, 1, 2, 3], "/usr/bin/taskset")
    assert four.prefix(pinning.BACKEND)[-1] == "1" and four.prefix(pinning.LOAD)[-1] == "2,3"
    assert pinning.plan([0], "/usr/bin/taskset").prefix(pinning.GATEWAY) == []
    assert pinning.plan([0, 1], None).prefix(pinning.GATEWAY) == []


def test_install_hint_names_debian_packages():
    assert install_hint(["wrk", "nginx"]) == "apt-get install nginx-light wrk"


def test_endpoints_scenario_manifests_compile_to_one_endpoint_per_port():
    from bench import manifests
    from bench.scenarios import LOAD_SCENARIOS, _endpoints
    from bench.settings import Settings
    from controller.compile import compile_snapshot
    from gateway.routing import Endpoint
    from kobjects import snapshot

    class FakeBackend:
        ports = [18101 + i for i in range(8)]

    setup = _endpoints(FakeBackend(), Settings())
    assert "endpoints" in LOAD_SCENARIOS and setup.any_backend and setup.paths == ["/pods"]
    result = compile_snapshot(snapshot(*setup.docs["endpoints.yaml"]))
    assert {k: s.state for k, s in result.statuses.items()} == {f"APIEndpoint:{manifests.NAMESPACE}/pods": "Ready"}
    eps = result.table.endpoints[f"{manifests.NAMESPACE}/pods:80"].endpoints
    assert sorted(eps, key=lambda e: e.port) == [Endpoint("127.0.0.1", p) for p in FakeBackend.ports]
