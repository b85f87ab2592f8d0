"""The README documents every CLI flag, every metric, and keeps its two set-up commands."""

import argparse
import re
from pathlib import Path

from prometheus_client import Counter, Gauge, Histogram

from gateway import metrics
from gateway.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def _flags(parser: argparse.ArgumentParser) -> set[str]:
    out = set()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                out |= _flags(sub)
        for opt in action.option_strings:
            if opt.startswith("--") and opt != "--help":
                out.add(opt)
    return out


def test_every_flag_is_documented():
    missing = sorted(f for f in _flags(build_parser()) if f"`{f}" not in README)
    assert missing == []


def test_every_metric_is_documented():
    names = {"crdgate_requests_total", "crdgate_request_duration_seconds"}
    for obj in vars(metrics).values():
        if isinstance(obj, (Counter, Gauge, Histogram)):
            names.add(obj._name + ("_total" if isinstance(obj, Counter) else ""))
    missing = sorted(n for n in names if f"`{n}`" not in README)
    assert missing == []


def test_the_two_setup_commands_are_there_and_ci_runs_the_test_one():
    blocks = re.findall(r"```\n(.*?)\n```", README, re.S)
    assert "python3 -m pip install -e '.[test]' && crdgate demo" in blocks
    assert "python3 -m pip install -e '.[test]' && python3 -m pytest -q" in blocks
    ci = (ROOT / ".ci" / "run").read_text()
    assert "python3 -m pip install -e '.[test]' && python3 -m pytest -q" in ci
