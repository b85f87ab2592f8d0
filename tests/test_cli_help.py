"""What `crdgate --help`, `--version` and each subcommand's help tell a new user."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from bench.__main__ import parser as bench_parser
from crdgate import cli

ROOT = Path(__file__).resolve().parent.parent


def crdgate(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "crdgate", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, env=env)


def subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("no subcommands")


def test_version_prints_the_package_version():
    done = crdgate("--version")
    assert done.returncode == 0, done.stderr
    name, version = done.stdout.split(maxsplit=1)
    assert name == "crdgate"
    assert version.strip()[0].isdigit(), done.stdout


def test_run_help_starts_with_a_folder_and_a_kube_example():
    done = crdgate("run", "--help")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    first = lines.index("examples:")
    assert first < 5, done.stdout  # right under the usage lines, before any option
    examples = [ln.strip() for ln in lines[first + 1:first + 3]]
    assert examples[0].startswith("crdgate run --manifests ")
    assert examples[1].startswith("crdgate run --kube")
    assert done.stdout.index("examples:") < done.stdout.index("--listen")


def every_parser():
    top = cli.build_parser()
    yield "crdgate", top
    for name, sub in subparsers(top).items():
        if name != "bench":  # passes its arguments on to bench's own parser, checked below
            yield f"crdgate {name}", sub
    yield "crdgate bench", bench_parser()


@pytest.mark.parametrize("name, parser", list(every_parser()), ids=lambda v: v if isinstance(v, str) else "")
def test_every_option_has_help(name, parser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            continue
        assert action.help and action.help.strip(), f"{name}: {action.option_strings or action.dest} has no help"


@pytest.mark.parametrize("command", ["run", "demo"])
def test_boolean_defaults_read_on_or_off(command):
    parser = subparsers(cli.build_parser())[command]
    text = parser.format_help()
    assert "default: True" not in text and "default: False" not in text
    flat = " ".join(text.split())
    assert "--kube [on|off]" in flat and "(default: off; env CRDGATE_KUBE)" in flat


def test_demo_help_shows_the_demo_defaults():
    flat = " ".join(subparsers(cli.build_parser())["demo"].format_help().split())
    assert "address of the proxy listener (default: 127.0.0.1:8080;" in flat
    assert "(default: text; env CRDGATE_LOG_FORMAT)" in flat
    assert "one JSON line per request on stdout (default: off;" in flat
    run = " ".join(subparsers(cli.build_parser())["run"].format_help().split())
    assert "address of the proxy listener (default: 0.0.0.0:8080;" in run
    assert "(default: auto; env CRDGATE_LOG_FORMAT)" in run


def test_demo_defaults_are_what_it_runs_with():
    args = cli.build_parser().parse_args(["demo"])
    assert args.listen == ("127.0.0.1", 8080)
    assert args.log_format == "text" and args.access_log is False


def test_demo_honours_the_environment_like_run(monkeypatch):
    monkeypatch.setenv("CRDGATE_LISTEN", "127.0.0.1:9999")
    monkeypatch.setenv("CRDGATE_LOG_FORMAT", "json")
    monkeypatch.setenv("CRDGATE_ACCESS_LOG", "on")
    for command in ("run", "demo"):
        args = cli.build_parser().parse_args([command])
        assert args.listen == ("127.0.0.1", 9999), command
        assert args.log_format == "json", command
        assert args.access_log is True, command
    # A flag on the command line still wins.
    args = cli.build_parser().parse_args(["demo", "--log-format", "text"])
    assert args.log_format == "text"
