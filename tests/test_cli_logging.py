"""Logs a user can follow: text at a terminal, JSON otherwise, every line under crdgate.*."""

from __future__ import annotations

import io
import json
import logging
import time

import pytest

from crdgate import cli, logs
from crdgate.config import LogConfig
from gatewayproc import GatewayProcess

ROUTE = """\
apiVersion: crdgate.io/v1
kind: APIEndpoint
metadata: {{name: {name}, namespace: demo}}
spec:
  path: /{name}
  backends: [{{url: "http://127.0.0.1:9"}}]
"""


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("stream, expected", [(Terminal(), "text"), (io.StringIO(), "json"), (None, "json")])
def test_auto_is_text_at_a_terminal_and_json_otherwise(stream, expected, monkeypatch):
    if stream is None:
        monkeypatch.setattr(logs.sys, "stderr", None)
    assert logs.resolve_log_format("auto", stream) == expected


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_an_explicit_format_wins(fmt):
    assert logs.resolve_log_format(fmt, Terminal()) == fmt


def test_auto_is_the_default_of_run():
    assert cli.build_parser().parse_args(["run", "--manifests", "."]).log_format == "auto"


def test_watchfiles_batches_stay_out_of_the_info_log():
    logs.setup_logging(LogConfig(format="json", level="info"))
    try:
        assert not logging.getLogger("watchfiles.main").isEnabledFor(logging.INFO)
        assert logging.getLogger("crdgate.controller").isEnabledFor(logging.INFO)
    finally:
        logging.getLogger().handlers[:] = []


def json_lines(text: str) -> list[dict]:
    return [json.loads(ln) for ln in text.splitlines() if ln.startswith("{")]


def test_a_running_gateway_logs_only_under_crdgate_and_says_what_changed(tmp_path):
    (tmp_path / "a.yaml").write_text(ROUTE.format(name="a"))
    gw = GatewayProcess(tmp_path)
    try:
        gw.wait_ready()
        (tmp_path / "b.yaml").write_text(ROUTE.format(name="b"))
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            messages = [e["message"] for e in json_lines(gw.logs())]
            if any(m.startswith("serving routing table generation 2:") for m in messages):
                break
            time.sleep(0.05)
        else:
            raise AssertionError(gw.logs())
        entries = json_lines(gw.logs())
        assert entries and all(e["logger"].startswith("crdgate") for e in entries), [e["logger"] for e in entries]
        second = next(e for e in entries if e["message"].startswith("serving routing table generation 2:"))
        assert second["message"].startswith("serving routing table generation 2: 2 route(s), 1 object(s) changed")
        assert (second["generation"], second["routes"]) == (2, 2)
        assert f"APIEndpoint demo/b ({tmp_path}/b.yaml#0): Ready: routed" in [e["message"] for e in entries]
    finally:
        gw.close()
