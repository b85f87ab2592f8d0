"""The admin ``/explain`` of a real gateway process, and ``crdgate explain --admin`` against it:
the same explanation as offline, on the live table, with the controller's statuses and no secret."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request

import pytest

from gatewayproc import ROOT, GatewayProcess
from polling import wait_until
from proxyharness import free_port

BROKEN = """
apiVersion: crdgate.io/v1
kind: APIEndpoint
metadata: {name: broken, namespace: demo}
spec: {path: /broken, backendService: no-such-service}
"""


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    folder = tmp_path_factory.mktemp("manifests")
    shutil.copytree(ROOT / "deploy" / "examples", folder, dirs_exist_ok=True)
    (folder / "broken.yaml").write_text(BROKEN)
    gw = GatewayProcess(folder)
    try:
        gw.wait_ready()
        yield gw
    finally:
        gw.close()


def admin_explain(gw, **params) -> tuple[int, dict]:
    query = urllib.parse.urlencode([(k, v) for k, vs in params.items() for v in (vs if isinstance(vs, list) else [vs])])
    try:
        with urllib.request.urlopen(f"{gw.admin}/explain?{query}", timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "crdgate", "explain", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)


def test_admin_explains_on_the_live_table(gateway):
    status, doc = admin_explain(gateway, method="GET", url="http://api.demo.local/api/v1/orders",
                                header=["X-Beta: true"])
    assert status == 200 and doc["route"]["name"] == "orders-beta" and doc["decidedBy"]["step"] == "headers"
    assert doc["generation"] >= 1
    # The controller's statuses come along: the broken object says why it does not route.
    broken = [o for o in doc["notReady"] if o["name"] == "broken"]
    assert broken and broken[0]["state"] == "Error" and "no-such-service" in broken[0]["message"]
    status, doc = admin_explain(gateway, method="DELETE", url="/api/v1/payments/1")
    assert status == 200 and doc["status"] == 405 and doc["allow"] == ["GET", "POST"]


def test_admin_explain_shows_no_credential(gateway):
    status, doc = admin_explain(gateway, method="GET", url="/api/v1/accounts?api_key=demo-key-123",
                                header=["Host: x", "X-API-Key: demo-key-123"])
    text = json.dumps(doc)
    assert status == 200 and doc["route"]["name"] == "list-accounts"
    assert "demo-key-123" not in text and "demo-user" not in text
    assert doc["policies"][0]["policy"] == "auth" and doc["policies"][0]["header"] == "X-API-Key"


@pytest.mark.parametrize("params, message", [
    ({"method": "GET"}, "missing query parameter url"),
    ({"method": "GET", "url": "/%2f"}, "encoded slash"),
    ({"method": "GET", "url": "/", "header": "nocolon"}, "Name: value"),
])
def test_admin_explain_bad_request_is_400(gateway, params, message):
    status, doc = admin_explain(gateway, **params)
    assert status == 400 and message in doc["error"]


def test_cli_admin_form_end_to_end(gateway):
    admin = gateway.admin.removeprefix("http://")
    proc = cli("GET", "http://eu.api.demo.local/api/v1/orders/1", "--admin", admin, "--output", "json")
    assert proc.returncode == 0, proc.stderr
    live = json.loads(proc.stdout)
    offline = json.loads(cli("GET", "http://eu.api.demo.local/api/v1/orders/1",
                             "--manifests", str(gateway.manifests), "--output", "json").stdout)
    for key in ("route", "decidedBy", "candidates", "policies", "upstream", "backends"):
        assert live[key] == offline[key], key
    proc = cli("DELETE", "/api/v1/payments/1", "--admin", gateway.admin)
    assert proc.returncode == 1 and "method DELETE is not in [GET, POST]" in proc.stdout
    assert "Error    APIEndpoint demo/broken" in proc.stdout


def test_cli_admin_unreachable_is_exit_2():
    proc = cli("GET", "/", "--admin", f"127.0.0.1:{free_port()}")  # nobody listens there
    assert proc.returncode == 2 and "cannot ask the admin listener" in proc.stderr and "Traceback" not in proc.stderr


def test_a_published_change_is_explained(gateway):
    """A change to the folder is explained once the gateway publishes it (the live table)."""
    (gateway.manifests / "later.yaml").write_text(
        "apiVersion: crdgate.io/v1\nkind: APIEndpoint\nmetadata: {name: later, namespace: demo}\n"
        "spec: {path: /later, backends: [{url: 'http://127.0.0.1:9'}]}\n")
    try:
        wait_until(lambda: admin_explain(gateway, method="GET", url="/later")[1]["status"] == 200,
                   timeout=15, what="the new route in /explain")
    finally:
        (gateway.manifests / "later.yaml").unlink()


def test_workers_supervisor_forwards_explain(tmp_path):
    """With --workers the supervisor owns the admin port and asks worker 0."""
    shutil.copytree(ROOT / "deploy" / "examples", tmp_path, dirs_exist_ok=True)
    gw = GatewayProcess(tmp_path, "--workers", "2")
    try:
        gw.wait_ready(timeout=30)
        proc = cli("GET", "http://shop.demo.local/orders/new", "--admin", gw.admin, "--output", "json")
        assert proc.returncode == 0, proc.stderr
        doc = json.loads(proc.stdout)
        assert doc["route"]["rule"] == "rules[0].paths[2]" and doc["decidedBy"]["step"] == "path"
    finally:
        gw.close()
