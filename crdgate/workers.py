"""``--workers N``: N gateway processes sharing the listen port, under one supervisor.

Each worker is a whole gateway (proxy + in-process controller) bound with
SO_REUSEPORT, so the kernel spreads connections across them. The trade-off,
documented in the README: N workers keep N watches and N caches.

The supervisor owns the admin port: ``/readyz`` is ready when every worker is,
``/metrics`` merges the workers' metrics with a ``worker`` label, ``/routes``
shows worker 0's table, the dashboard (``/``) adds up the workers' traffic
(gateway/dashboard.py's ``merge_snapshots``). Each worker serves its own admin on a Unix socket
(``worker-<i>.sock``) in a directory the supervisor creates for the run
(mode 0700, removed at exit): no TCP port besides the admin and proxy ones is
bound, so nothing else on the host can make a worker fail to start, and only
this user can reach a worker's admin. A worker that dies is restarted (with a
delay that grows if it keeps dying); SIGTERM drains every worker, a second one
kills. Each worker gets the supervisor's frozen Config (pickled by the spawn),
changed only where a worker must differ: its admin socket and its identity in
leader election.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import multiprocessing as mp
import os
import shutil
import signal
import tempfile
import time

import aiohttp
import uvloop
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from crdgate.config import Config, KubeSource
from crdgate.logs import setup_logging
from crdgate.run import serve
from gateway import dashboard

log = logging.getLogger("crdgate.workers")


def _worker_main(config: Config, index: int, admin_socket: str) -> None:
    setup_logging(config.logging)
    logging.getLogger().name = f"worker-{index}"
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor decides; SIGTERM drains
    try:
        code = uvloop.run(serve(config, admin_socket=admin_socket))
    except KeyboardInterrupt:
        code = 0
    raise SystemExit(code)


def worker_config(config: Config, index: int) -> Config:
    """Worker ``index``'s settings: the supervisor's, but admin on a Unix socket, not on a TCP port,
    and, watching the API, an identity of its own."""
    changes: dict = {"gateway": dataclasses.replace(config.gateway, admin_listen=None)}
    if isinstance(config.source, KubeSource):
        # Each worker runs its own leader election: with the replica's identity
        # shared, every worker would take the Lease as its own and write status.
        changes["source"] = dataclasses.replace(config.source, identity=f"{config.source.identity}_worker-{index}")
    return dataclasses.replace(config, **changes)


class Supervisor:
    def __init__(self, config: Config):
        self.config = config
        self.n = config.workers
        # Private (0700) directory for the workers' admin sockets.
        self.run_dir = tempfile.mkdtemp(prefix="crdgate-workers-")
        self.ctx = mp.get_context("spawn")
        self.procs: list[mp.process.BaseProcess | None] = [None] * self.n
        self.deaths: list[list[float]] = [[] for _ in range(self.n)]
        self.stopping = False

    def start_worker(self, i: int) -> None:
        p = self.ctx.Process(target=_worker_main,
                             args=(worker_config(self.config, i), i, self.admin_socket(i)),
                             name=f"crdgate-worker-{i}", daemon=False)
        p.start()
        self.procs[i] = p
        log.info("worker %d started (pid %d)", i, p.pid)

    def admin_socket(self, i: int) -> str:
        return os.path.join(self.run_dir, f"worker-{i}.sock")

    def cleanup(self) -> None:
        shutil.rmtree(self.run_dir, ignore_errors=True)

    async def watch(self) -> None:
        while not self.stopping:
            await asyncio.sleep(0.2)
            for i, p in enumerate(self.procs):
                if p is None or p.is_alive() or self.stopping:
                    continue
                now = time.monotonic()
                recent = [t for t in self.deaths[i] if now - t < 60] + [now]
                self.deaths[i] = recent
                delay = min(0.5 * 2 ** (len(recent) - 1), 30.0)
                log.error("worker %d (pid %d) exited with %s; restarting in %.1fs", i, p.pid, p.exitcode, delay)
                self.procs[i] = None
                asyncio.get_running_loop().call_later(delay, self._restart, i)

    def _restart(self, i: int) -> None:
        if not self.stopping and self.procs[i] is None:
            self.start_worker(i)

    async def stop(self, kill: bool = False) -> None:
        self.stopping = True
        for p in self.procs:
            if p is not None and p.is_alive():
                p.kill() if kill else p.terminate()  # terminate = SIGTERM: the worker drains
        deadline = time.monotonic() + self.config.gateway.drain_seconds + self.config.gateway.shutdown_timeout + 5
        while any(p is not None and p.is_alive() for p in self.procs) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        for p in self.procs:
            if p is not None and p.is_alive():
                p.kill()

    # -- admin ---------------------------------------------------------------------------

    def admin_app(self) -> web.Application:
        async def fetch(i, path):
            # One connection per worker socket; the host name is only for the request line.
            connector = aiohttp.UnixConnector(path=self.admin_socket(i))
            try:
                async with aiohttp.ClientSession(connector=connector) as session:
                    async with session.get(f"http://worker-{i}{path}", timeout=aiohttp.ClientTimeout(total=2)) as r:
                        return r.status, await r.text()
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as e:
                return 0, str(e)

        async def healthz(_):
            return web.json_response({"status": "ok", "workers": self.n})

        async def readyz(_):
            if self.stopping:
                return web.json_response({"status": "draining"}, status=503)
            results = await asyncio.gather(*(fetch(i, "/readyz") for i in range(self.n)))
            ready = [st == 200 for st, _ in results]
            body = {"status": "ready" if all(ready) else "not ready", "workers_ready": sum(ready), "workers": self.n}
            return web.json_response(body, status=200 if all(ready) else 503)

        async def metrics(_):
            results = await asyncio.gather(*(fetch(i, "/metrics") for i in range(self.n)))
            text = merge_metrics([(str(i), body) for i, (st, body) in enumerate(results) if st == 200])
            return web.Response(text=text, content_type="text/plain")

        async def routes(_):
            st, body = await fetch(0, "/routes")
            return web.Response(text=body, status=st or 503, content_type="application/json")

        async def dashboard_data(_):
            results = await asyncio.gather(*(fetch(i, "/dashboard.json") for i in range(self.n)))
            snaps = []
            for st, body in results:
                if st == 200:
                    try:
                        snaps.append(json.loads(body))
                    except ValueError:  # a worker stopping mid-answer: leave it out
                        pass
            if not snaps:
                return web.json_response({"status": "no worker answered"}, status=503)
            return web.json_response(dashboard.merge_snapshots(snaps, self.n), headers=dashboard.DATA_HEADERS)

        async def explain(request):  # the table is the same in every worker: ask worker 0
            st, body = await fetch(0, "/explain?" + request.query_string)
            return web.Response(text=body, status=st or 503, content_type="application/json")

        app = web.Application()
        app.router.add_get("/healthz", healthz)
        app.router.add_get("/readyz", readyz)
        app.router.add_get("/metrics", metrics)
        app.router.add_get("/routes", routes)
        dashboard.add_page(app)
        app.router.add_get("/dashboard.json", dashboard_data)
        app.router.add_get("/explain", explain)
        return app


def merge_metrics(bodies: list[tuple[str, str]]) -> str:
    """Prometheus text from several workers, each sample labelled with its worker."""
    families: dict[str, tuple[str, str, list[str]]] = {}
    for worker, body in bodies:
        for fam in text_string_to_metric_families(body):
            name = fam.name
            mtype = fam.type
            entry = families.setdefault(name, (mtype, fam.documentation, []))
            for s in fam.samples:
                labels = dict(s.labels)
                labels["worker"] = worker
                lbl = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items()))
                entry[2].append(f"{s.name}{{{lbl}}} {_num(s.value)}")
    out = []
    for name, (mtype, doc, lines) in families.items():
        if mtype == "counter":
            name += "_total"  # the parser drops the suffix; exposition 0.0.4 keeps it
        out.append(f"# HELP {name} {doc}")
        out.append(f"# TYPE {name} {mtype}")
        out.extend(lines)
    return "\n".join(out) + "\n"


def _escape(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _num(v: float) -> str:
    return repr(float(v)) if v == v and v not in (float("inf"), float("-inf")) else ("+Inf" if v > 0 else ("-Inf" if v < 0 else "NaN"))


def supervise(config: Config) -> int:
    """``config.workers`` gateway processes under this one, which serves the merged admin."""
    sup = Supervisor(config)
    admin_listen = config.gateway.admin_listen

    async def main() -> int:
        loop = asyncio.get_running_loop()
        runner = web.AppRunner(sup.admin_app(), access_log=None, handle_signals=False)
        await runner.setup()
        try:
            await web.TCPSite(runner, *admin_listen, reuse_address=True).start()
        except OSError as e:
            log.error("cannot listen on admin %s:%d: %s", *admin_listen, e)
            await runner.cleanup()
            return 1
        for i in range(sup.n):
            sup.start_worker(i)
        done = asyncio.Event()
        signals = {"n": 0}

        def on_signal() -> None:
            signals["n"] += 1
            asyncio.ensure_future(sup.stop(kill=signals["n"] > 1)).add_done_callback(lambda _: done.set())

        for s in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(s, on_signal)
        watcher = asyncio.ensure_future(sup.watch())
        await done.wait()
        watcher.cancel()
        await runner.cleanup()
        return 0

    try:
        return uvloop.run(main())
    finally:
        sup.cleanup()
