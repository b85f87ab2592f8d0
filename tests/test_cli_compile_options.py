"""The compile options come from the flags, built in one place, for every subcommand that compiles.

A flag that parses but never reaches the compiler is the failure this guards
against (--default-auth-secret once did nothing): the options are built from
the real parser, and each command is checked to hand them on.
"""

from __future__ import annotations

import json

import pytest

from controller.authbuild import AuthDefaults
from controller.compile import CompileOptions
from crdgate import cli
from crdgate.config import Config, ManifestsSource

AUTH_FLAGS = ["--default-auth-secret", "crdgate-system/gateway-keys", "--default-auth-type", "Basic"]
EXPECTED = AuthDefaults("crdgate-system", "gateway-keys", "Basic")
# Every subcommand that compiles, with the arguments it needs besides the auth flags.
COMPILING = {
    "run": ["run", "--manifests", "."],
    "demo": ["demo"],
    "validate": ["validate", "."],
    "routes": ["routes", "."],
}


@pytest.mark.parametrize("command", sorted(COMPILING))
def test_auth_defaults_reach_the_options_of_every_compiling_command(command):
    args = cli.build_parser().parse_args(
        COMPILING[command] + AUTH_FLAGS + ["--ingress-class", "edge", "--gateway-controller-name", "example.org/gw"]
    )
    options = cli.compile_options(args)
    assert isinstance(options, CompileOptions)
    assert options.auth_defaults == EXPECTED
    assert options.ingress_class == "edge"
    assert options.gateway_controller_name == "example.org/gw"


@pytest.mark.parametrize("command", sorted(COMPILING))
def test_without_a_secret_there_is_no_gateway_default(command):
    options = cli.compile_options(cli.build_parser().parse_args(COMPILING[command]))
    assert options.auth_defaults == AuthDefaults()


def test_flags_come_from_the_environment_too(monkeypatch):
    monkeypatch.setenv("CRDGATE_DEFAULT_AUTH_SECRET", "ops/keys")
    monkeypatch.setenv("CRDGATE_DEFAULT_AUTH_TYPE", "JWT")
    options = cli.compile_options(cli.build_parser().parse_args(["validate", "."]))
    assert options.auth_defaults == AuthDefaults("ops", "keys", "JWT")


def test_a_bad_secret_name_is_a_usage_error_naming_the_flag(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["validate", ".", "--default-auth-secret", "just-a-name"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--default-auth-secret: expected NAMESPACE/NAME" in err and "Traceback" not in err


@pytest.mark.parametrize("command", ["run", "demo"])
def test_run_and_demo_hand_the_options_on(command, monkeypatch, tmp_path):
    """The options the gateway (and each --workers process) compiles with are the ones built here."""
    seen = {}

    def fake(config):
        seen["options"] = config.compile
        return 0

    from crdgate import demo, logs, run

    monkeypatch.setattr(run, "run_gateway", fake)
    monkeypatch.setattr(demo, "run_demo", fake)
    monkeypatch.setattr(logs, "setup_logging", lambda *a: None)
    argv = COMPILING[command] + AUTH_FLAGS
    if command == "run":
        argv = ["run", "--manifests", str(tmp_path)] + AUTH_FLAGS
    assert cli.main(argv) == 0
    assert seen["options"].auth_defaults == EXPECTED


def test_the_workers_controller_compiles_with_the_options(tmp_path):
    """--workers N: the supervisor is the one controller; its publisher compiles with the
    options, and the proxy workers never compile (their spec holds no compile options)."""
    import asyncio
    import dataclasses

    from crdgate import workers
    from crdgate.run import start_controller

    options = CompileOptions(auth_defaults=EXPECTED)
    config = Config(source=ManifestsSource(tmp_path), compile=options, workers=2)
    controller = asyncio.run(start_controller(config))
    assert controller is not None and controller.publisher.options == options
    spec = workers.worker_spec(config, 0, str(tmp_path / "w.sock"))
    assert "compile" not in {f.name for f in dataclasses.fields(spec)}


def _folder(tmp_path):
    (tmp_path / "app.json").write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "gateway-keys", "namespace": "crdgate-system"},
         "stringData": {"ops": "ops-key-000000"}},
        {"apiVersion": "crdgate.io/v1", "kind": "APIEndpoint", "metadata": {"name": "users", "namespace": "shop"},
         "spec": {"path": "/users", "backends": [{"url": "http://127.0.0.1:9"}], "authRequired": True}},
    ]}))
    return tmp_path


@pytest.mark.parametrize("command", ["validate", "routes"])
def test_validate_and_routes_compile_with_the_gateway_default(command, tmp_path, capsys):
    folder = _folder(tmp_path)
    # Without the flags the route has no auth to use.
    code = cli.main([command, str(folder), "--output", "json"])
    without = json.loads(capsys.readouterr().out)
    code_with = cli.main([command, str(folder), "--output", "json",
                          "--default-auth-secret", "crdgate-system/gateway-keys", "--default-auth-type", "APIKey"])
    with_ = json.loads(capsys.readouterr().out)
    if command == "validate":
        assert code == 1 and code_with == 0, with_
        assert "AuthNotConfigured" in json.dumps(without) and "AuthNotConfigured" not in json.dumps(with_)
    else:
        assert code == code_with == 0
        assert without["routes"][0]["policies"]["auth"]["type"] == "none"
        assert with_["routes"][0]["policies"]["auth"] == {"type": "APIKey", "header": "X-API-Key", "consumers": 1}


def test_the_search_namespace_is_where_the_process_runs(monkeypatch, tmp_path):
    # A single-label URL host resolves in the pod's own namespace (controller/compile/options.py).
    args = cli.build_parser().parse_args(["run", "--manifests", "."])
    monkeypatch.delenv("POD_NAMESPACE", raising=False)
    monkeypatch.setattr(cli, "SERVICE_ACCOUNT_NAMESPACE", str(tmp_path / "absent"))
    assert cli.compile_options(args).search_namespace == ""
    sa = tmp_path / "namespace"
    sa.write_text("gateways\n")
    monkeypatch.setattr(cli, "SERVICE_ACCOUNT_NAMESPACE", str(sa))
    assert cli.compile_options(args).search_namespace == "gateways"
    monkeypatch.setenv("POD_NAMESPACE", "crdgate-system")
    assert cli.compile_options(args).search_namespace == "crdgate-system"
