"""``--workers N``: one controller and N proxy workers sharing the listen port, in one replica.

This process (the supervisor) is the replica's one controller: it reads the
source (one watch per kind on the API server, or the manifests folder), keeps
the one object cache, compiles, runs leader election once and writes status,
exactly as a single-process gateway does (crdgate/run.py's
``start_controller``). It serves no proxy traffic. Each table it publishes
goes to N proxy workers (crdgate/proxyworker.py), each bound to the proxy port
with SO_REUSEPORT so the kernel spreads connections over them: a whole table
when a worker starts, then only what changed (gateway/tablewire.py: the routes
added and removed, the endpoint sets that moved). A worker holds the table,
not the cache: memory per worker grows with the routes, and a change costs a
worker what it touches, never a compile.

The channel to each worker is a socketpair made for it at spawn and inherited
by it alone: the table carries credentials (API key digests, htpasswd hashes,
JWT keys, TLS private keys). Each worker serves its admin on a Unix socket
(``worker-<i>.sock``) in a directory this process creates for the run (mode
0700, removed at exit): no TCP port besides the admin and proxy ones is bound,
and only this user can reach a worker's admin.

The supervisor owns the admin port. ``/readyz`` is ready when every worker has
applied a table and none has left a table it was sent unapplied for more than
``LAG_GRACE`` seconds (a worker answers ``applied`` after each table it
serves). ``/metrics`` merges the workers' metrics with a ``worker`` label and
adds the controller's own (compiles, objects, watches, leader, status writes),
whose process metrics carry ``worker="controller"``. ``/routes`` and
``/explain`` answer from the controller's table (the one every worker
receives), the dashboard (``/``) adds up the workers' traffic
(gateway/dashboard.py's ``merge_snapshots``) with the controller's object
statuses. A worker that dies is restarted (with a delay that grows if it
keeps dying) and gets the current table before it accepts a connection;
SIGTERM drains every worker, then stops the controller; a second one kills.
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
import socket
import tempfile
import time
from collections import deque
from typing import Any

import aiohttp
import uvloop
from aiohttp import web
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from controller.files import ManifestSource
from crdgate import proxyworker
from crdgate.config import Config
from crdgate.controlview import control_plane_view
from crdgate.explain import not_ready_objects
from crdgate.run import Controller, start_controller
from gateway import dashboard, metrics
from gateway.admin import explain_response, routes_response
from gateway.errors import ChannelError
from gateway.tablewire import APPLIED, TableEncoder, load, read_frame

log = logging.getLogger("crdgate.workers")

# A worker that has not applied the current table this long after it was sent is not ready.
LAG_GRACE = 5.0
# Bytes queued for a worker that does not read its channel: past this, it is restarted (and resynced).
MAX_BACKLOG = 256 << 20
# The controller's metric families (everything else is the workers'): without a worker label.
CONTROLLER_FAMILIES = frozenset((
    "crdgate_table_swaps", "crdgate_compile_duration_seconds", "crdgate_objects", "crdgate_watch_events",
    "crdgate_relists", "crdgate_watch_reconnects", "crdgate_last_sync_timestamp_seconds",
    "crdgate_status_writes", "crdgate_leader",
))
PROCESS_PREFIXES = ("process_", "python_")


def worker_spec(config: Config, index: int, admin_socket: str) -> proxyworker.WorkerSpec:
    """Worker ``index``'s settings: the data plane's part of the Config, admin on a Unix socket."""
    rl = config.ratelimit
    return proxyworker.WorkerSpec(
        index=index,
        gateway=dataclasses.replace(config.gateway, admin_listen=None),
        admin_socket=admin_socket,
        log=config.logging,
        limiter={"redis_url": rl.redis_url, "failure_mode": rl.redis_failure, "timeout": rl.redis_timeout,
                 "max_keys": rl.max_keys},
        rate_limit_view={"maxKeys": rl.max_keys},
    )


class WorkerLink:
    """The supervisor's end of one worker's table channel."""

    def __init__(self, index: int, sock: socket.socket):
        self.index = index
        self.sock = sock
        self.writer: asyncio.StreamWriter | None = None
        self.synced = False  # has been sent a whole table; updates follow in order
        self.applied: int | None = None  # generation of the last table the worker said it serves
        self.unapplied: deque[tuple[int, float]] = deque()  # (generation, monotonic time sent), oldest first
        self._reader_task: asyncio.Task | None = None

    async def open(self) -> None:
        reader, self.writer = await asyncio.open_unix_connection(sock=self.sock)
        self._reader_task = asyncio.ensure_future(self._read(reader))

    async def _read(self, reader: asyncio.StreamReader) -> None:
        while True:
            try:
                message = load(await read_frame(reader))
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            except (ChannelError, ValueError, EOFError) as e:  # not our protocol: stop listening to it
                log.error("worker %d: unreadable answer on its channel: %s", self.index, e)
                return
            if message[0] == APPLIED:
                self.applied = message[1]
                while self.unapplied and self.unapplied[0][0] <= self.applied:
                    self.unapplied.popleft()

    def send(self, data: bytes, generation: int) -> bool:
        """Queue a frame; False when the worker is this far behind (see MAX_BACKLOG)."""
        if self.writer is None or self.writer.is_closing():
            return True
        self.writer.write(data)
        self.unapplied.append((generation, time.monotonic()))
        return self.writer.transport.get_write_buffer_size() <= MAX_BACKLOG

    def lagging(self, now: float) -> bool:
        """A table sent LAG_GRACE seconds ago or more is not applied yet."""
        return bool(self.unapplied) and now - self.unapplied[0][1] >= LAG_GRACE

    def close(self) -> None:
        if self._reader_task is not None:
            self._reader_task.cancel()
        if self.writer is not None:
            self.writer.close()
        else:
            self.sock.close()


class Supervisor:
    def __init__(self, config: Config):
        self.config = config
        self.n = config.workers
        # Private (0700) directory for the workers' admin sockets.
        self.run_dir = tempfile.mkdtemp(prefix="crdgate-workers-")
        self.ctx = mp.get_context("spawn")
        self.procs: list[mp.process.BaseProcess | None] = [None] * self.n
        self.links: list[WorkerLink | None] = [None] * self.n
        self.deaths: list[list[float]] = [[] for _ in range(self.n)]
        self.stopping = False
        self.encoder = TableEncoder()
        self.controller: Controller | None = None
        self.control_plane = None

    # -- tables ------------------------------------------------------------------------

    def publish(self, result: Any) -> None:
        """The publisher's ``on_result``: the new table (and certificates) to every worker."""
        certificates = getattr(result, "certificates", None) if self.config.gateway.listen_tls else None
        update = self.encoder.update(result.table, certificates)
        for link in self.links:
            if link is not None:
                self._feed(link, update)

    def _feed(self, link: WorkerLink, update: bytes | None) -> None:
        if link.synced:
            data = update
        else:
            data = self.encoder.snapshot()
            link.synced = data is not None
        if data is not None and not link.send(data, self.encoder.table.generation):
            proc = self.procs[link.index]
            log.error("worker %d is not reading its table channel (%d bytes queued): restarting it",
                      link.index, MAX_BACKLOG)
            if proc is not None and proc.is_alive():
                proc.kill()

    # -- processes ---------------------------------------------------------------------

    async def start_worker(self, i: int) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        p = self.ctx.Process(target=proxyworker.main, args=(worker_spec(self.config, i, self.admin_socket(i)), theirs),
                             name=f"crdgate-worker-{i}", daemon=False)
        try:
            p.start()
        finally:
            theirs.close()  # the worker has its own copy now; ours would keep its end from ever seeing EOF
        link = WorkerLink(i, ours)
        await link.open()
        self.procs[i], self.links[i] = p, link
        self._feed(link, None)  # the current table, if there is one yet
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
                link, self.links[i] = self.links[i], None
                if link is not None:
                    link.close()
                asyncio.get_running_loop().call_later(delay, self._restart, i)

    def _restart(self, i: int) -> None:
        if not self.stopping and self.procs[i] is None:
            asyncio.ensure_future(self.start_worker(i)).add_done_callback(self._started)

    @staticmethod
    def _started(task: asyncio.Task) -> None:
        if not task.cancelled() and task.exception() is not None:  # e.g. out of processes: say so
            log.error("restarting a worker failed: %r", task.exception(), exc_info=task.exception())

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
        for link in self.links:
            if link is not None:
                link.close()

    def ready(self) -> tuple[bool, int]:
        """(every worker serves a table and none has left one unapplied for LAG_GRACE; how many are so)."""
        if self.stopping or self.encoder.table is None:
            return False, 0
        now = time.monotonic()
        serving = 0
        for p, link in zip(self.procs, self.links):
            if p is None or not p.is_alive() or link is None or link.applied is None:
                continue
            if not link.lagging(now):
                serving += 1
        return serving == self.n, serving

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

        def table():
            return self.encoder.table

        def not_ready():  # for /explain: the objects the last compile did not make Ready, and why
            publisher = self.controller.publisher if self.controller is not None else None
            return not_ready_objects(publisher.last_statuses.values()) if publisher is not None else []

        async def healthz(_):
            return web.json_response({"status": "ok", "workers": self.n})

        async def readyz(_):
            if self.stopping:
                return web.json_response({"status": "draining"}, status=503)
            ok, serving = self.ready()
            current = self.encoder.table
            body = {"status": "ready" if ok else "not ready", "workers_ready": serving, "workers": self.n,
                    "generation": current.generation if current is not None else None,
                    "applied": [link.applied if link is not None else None for link in self.links]}
            return web.json_response(body, status=200 if ok else 503)

        async def metrics_handler(_):
            results = await asyncio.gather(*(fetch(i, "/metrics") for i in range(self.n)))
            own = generate_latest(metrics.REGISTRY).decode()
            text = merge_metrics([(str(i), body) for i, (st, body) in enumerate(results) if st == 200], own)
            return web.Response(text=text, content_type="text/plain")

        async def routes(_):
            return routes_response(table())

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
            merged = dashboard.merge_snapshots(snaps, self.n)
            if self.control_plane is not None:  # what only the controller knows
                control = self.control_plane()
                merged["objects"] = list(control.get("objects", ()))
                merged["loadErrors"] = list(control.get("loadErrors", ()))
                merged["controller"] = dict(control.get("controller", {}))
            return web.json_response(merged, headers=dashboard.DATA_HEADERS)

        async def explain(request):
            return explain_response(table(), request, not_ready)

        app = web.Application()
        app.router.add_get("/healthz", healthz)
        app.router.add_get("/readyz", readyz)
        app.router.add_get("/metrics", metrics_handler)
        app.router.add_get("/routes", routes)
        dashboard.add_page(app)
        app.router.add_get("/dashboard.json", dashboard_data)
        app.router.add_get("/explain", explain)
        return app


def merge_metrics(bodies: list[tuple[str, str]], controller: str | None = None) -> str:
    """Prometheus text from several workers, each sample labelled with its worker, plus the
    controller's own families (``controller``: its exposition; see CONTROLLER_FAMILIES)."""
    families: dict[str, tuple[str, str, list[str]]] = {}

    def add(fam, labels_extra: dict[str, str]) -> None:
        entry = families.setdefault(fam.name, (fam.type, fam.documentation, []))
        for s in fam.samples:
            labels = dict(s.labels)
            labels.update(labels_extra)
            lbl = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items()))
            entry[2].append(f"{s.name}{{{lbl}}} {_num(s.value)}" if lbl else f"{s.name} {_num(s.value)}")

    for worker, body in bodies:
        for fam in text_string_to_metric_families(body):
            if fam.name not in CONTROLLER_FAMILIES:
                add(fam, {"worker": worker})
    if controller is not None:
        for fam in text_string_to_metric_families(controller):
            if fam.name in CONTROLLER_FAMILIES:
                add(fam, {})
            elif fam.name.startswith(PROCESS_PREFIXES):
                add(fam, {"worker": "controller"})
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
    """The replica's controller in this process, ``config.workers`` proxy processes under it; merged admin."""
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
        controller = await start_controller(config, on_result=sup.publish)
        if controller is None:
            await runner.cleanup()
            return 1
        sup.controller = controller
        source, publisher, tasks = controller
        sup.control_plane = control_plane_view(publisher, source if isinstance(source, ManifestSource) else None,
                                               {"maxKeys": config.ratelimit.max_keys})
        for i in range(sup.n):
            await sup.start_worker(i)
        tasks.append(asyncio.ensure_future(source.run()))
        tasks.append(asyncio.ensure_future(publisher.run()))

        def on_done(t: asyncio.Task) -> None:  # as crdgate/run.py: say so, keep serving the last table
            if not t.cancelled() and t.exception() is not None:
                log.error("controller task failed: %r", t.exception(), exc_info=t.exception())

        for t in tasks:
            t.add_done_callback(on_done)
        log.info("controller of %d proxy workers; admin on %s:%d", sup.n, *admin_listen)
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
        for t in tasks:  # the workers are gone: now the controller (leader election lets go of its lease)
            t.cancel()
        await asyncio.gather(watcher, *tasks, return_exceptions=True)
        await runner.cleanup()
        log.info("stopped")
        return 0

    try:
        return uvloop.run(main())
    finally:
        sup.cleanup()
