"""The admin dashboard in a real browser: the real gateway process, headless Chromium, a folder that changes.

The page must render from what the gateway ships (no network beyond the admin
port), show the folder's routes in match order with their objects' states, and
follow a change to the folder without a reload. ``/dashboard.json`` never
carries a credential.
"""

from __future__ import annotations

import html
import json
import re
import time
import urllib.error
import urllib.request

import pytest

from browser import dump_dom
from gatewayproc import GatewayProcess, endpoint_manifests
from polling import wait_until

API_KEY = "dashboard-secret-key-4f1c9a"

FOLDER = {
    "backend.yaml": endpoint_manifests("shop", "items", 9),  # nothing listens: only its shape matters
    "items.yaml": """
apiVersion: crdgate.io/v1
kind: APIEndpoint
metadata: {name: list-items, namespace: shop}
spec:
  path: /api/v1/items
  methods: [GET]
  backendService: items
  auth: {type: APIKey, secretRef: {name: item-keys}}
---
apiVersion: v1
kind: Secret
metadata: {name: item-keys, namespace: shop}
type: Opaque
stringData:
  alice: %s
""" % API_KEY,
    "broken.yaml": """
apiVersion: crdgate.io/v1
kind: APIEndpoint
metadata: {name: lost, namespace: shop}
spec:
  path: /api/v1/lost
  backendService: nowhere
""",
}

ADDED = """
apiVersion: crdgate.io/v1
kind: APIEndpoint
metadata: {name: list-carts, namespace: shop}
spec:
  path: /api/v1/carts
  backendService: items
"""


@pytest.fixture
def gateway(tmp_path):
    for name, text in FOLDER.items():
        (tmp_path / name).write_text(text)
    gw = GatewayProcess(tmp_path)
    try:
        gw.wait_ready()
        yield gw
    finally:
        gw.close()


def rows(dom: str, table: str) -> list[str]:
    """The text of each row of ``<table id=table>``'s body, tags stripped."""
    m = re.search(r'<table id="%s">.*?<tbody>(.*?)</tbody>' % table, dom, re.S)
    assert m, f"no table {table} in the page:\n{dom[:3000]}"
    return [html.unescape(re.sub(r"<[^>]+>", " ", r)).split() for r in re.findall(r"<tr[^>]*>(.*?)</tr>", m.group(1), re.S)]


def test_page_renders_the_folder_and_follows_a_change(gateway, chromium, tmp_path):
    # One request through the proxy, so the traffic table has a row.
    try:
        urllib.request.urlopen(gateway.base + "/api/v1/items", timeout=5)
    except urllib.error.HTTPError as e:
        assert e.code == 401
    dom = dump_dom(chromium, gateway.admin + "/")

    routes = rows(dom, "routes")
    assert [r[0] for r in routes] == ["1", "2"], routes  # match order: /api/v1/items, then /api/v1/lost
    assert "/api/v1/items" in routes[0] and "shop/list-items" in routes[0] and "APIEndpoint" in routes[0]
    assert "shop/lost" in routes[1]
    objects = {r[1]: r for r in rows(dom, "objects")}
    assert "Error" in objects["shop/lost"] and "BackendNotFound" in objects["shop/lost"], objects
    assert "Ready" in objects["shop/list-items"]
    traffic = {r[0]: r for r in rows(dom, "traffic")}
    assert traffic["shop/list-items"][-1] == "1", traffic  # one request counted
    assert any("127.0.0.1:9" in r for r in rows(dom, "upstreams"))
    assert 'id="generation">1<' in dom

    assert '<section id="problems-section" hidden' in dom  # no load error yet

    (tmp_path / "carts.yaml").write_text(ADDED)
    (tmp_path / "typo.yaml").write_text("apiVersion: v1\nkind: [\n")

    def shows_change():
        d = dump_dom(chromium, gateway.admin + "/", budget_ms=2500)
        problems = re.search(r'<section id="problems-section"( hidden="")?>.*?</section>', d, re.S)
        if any("shop/list-carts" in r for r in rows(d, "routes")) and problems and not problems.group(1):
            return d, problems.group(0)
        return None

    dom, problems = wait_until(shows_change, timeout=60, step=0.5,
                               what=lambda: "the page to show shop/list-carts and the load error\n" + gateway.logs())
    assert re.search(r'id="generation">[23]<', dom)
    assert "typo.yaml:3" in problems, problems  # file:line of the YAML error


def test_dashboard_json_is_read_only_data_without_credentials(gateway):
    with urllib.request.urlopen(gateway.admin + "/dashboard.json", timeout=5) as r:
        assert r.headers["Content-Type"].startswith("application/json")
        body = r.read().decode()
    assert API_KEY not in body
    data = json.loads(body)
    assert data["ready"] is True and data["table"]["generation"] >= 1
    assert {o["name"]: o["state"] for o in data["objects"]} == {"list-items": "Ready", "lost": "Error"}
    auth = data["routes"]["shown"][0]["policies"]["auth"]
    assert auth["type"] == "APIKey" and auth["consumers"] == 1
    # The page and its files come from the gateway itself; nothing refers elsewhere.
    for path in ("/", "/dashboard/dashboard.js", "/dashboard/dashboard.css"):
        with urllib.request.urlopen(gateway.admin + path, timeout=5) as r:
            text = r.read().decode()
            assert r.status == 200
            assert "Content-Security-Policy" in r.headers
        assert not re.search(r"(src|href)=\"(https?:)?//", text), path
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(gateway.admin + "/dashboard/../admin.py", timeout=5)
    assert e.value.code == 404
    req = urllib.request.Request(gateway.admin + "/dashboard.json", method="POST")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=5)
    assert e.value.code == 405


def test_with_workers_the_supervisor_adds_up_their_traffic(tmp_path):
    (tmp_path / "backend.yaml").write_text(FOLDER["backend.yaml"])
    (tmp_path / "carts.yaml").write_text(ADDED)
    gw = GatewayProcess(tmp_path, "--workers", "2")
    try:
        gw.wait_ready(timeout=60)
        sent = 40
        for _ in range(sent):  # new connections: the kernel spreads them over both workers
            try:
                urllib.request.urlopen(gw.base + "/nowhere", timeout=5)
            except urllib.error.HTTPError as e:
                assert e.code == 404

        def merged():
            with urllib.request.urlopen(gw.admin + "/dashboard.json", timeout=5) as r:
                data = json.loads(r.read())
            rows = {t["route"]: t for t in data["traffic"]["routes"]}
            return data if rows.get("-", {}).get("requests") == sent else None

        data = wait_until(merged, timeout=20, step=0.2, what="both workers' requests added up")
        assert data["workers"] == {"answered": 2, "total": 2}
        assert [r["name"] for r in data["routes"]["shown"]] == ["shop/list-carts"]
        with urllib.request.urlopen(gw.admin + "/", timeout=5) as r:
            assert b"dashboard.js" in r.read()
    finally:
        gw.close()
