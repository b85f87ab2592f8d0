"""`crdgate demo` end to end: each route answers from the backend named after it, and Ctrl-C stops it."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from crdgate.demo import DEMO_API_KEY, DEMO_BACKENDS
from proxyharness import free_port
from polling import wait_until

ROOT = Path(__file__).resolve().parent.parent


def port_taken(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


@pytest.fixture
def demo(tmp_path):
    busy = [p for _, p in DEMO_BACKENDS if port_taken(p)]
    if busy:
        pytest.skip(f"demo backend ports in use: {busy}")
    port, admin = free_port(), free_port()
    out, err = tmp_path / "out", tmp_path / "err"
    with open(out, "w") as o, open(err, "w") as e:
        proc = subprocess.Popen(
            [sys.executable, "-m", "crdgate", "demo", "--listen", f"127.0.0.1:{port}",
             "--admin-listen", f"127.0.0.1:{admin}"], cwd=ROOT, stdout=o, stderr=e)
    try:
        wait_until(lambda: "Try:" in out.read_text() or proc.poll() is not None, 60, "the demo's curl lines")
        assert proc.poll() is None, err.read_text()
        yield proc, port, out, err, admin
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def answer(port: int, path: str, method: str = "GET", headers: dict | None = None) -> str:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method, headers=headers or {})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())["backend"]


def test_each_route_answers_from_its_own_backend_and_ctrl_c_stops(demo):
    proc, port, out, _, _ = demo
    assert answer(port, "/api/v1/users") in ("users-a", "users-b")
    assert answer(port, "/api/v1/orders", headers={"Host": "api.demo.local", "X-Beta": "true"}) == "orders-v2"
    assert answer(port, "/api/v1/orders/status", headers={"Host": "api.demo.local"}) == "orders-v1"
    assert answer(port, "/api/v1/payments/charge", method="POST") == "payments"
    assert answer(port, "/api/v1/accounts", headers={"X-API-Key": DEMO_API_KEY}) == "accounts"
    assert answer(port, "/", headers={"Host": "shop.demo.local"}) == "storefront"
    assert answer(port, "/orders/new", headers={"Host": "shop.demo.local"}) == "orders-v2"

    text = out.read_text()
    assert text.startswith("crdgate demo: starting (Ctrl-C stops; a second Ctrl-C exits at once)")
    assert "a second Ctrl-C exits at once." in text.split("Try:")[1]
    proc.send_signal(signal.SIGINT)
    assert proc.wait(20) == 0  # no drain: nothing waits for the demo's readiness to drop


def test_a_second_ctrl_c_exits_at_once(demo):
    proc, port, _, err, admin = demo
    # A request in flight holds the first Ctrl-C's shutdown (up to --shutdown-timeout, 25 s).
    hold = socket.create_connection(("127.0.0.1", port))
    hold.sendall(b"POST /api/v1/payments/x HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n12345")

    def metrics() -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=5) as r:
            return r.read().decode()

    wait_until(lambda: "crdgate_client_connections 1.0" in metrics(), 10, "the held connection to be open")
    proc.send_signal(signal.SIGINT)
    wait_until(lambda: "draining" in err.read_text(), 10, "the first Ctrl-C to be handled")
    assert proc.poll() is None  # still waiting for the request
    proc.send_signal(signal.SIGINT)
    assert proc.wait(5) == 0
    hold.close()
