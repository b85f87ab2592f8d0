"""``crdgate explain --manifests`` on deploy/examples: which route, why, policies,
rewrites, backends, 404/405 explained, JSON shape and exit codes."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from crdgate.cli import main
from gatewayproc import ROOT

EXAMPLES = str(ROOT / "deploy" / "examples")


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["explain", *args])
    out, err = capsys.readouterr()
    return code, out, err


def explain_json(capsys, *args: str) -> tuple[int, dict]:
    code, out, _ = run(capsys, *args, "--manifests", EXAMPLES, "--output", "json")
    return code, json.loads(out)


def test_canary_weights_and_wildcard_host(capsys):
    code, doc = explain_json(capsys, "GET", "http://eu.api.demo.local/api/v1/orders/17")
    assert code == 0 and doc["status"] == 200
    assert (doc["route"]["namespace"], doc["route"]["name"]) == ("demo", "orders")
    assert doc["decidedBy"]["step"] == "onlyMatch" and "wildcard host *.api.demo.local" in doc["decidedBy"]["reason"]
    shares = {b["backend"]: (b["weight"], b["share"]) for b in doc["backends"]}
    assert shares == {"demo/orders-v1:80": (9, 90.0), "demo/orders-v2:80": (1, 10.0)}
    assert all(b["state"] == "Ready" and b["endpoints"] for b in doc["backends"])
    assert [p["policy"] for p in doc["policies"]] == ["responseHeaders", "timeouts", "retries"]


def test_header_match_wins_and_the_loser_is_named(capsys):
    code, doc = explain_json(capsys, "GET", "http://api.demo.local/api/v1/orders", "-H", "X-Beta: true")
    assert code == 0 and doc["route"]["name"] == "orders-beta"
    assert doc["decidedBy"] == {"step": "headers", "reason": "more header matches (1 against 0)"}
    [lost] = doc["candidates"]
    assert (lost["name"], lost["outcome"], lost["step"]) == ("orders", "lost", "headers")
    # Without the header the beta route is rejected, and says which header it wanted.
    code, doc = explain_json(capsys, "GET", "http://api.demo.local/api/v1/orders")
    assert code == 0 and doc["route"]["name"] == "orders"
    [rejected] = doc["candidates"]
    assert (rejected["name"], rejected["outcome"], rejected["step"]) == ("orders-beta", "rejected", "headers")
    assert "x-beta = true is not sent" in rejected["reason"]


def test_ingress_exact_path_beats_prefixes(capsys):
    code, doc = explain_json(capsys, "GET", "http://shop.demo.local/orders/new")
    assert code == 0
    assert (doc["route"]["kind"], doc["route"]["rule"], doc["route"]["pathType"]) == (
        "Ingress", "rules[0].paths[2]", "Exact")
    assert doc["decidedBy"] == {"step": "path", "reason": "Exact path beats Prefix"}
    assert [c["rule"] for c in doc["candidates"]] == ["rules[0].paths[1]", "rules[0].paths[0]"]
    # One element deeper: no Exact match, the longest prefix decides.
    code, doc = explain_json(capsys, "GET", "http://shop.demo.local/orders/new/1")
    assert doc["route"]["rule"] == "rules[0].paths[1]"
    assert doc["decidedBy"] == {"step": "path", "reason": "longest prefix: /orders beats /"}


def test_rewrite_auth_and_rate_limit_are_explained(capsys):
    code, doc = explain_json(capsys, "POST", "http://any.host/api/v1/payments/42?x=1")
    assert code == 0 and doc["route"]["name"] == "payments"
    assert doc["upstream"] == {"path": "/payments/42", "pathRewritten": True, "host": "127.0.0.1:18085", "hostFrom": "backend URL"}
    assert [p["policy"] for p in doc["policies"]][:2] == ["cors", "maxBodyBytes"]
    code, doc = explain_json(capsys, "GET", "/api/v1/accounts", "-H", "Host: x", "-H", "X-API-Key: demo-key-123")
    auth, rate = doc["policies"][0], doc["policies"][1]
    assert (auth["policy"], auth["type"], auth["header"]) == ("auth", "APIKey", "X-API-Key")
    assert (rate["policy"], rate["key"]) == ("rateLimit", "Consumer") and "consumer" in rate["keyedBy"]
    code, out, _ = run(capsys, "GET", "/api/v1/accounts", "-H", "X-API-Key: demo-key-123", "--manifests", EXAMPLES)
    assert "credential read from header X-API-Key" in out
    assert "demo-key-123" not in out  # neither the key sent nor the Secret's


def test_redirect_is_answered_by_the_gateway(capsys):
    code, doc = explain_json(capsys, "GET", "http://api.demo.local:8080/api/v0/orders/9")
    assert code == 0 and doc["route"]["name"] == "old-orders"
    assert doc["redirect"] == {"statusCode": 301, "location": "http://api.demo.local:8080/api/v1/orders/9"}
    assert "backends" not in doc


def test_cors_preflight_is_answered_by_the_announced_route(capsys):
    preflight = ["-H", "Origin: https://shop.demo.local", "-H", "Access-Control-Request-Method: POST"]
    code, doc = explain_json(capsys, "OPTIONS", "/api/v1/payments", *preflight)
    assert code == 0 and doc["route"]["name"] == "payments" and doc["decidedBy"]["step"] == "preflight"
    assert doc["preflight"] == {"answeredBy": "gateway", "statusCode": 204, "reason": "preflight"}
    assert "backends" not in doc
    code, doc = explain_json(capsys, "OPTIONS", "/api/v1/payments", "-H", "Origin: https://evil.example",
                             "-H", "Access-Control-Request-Method: POST")
    assert doc["preflight"]["statusCode"] == 403 and "evil" not in json.dumps(doc)


def test_405_names_the_route_and_its_methods(capsys):
    code, out, _ = run(capsys, "DELETE", "/api/v1/payments/1", "--manifests", EXAMPLES)
    assert code == 1
    assert "path matched demo/payments but method DELETE is not in [GET, POST]" in out
    code, doc = explain_json(capsys, "DELETE", "/api/v1/payments/1")
    assert code == 1 and doc["status"] == 405 and doc["allow"] == ["GET", "POST"] and doc["route"] is None


def test_404_and_normalised_path(capsys):
    code, doc = explain_json(capsys, "GET", "http://nowhere.example/api/v2/x")
    assert code == 1 and doc["status"] == 404 and doc["candidates"] == []
    assert doc["reason"] == "no route's host and path match"
    code, doc = explain_json(capsys, "GET", "http://x/api//v1/users/./7/../8")
    assert code == 0 and doc["route"]["name"] == "list-users"
    assert doc["request"]["path"] == "/api/v1/users/8" and doc["request"]["pathAsSent"] == "/api//v1/users/./7/../8"
    code, out, _ = run(capsys, "GET", "http://x/api//v1/users", "--manifests", EXAMPLES)
    assert "(normalised from /api//v1/users)" in out


def test_json_shape(capsys):
    _, doc = explain_json(capsys, "GET", "http://api.demo.local/api/v1/orders/status")
    assert set(doc) >= {"request", "generation", "status", "route", "decidedBy", "candidates", "policies",
                        "upstream", "backends", "notReady", "loadErrors"}
    assert set(doc["route"]) >= {"kind", "namespace", "name", "rule", "path", "pathType", "hosts", "methods", "fallback"}
    for c in doc["candidates"]:
        assert set(c) >= {"kind", "namespace", "name", "outcome", "step", "reason", "hostMatch", "pathMatch"}


def test_objects_out_of_the_table_are_listed(tmp_path, capsys):
    (tmp_path / "a.yaml").write_text(
        "apiVersion: crdgate.io/v1\nkind: APIEndpoint\nmetadata: {name: broken, namespace: x}\n"
        "spec: {path: '/(a)\\1', pathType: RegularExpression, backendService: svc}\n")
    code, out, _ = run(capsys, "GET", "http://h/aa", "--manifests", str(tmp_path), "--output", "json")
    doc = json.loads(out)
    assert code == 1 and doc["status"] == 404
    [entry] = doc["notReady"]
    assert (entry["kind"], entry["name"], entry["state"]) == ("APIEndpoint", "broken", "Error")
    assert "backreferences" in entry["message"]
    code, out, _ = run(capsys, "GET", "http://h/aa", "--manifests", str(tmp_path))
    assert "Error    APIEndpoint x/broken" in out


@pytest.mark.parametrize("args, message", [
    (["GET", "http://x/%2f", "--manifests", EXAMPLES], "encoded slash"),
    (["GET", "/", "-H", "no colon", "--manifests", EXAMPLES], "Name: value"),
    (["GET", "/", "--manifests", "/nonexistent/folder"], "no such file"),
])
def test_bad_input_is_exit_2_with_a_message(capsys, args, message):
    code, _, err = run(capsys, *args)
    assert code == 2 and message in err and "Traceback" not in err


def test_source_is_required():
    proc = subprocess.run([sys.executable, "-m", "crdgate", "explain", "GET", "/"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "--manifests" in proc.stderr
