"""The Gateway API corpus (tests/gatewayapi/cases.py) through the real gateway.

The corpus's manifests are copied into a folder with each backend Service's
EndpointSlice pointed at an echo server on 127.0.0.1; ``crdgate run
--manifests`` serves them, and each case's request is sent to it over a real
connection. The echo server answers with who it is and what it received, and
waits or adds response headers when the request asks it to (test-only
headers). The cases crdgate does not pass are listed in KNOWN_GAPS, with why:
docs/gateway-api.md lists the same gaps.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import math
import shutil
import threading
from collections import Counter
from pathlib import Path

import pytest
import yaml
from aiohttp import web

from gatewayapi.cases import CASES, ERROR_500, MANIFESTS, Case
from gatewayproc import GatewayProcess
from polling import wait_until
from proxyharness import free_port

DELAY = "x-test-backend-delay"  # the echo server waits this many seconds
RESPOND = "x-test-backend-respond"  # JSON [[name, value], ...]: headers the echo server answers with
# A split is a weighted random choice per request: each share is checked within five standard
# deviations of a binomial count (about one false failure in 3.5 million per share), over enough
# requests that the bound still tells 0.5 from 0.7 (0.14 and 0.13 at 300).
SPLIT_REQUESTS = 300  # requests sent for a case that expects a split
SPLIT_SIGMAS = 5.0

# Cases crdgate does not pass, and why (docs/gateway-api.md, "Not supported").
KNOWN_GAPS = {
    "parents: by sectionName: not the other":
        "one routing table for all listeners: a route attached to one HTTP listener is served on every port",
    "parents: by port: not the other":
        "one routing table for all listeners: a route attached to one HTTP listener is served on every port",
}


class Echo:
    """One echo server per backend Service, in a thread of their own."""

    def __init__(self, services: list[str]):
        self.ports = {svc: free_port() for svc in services}
        self.seen: dict[str, list[str]] = {svc: [] for svc in services}  # path and query of each request
        self.loop = asyncio.new_event_loop()
        self.runners: list[web.AppRunner] = []
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)

    async def _start(self) -> None:
        for svc, port in self.ports.items():
            app = web.Application()
            app.router.add_route("*", "/{tail:.*}", self._handler(svc))
            runner = web.AppRunner(app, access_log=None, handle_signals=False)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", port).start()
            self.runners.append(runner)

    def _handler(self, svc: str):
        async def echo(request: web.Request) -> web.Response:
            await request.read()
            self.seen[svc].append(request.path_qs)
            delay = float(request.headers.get(DELAY, "0") or 0)
            if delay:
                await asyncio.sleep(delay)
            headers = {k.lower(): ",".join(request.headers.getall(k)) for k in request.headers}
            resp = web.json_response({"backend": svc, "path": request.path_qs, "host": request.host, "headers": headers})
            for name, value in json.loads(request.headers.get(RESPOND, "[]")):
                resp.headers.add(name, value)
            return resp

        return echo

    def close(self) -> None:
        async def stop():
            for r in self.runners:
                await r.cleanup()

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def _loopback_manifests(folder: Path) -> list[str]:
    """Copy the corpus into ``folder``; the EndpointSlices are rewritten later (``_point_at``)."""
    shutil.copytree(MANIFESTS, folder)
    docs = list(yaml.safe_load_all((folder / "01-backends.yaml").read_text()))
    return [f"{d['metadata']['namespace']}/{d['metadata']['name']}" for d in docs if d and d["kind"] == "Service"]


def _point_at(folder: Path, echo: Echo) -> None:
    path = folder / "01-backends.yaml"
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    for d in docs:
        if d["kind"] == "EndpointSlice":
            svc = f"{d['metadata']['namespace']}/{d['metadata']['labels']['kubernetes.io/service-name']}"
            d["endpoints"] = [{"addresses": ["127.0.0.1"], "conditions": {"ready": True}}]
            d["ports"] = [{**d["ports"][0], "port": echo.ports[svc]}]
    path.write_text(yaml.safe_dump_all(docs))


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gwapi") / "manifests"
    echo = Echo(_loopback_manifests(folder))
    _point_at(folder, echo)
    gw = GatewayProcess(folder)
    try:
        gw.wait_ready()
        yield gw, echo
    finally:
        gw.close()
        echo.close()


def send(gw: GatewayProcess, case: Case) -> tuple[int, http.client.HTTPMessage, dict | None]:
    r = case.request
    headers = {"Host": r.host, **{k: v for k, v in r.headers}}
    if r.backend_delay:
        headers[DELAY] = str(r.backend_delay)
    if r.backend_response_headers:
        headers[RESPOND] = json.dumps(r.backend_response_headers)
    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=10)
    try:
        conn.request(r.method, r.path, headers=headers)
        resp = conn.getresponse()
        body = resp.read()
    finally:
        conn.close()
    seen = None
    if resp.getheader("Content-Type", "").startswith("application/json") and body:
        data = json.loads(body)
        seen = data if isinstance(data, dict) and "backend" in data else None
    return resp.status, resp.msg, seen


def check(gw: GatewayProcess, echo: Echo, case: Case) -> None:
    e, r = case.expect, case.request
    if e.split:
        counts: Counter = Counter()
        for _ in range(SPLIT_REQUESTS):
            status, _, seen = send(gw, case)
            counts[seen["backend"] if status == 200 and seen else ERROR_500 if status == 500 else str(status)] += 1
        wanted = dict(e.split)
        assert set(counts) <= {k for k, share in wanted.items() if share > 0}, counts
        for who, share in wanted.items():
            tolerance = SPLIT_SIGMAS * math.sqrt(share * (1 - share) / SPLIT_REQUESTS)
            assert abs(counts[who] / SPLIT_REQUESTS - share) <= tolerance, counts
        return
    status, headers, seen = send(gw, case)
    assert status == e.status, (status, seen)
    if e.location is not None:
        assert headers.get("Location") == e.location
    if e.backend is not None:
        assert seen is not None and seen["backend"] == e.backend, seen
        assert seen["path"] == (e.path if e.path is not None else r.path)
        assert seen["host"] == (e.host if e.host is not None else r.host)
        for name, value in e.headers:
            assert seen["headers"].get(name.lower()) == value, (name, seen["headers"])
        for name in e.absent_headers:
            assert name.lower() not in seen["headers"]
    elif e.status != 200:
        assert seen is None, f"a backend answered: {seen}"
    for name, value in e.response_headers:
        assert ",".join(headers.get_all(name) or ()) == value, (name, headers.get_all(name))
    for name in e.absent_response_headers:
        assert headers.get(name) is None
    if e.mirrored_to is not None:
        wait_until(lambda: r.path in echo.seen[e.mirrored_to], what=f"a copy of {r.path} at {e.mirrored_to}")


@pytest.mark.parametrize(
    "case",
    [
        pytest.param(c, id=c.name, marks=pytest.mark.xfail(reason=KNOWN_GAPS[c.name], strict=True))
        if c.name in KNOWN_GAPS
        else pytest.param(c, id=c.name)
        for c in CASES
    ],
)
def test_case(served, case: Case):
    gw, echo = served
    check(gw, echo, case)


def test_known_gaps_name_real_cases():
    assert set(KNOWN_GAPS) <= {c.name for c in CASES}
