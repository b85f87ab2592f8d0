"""Every flag of ``crdgate run`` reaches the one frozen Config (so a flag can never get lost again).

Two guards: a full command line, one non-default value per flag, becomes
exactly the Config written out by hand below; and each flag alone changes the
Config. The list of flags here must be the parser's: a new flag fails this
test until it is given a value here and a home in the Config.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from pathlib import Path

import pytest
from tlsharness import CA

from controller.authbuild import AuthDefaults
from controller.compile import CompileOptions
from crdgate import cli
from crdgate.config import Config, KubeSource, LogConfig, ManifestsSource, RateLimitConfig, TLSConfig
from crdgate.workers import worker_spec
from gateway.config import GatewayConfig, Limits


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    import os

    for name in list(os.environ):
        if name.startswith("CRDGATE_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("POD_NAME", "gw-0")  # the identity when --identity is not given


@pytest.fixture
def ca_file(tmp_path) -> str:
    path = tmp_path / "ca.pem"
    path.write_bytes(CA().pem)
    return str(path)


def kube_flags(ca_file: str) -> dict[str, list[str]]:
    """One non-default value per flag (the Kubernetes source: it has the most flags)."""
    return {
        "--kube": [],
        "--kubeconfig": ["/etc/kube/config"],
        "--context": ["staging"],
        "--namespace": ["shop,billing", "--namespace", "ops"],
        "--ingress-class": ["edge"],
        "--allow-cross-namespace-refs": ["on"],
        "--gateway-controller-name": ["example.com/edge"],
        "--publish-address": ["203.0.113.7"],
        "--publish-service": ["crdgate-system/crdgate"],
        "--leader-elect": ["off"],
        "--lease-namespace": ["ops"],
        "--lease-name": ["gw-lease"],
        "--identity": ["replica-a"],
        "--status-qps": ["12.5"],
        "--status-burst": ["40"],
        "--listen": ["127.0.0.1:18080"],
        "--admin-listen": ["127.0.0.1:19090"],
        "--trusted-proxies": ["10.0.0.0/8", "--trusted-proxies", "192.168.1.0/24"],
        "--max-body-bytes": ["1000"],
        "--max-header-bytes": ["2000"],
        "--max-headers": ["30"],
        "--max-uri-bytes": ["4000"],
        "--max-response-header-bytes": ["5000"],
        "--header-timeout": ["3.5"],
        "--idle-timeout": ["7.5"],
        "--upstream-idle-timeout": ["8.5"],
        "--access-log": ["off"],
        "--access-log-format": ["text"],
        "--access-log-sample-2xx": ["0.25"],
        "--create-traceparent": ["on"],
        "--otlp-endpoint": ["http://127.0.0.1:4318/v1/traces"],
        "--trace-sample-ratio": ["0.25"],
        "--drain-seconds": ["1.5"],
        "--shutdown-timeout": ["9.5"],
        "--workers": ["3"],
        "--h2c": ["off"],
        "--controller-process": ["on"],
        "--listen-tls": ["127.0.0.1:18443"],
        "--default-certificate": ["crdgate-system/wildcard"],
        "--upstream-ca-file": [ca_file],
        "--redis-url": ["redis://127.0.0.1:6390/2"],
        "--ratelimit-redis-failure": ["closed"],
        "--ratelimit-redis-timeout": ["0.2"],
        "--ratelimit-max-keys": ["500"],
        "--ratelimit-redis-lease": ["64"],
        "--ratelimit-headers": ["off"],
        "--default-auth-secret": ["ops/keys"],
        "--default-auth-type": ["JWT"],
        "--jwks-refresh-floor": ["2.5"],
        "--log-format": ["text"],
        "--log-level": ["debug"],
        "--log-buffer-bytes": ["65536"],
    }


def expected_kube_config(ca_file: str) -> Config:
    return Config(
        source=KubeSource(
            kubeconfig="/etc/kube/config", context="staging", namespaces=("shop", "billing", "ops"),
            identity="replica-a", leader_elect=False, lease_namespace="ops", lease_name="gw-lease",
            publish_address="203.0.113.7", publish_service="crdgate-system/crdgate",
            status_qps=12.5, status_burst=40,
        ),
        gateway=GatewayConfig(
            listen=("127.0.0.1", 18080), admin_listen=("127.0.0.1", 19090),
            trusted_proxies=(ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("192.168.1.0/24")),
            limits=Limits(max_uri_bytes=4000, max_header_bytes=2000, max_headers=30, max_body_bytes=1000,
                          header_timeout=3.5, idle_timeout=7.5, upstream_idle_timeout=8.5,
                          max_response_header_bytes=5000),
            access_log=False, access_log_format="text", access_log_sample_2xx=0.25,
            log_buffer_bytes=65536, listen_tls=("127.0.0.1", 18443), h2c=False, upstream_ca_file=ca_file,
            drain_seconds=1.5, shutdown_timeout=9.5, ratelimit_headers=False, create_traceparent=True,
            otlp_endpoint="http://127.0.0.1:4318/v1/traces", trace_sample_ratio=0.25,
        ),
        compile=CompileOptions(
            ingress_class="edge", allow_cross_namespace_refs=True, gateway_controller_name="example.com/edge",
            auth_defaults=AuthDefaults("ops", "keys", "JWT", jwks_refresh_floor=2.5),
        ),
        tls=TLSConfig(default_certificate=("crdgate-system", "wildcard")),
        ratelimit=RateLimitConfig(redis_url="redis://127.0.0.1:6390/2", redis_failure="closed", redis_timeout=0.2,
                                  max_keys=500, lease_max=64),
        logging=LogConfig(format="text", level="debug", buffer_bytes=65536),
        workers=3,
        controller_process=True,
    )


def run_flags() -> set[str]:
    parser = cli.build_parser()
    (sub,) = [a for a in parser._actions if a.dest == "command"]
    run = sub.choices["run"]
    return {a.option_strings[0] for a in run._actions if a.option_strings and a.dest != "help"}


def config_of(*argv: str) -> Config:
    return cli.build_config(cli.build_parser().parse_args(["run", *argv]))


def test_every_flag_of_run_is_listed_here(ca_file):
    listed = set(kube_flags(ca_file)) | {"--manifests"}
    assert listed == run_flags(), "give a new flag a value in kube_flags() and a place in the Config"


def test_a_full_command_line_becomes_exactly_the_config(ca_file):
    argv = [part for flag, values in kube_flags(ca_file).items() for part in (flag, *values)]
    assert config_of(*argv) == expected_kube_config(ca_file)


def test_without_flags_the_data_plane_gets_its_own_defaults():
    # The flags' defaults are read from the dataclasses: a class attribute of a
    # slots dataclass is a descriptor, not the default, and once reached the proxy as such.
    config = config_of("--kube")
    assert config.gateway == dataclasses.replace(GatewayConfig(), admin_listen=("127.0.0.1", 9090))
    assert config.compile == CompileOptions() and config.ratelimit == RateLimitConfig()


def test_the_manifests_source(tmp_path):
    assert config_of("--manifests", str(tmp_path)).source == ManifestsSource(Path(tmp_path))


@pytest.mark.parametrize("flag", sorted(set(kube_flags("ca.pem")) - {"--kube"}))
def test_each_flag_alone_changes_the_config(flag, ca_file):
    values = kube_flags(ca_file)[flag]
    base = ["--kube"]
    if flag == "--default-auth-type":  # only means something with a secret
        base += ["--default-auth-secret", "ops/keys"]
    if flag == "--trace-sample-ratio":  # only means something with an endpoint
        base += ["--otlp-endpoint", "http://127.0.0.1:4318/v1/traces"]
    assert config_of(*base, flag, *values) != config_of(*base), f"{flag} does not reach the Config"


def test_the_config_is_frozen(tmp_path):
    config = config_of("--manifests", str(tmp_path))
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.workers = 2  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.gateway.access_log = False  # type: ignore[misc]


def test_the_identity_defaults_to_the_pods_name():
    assert config_of("--kube").source.identity == "gw-0"


def test_each_worker_gets_the_data_planes_part_of_the_config_with_its_own_admin(ca_file):
    """A proxy worker (crdgate/proxyworker.py) gets the data plane's settings, never the whole
    Config: leader election, the source and the compile are the supervisor's alone."""
    config = expected_kube_config(ca_file)
    spec = worker_spec(config, 2, "/run/x/worker-2.sock")
    assert spec.index == 2 and spec.admin_socket == "/run/x/worker-2.sock"
    assert spec.gateway == dataclasses.replace(config.gateway, admin_listen=None)
    assert spec.log == config.logging
    rl = config.ratelimit
    assert spec.limiter == {"redis_url": rl.redis_url, "failure_mode": rl.redis_failure,
                            "timeout": rl.redis_timeout, "max_keys": rl.max_keys}


@pytest.mark.parametrize("argv, message", [
    (["--kube", "--workers", "0"], "--workers: expected a number above 0"),
    (["--kube", "--ratelimit-max-keys", "0"], "--ratelimit-max-keys: expected a number above 0"),
    (["--kube", "--jwks-refresh-floor", "-1"], "--jwks-refresh-floor: expected seconds >= 0"),
    (["--kube", "--trusted-proxies", "ten/8"], "--trusted-proxies: not a CIDR"),
    (["--kube", "--trace-sample-ratio", "1.5"], "--trace-sample-ratio: must be between 0 and 1"),
    (["--kube", "--trace-sample-ratio", "0.1"], "--trace-sample-ratio: needs --otlp-endpoint"),
    (["--kube", "--otlp-endpoint", "127.0.0.1:4318"], "--otlp-endpoint: not an http(s) URL"),
    (["--kube", "--manifests", "."], "--manifests and --kube are exclusive"),
    (["--kube", "--status-qps", "0"], "--status-qps: expected a number above 0"),
    (["--kube", "--status-burst", "-1"], "--status-burst: expected a number above 0"),
    ([], "run needs a source"),
])
def test_bad_values_are_usage_errors_naming_the_flag(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["run", *argv])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_a_malformed_redis_url_is_a_usage_error_not_a_traceback(capsys):
    from crdgate.cli import main

    for url in ("memcached://127.0.0.1:11211", "redis+sentinel://127.0.0.1:26379", "redis://127.0.0.1:port/0"):
        with pytest.raises(SystemExit) as exit_info:
            main(["run", "--manifests", ".", "--redis-url", url])
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert "--redis-url" in err and "Traceback" not in err, err
