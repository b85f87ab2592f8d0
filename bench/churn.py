"""Scenario 6, churn: routes added, changed and removed continuously under load.

Stable routes ``/stable/<i>`` go to backend ``i`` (which answers
``backend-<i> <uri>``); wrk requests ``/stable/<i>/req`` and its Lua
``response`` hook counts every answer not served by backend ``i`` (a
*misroute*) and every non-2xx (an *error*). Meanwhile ``Churner`` writes,
rewrites and deletes APIEndpoint files in the manifests folder at
``--churn-rate`` changes per second. Churned routes live *under* the stable
prefixes (``/stable/<i>/churn-<j>``) and point to some other backend, so a
table built wrong is seen as a misroute; wrk never requests them itself.

After the load, the churn stops and the harness checks that the gateway
settled on the last state written: live churn routes answer from their
current backend, removed ones fall back to the stable route's backend.
"""

from __future__ import annotations

import os
import random
import threading
import time
from pathlib import Path

from . import manifests
from .client import Client
from .gateway import GatewayError
from .scenarios import Context, Result, error_reason, measure, preflight
from .tools import install_hint
from .wrk import WrkError

STABLE = 8  # stable routes, one per backend identity
POOL_LOW, POOL_HIGH = 50, 150  # churn routes alive at any time stay in this band
SETTLE_TIMEOUT_S = 30.0


class Churner(threading.Thread):
    """Writes one manifest change every 1/rate seconds until stopped."""

    def __init__(self, folder: Path, backend_urls: list[str], rate: float, seed: int = 6):
        super().__init__(name="churn", daemon=True)
        self.folder = folder
        self.urls = backend_urls
        self.rate = rate
        self.rng = random.Random(seed)
        self.live: dict[int, tuple[str, int, str]] = {}  # j -> (path, identity, pathType)
        self.removed: dict[int, str] = {}  # j -> path
        self.next_id = 0
        self.changes = 0
        self.error: str = ""
        self._halt = threading.Event()

    # -- one change ------------------------------------------------------------

    def _file(self, j: int) -> Path:
        return self.folder / f"churn-{j}.yaml"

    def _write(self, j: int, path: str, ident: int, path_type: str) -> None:
        doc = manifests.api_endpoint(f"churn-{j}", path, self.urls[ident], pathType=path_type)
        manifests.write(self._file(j), [doc])
        self.live[j] = (path, ident, path_type)

    def _other_identity(self, stable: int) -> int:
        return self.rng.choice([k for k in range(len(self.urls)) if k != stable])

    def add(self) -> None:
        j = self.next_id
        self.next_id += 1
        stable = j % STABLE
        self._write(j, f"/stable/{stable}/churn-{j}", self._other_identity(stable), "Prefix")

    def modify(self) -> None:
        j = self.rng.choice(list(self.live))
        path, ident, path_type = self.live[j]
        stable = j % STABLE
        choices = [k for k in range(len(self.urls)) if k not in (stable, ident)]
        self._write(j, path, self.rng.choice(choices), "Exact" if path_type == "Prefix" else "Prefix")

    def remove(self) -> None:
        j = self.rng.choice(list(self.live))
        path, _, _ = self.live.pop(j)
        os.unlink(self._file(j))
        self.removed[j] = path

    def change(self) -> None:
        n = len(self.live)
        if n < POOL_LOW:
            self.add()
        elif n > POOL_HIGH:
            self.remove()
        else:
            self.rng.choice((self.add, self.modify, self.remove))()
        self.changes += 1

    # -- the loop ----------------------------------------------------------------

    def run(self) -> None:
        interval = 1.0 / self.rate
        next_at = time.monotonic()
        try:
            while not self._halt.is_set():
                self.change()
                next_at += interval
                delay = next_at - time.monotonic()
                if delay > 0:
                    self._halt.wait(delay)
                elif delay < -1.0:  # fell far behind (slow disk): do not burst to catch up
                    next_at = time.monotonic()
        except OSError as exc:
            self.error = f"churn writer failed: {exc}"

    def stop(self) -> None:
        self._halt.set()
        self.join(10)


def expectations(churner: Churner, sample: int = 10, seed: int = 7) -> list[tuple[str, int]]:
    """(path, identity that must answer it) for a sample of live and removed churn routes."""
    rng = random.Random(seed)
    live = sorted(churner.live.items())
    removed = sorted(churner.removed.items())
    out = [(path, ident) for _, (path, ident, _) in rng.sample(live, min(sample, len(live)))]
    out += [(path, j % STABLE) for j, path in rng.sample(removed, min(sample, len(removed)))]
    return out


def settle(port: int, expected: list[tuple[str, int]], timeout: float) -> tuple[float | None, list[str]]:
    """Seconds until every expectation holds (None on timeout) and what was still wrong."""
    client = Client(port, timeout=2.0)
    start = time.monotonic()
    wrong: list[str] = []
    try:
        while True:
            wrong = []
            for path, ident in expected:
                status, body = client.get(path)
                if status != 200 or not body.startswith(f"backend-{ident} "):
                    wrong.append(f"GET {path} -> {status} {body.strip()[:80]!r}, expected backend-{ident}")
            if not wrong:
                return time.monotonic() - start, []
            if time.monotonic() - start > timeout:
                return None, wrong
            time.sleep(0.1)
    finally:
        client.close()


def run_churn(ctx: Context) -> Result:
    s = ctx.settings
    result = Result("churn", "churn", f"churn: {s.churn_rate:g} route changes/s during load")
    if ctx.wrk is None:
        return result.skip(f"wrk is missing: {install_hint(['wrk'])}")
    folder = ctx.folder("churn")
    mdir = folder / "manifests"
    urls = [ctx.backend.url_of(i) for i in range(STABLE)]
    stable = [manifests.api_endpoint(f"stable-{i}", f"/stable/{i}", urls[i]) for i in range(STABLE)]
    manifests.write(mdir / "stable.yaml", stable)
    churner = Churner(mdir, urls, s.churn_rate)
    for _ in range(POOL_LOW + 50):  # start from a populated table
        churner.add()
    paths = [f"/stable/{i}/req" for i in range(STABLE)]
    ctx.progress.update("churn: starting crdgate")
    try:
        gw = ctx.start_gateway("churn", folder)
    except GatewayError as exc:
        return result.fail(str(exc))
    try:
        problem = preflight(gw, paths[:1], {})
        if problem:
            return result.fail(problem)
        started = time.monotonic()
        churner.start()
        try:
            # Paired with nginx runs as the load scenarios are, so the ratio is one of the same minutes.
            result.runs = measure(ctx, "churn", gw.url, paths, check_identity=True, alive=gw.check_alive,
                                  reference=result.reference, cpu_pid=gw.child.pid)
        finally:
            churner.stop()
        elapsed = time.monotonic() - started
        ctx.progress.update("churn: waiting for the gateway to settle on the last state written")
        settled, wrong = settle(gw.port, expectations(churner), SETTLE_TIMEOUT_S)
        misroutes = sum(r.misroutes for r in result.runs)
        result.extra = {
            "changes": churner.changes,
            "changes_per_s": round(churner.changes / elapsed, 1) if elapsed else None,
            "misroutes": misroutes,
            "checked": sum(r.checked for r in result.runs),
            "non2xx": sum(r.non2xx for r in result.runs),
            "misroute_sample": next((r.misroute_sample for r in result.runs if r.misroute_sample), ""),
            "settled_after_s": None if settled is None else round(settled, 3),
            "not_settled": wrong[:5],
        }
        reasons = []
        if churner.error:
            reasons.append(churner.error)
        if any(r.errors_total for r in result.runs):
            reasons.append(error_reason(result.runs))
        if misroutes:
            reasons.append(f"{misroutes} misroutes (e.g. {result.extra['misroute_sample'].strip()!r})")
        if settled is None:
            reasons.append(f"not settled {SETTLE_TIMEOUT_S:g}s after churn stopped: {wrong[0]}")
        if reasons:
            result.fail("; ".join(reasons))
    except (WrkError, GatewayError) as exc:
        result.fail(str(exc))
    finally:
        gw.stop()
    return result
