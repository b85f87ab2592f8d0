"""One ``--workers`` proxy process: the data plane only, fed its routing tables by the controller.

crdgate/workers.py (the supervisor, which runs the one controller of the
replica) spawns this module's ``main`` N times. A worker binds the proxy port
with SO_REUSEPORT (accepting only once it has a table, gateway/server.py),
serves its admin on a Unix socket in the supervisor's private directory, and
reads tables from its end of a socketpair the supervisor made for it alone:
a whole table first, then only what changed (gateway/tablewire.py). After
each table it serves, it answers ``("applied", generation)``, which is what the
supervisor's ``/readyz`` counts.

This process never loads the controller or the Kubernetes client: only this
module, gateway/ and crdgate/logs.py are imported here, and the spawn
unpickles only a ``WorkerSpec`` (tests/test_proxyworker_imports.py checks the
modules loaded). It exits when told (SIGTERM: drain) or when its channel
closes (the supervisor is gone: drain too, a worker never outlives its
controller).

Applying an update costs the proxy what the update touches. A small frame
(endpoint churn, a few routes) is decoded and applied on the event loop: it is
microseconds, less than a thread hand-off. A big one (the first table, a
compile from scratch) is decoded and applied in a thread, so the loop keeps
turning while it is built (the GIL still serialises the two, but in slices,
not one long stall).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import socket
from dataclasses import dataclass, field
from typing import Any, Mapping

import uvloop

from crdgate.logs import LogConfig, setup_logging
from gateway import _native
from gateway.admin import start_admin_unix
from gateway.config import GatewayConfig
from gateway.ratelimit import RateLimiter
from gateway.server import Server
from gateway.tablewire import APPLIED, TableDecoder, frame, load, read_frame
from gateway.tls import CertificateStore

log = logging.getLogger("crdgate.worker")

# Frames up to this size are applied on the event loop; bigger ones in a thread (see the docstring).
INLINE_FRAME_BYTES = 64 << 10


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker needs from the supervisor's Config (never the Config itself: it names the controller's types)."""

    index: int
    gateway: GatewayConfig
    admin_socket: str
    log: LogConfig = LogConfig()
    limiter: Mapping[str, Any] = field(default_factory=dict)  # RateLimiter.from_config keyword arguments
    rate_limit_view: Mapping[str, Any] = field(default_factory=dict)  # the dashboard's rate-limit settings


def main(spec: WorkerSpec, channel: socket.socket) -> None:
    """The spawned process's entry point."""
    setup_logging(spec.log)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor decides; SIGTERM drains
    try:
        code = uvloop.run(serve_worker(spec, channel))
    except KeyboardInterrupt:
        code = 0
    raise SystemExit(code)


class TableFeed:
    """Reads the channel, applies each frame, swaps the server's table, answers ``applied``."""

    def __init__(self, server: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.server = server
        self.reader = reader
        self.writer = writer
        self.decoder = TableDecoder()
        self.applied = 0

    def _apply(self, payload: bytes):
        return self.decoder.apply(load(payload))

    async def run(self) -> None:
        """Until the channel closes (returns) or sends garbage (raises)."""
        while True:
            try:
                payload = await read_frame(self.reader)
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            if len(payload) <= INLINE_FRAME_BYTES:
                table, certificates = self._apply(payload)
            else:
                table, certificates = await asyncio.to_thread(self._apply, payload)
            self.server.swap(table)
            if certificates is not None and self.server.certificates is not None:
                self.server.certificates.update(certificates)
            self.applied += 1
            if self.applied == 1:
                # As the single-process gateway does after its first table
                # (controller/publish.py): collect once, then keep the
                # long-lived heap out of the cyclic collector's walks.
                gc.collect()
                gc.freeze()
            self.writer.write(frame((APPLIED, table.generation)))


async def serve_worker(spec: WorkerSpec, channel: socket.socket) -> int:
    gw = spec.gateway
    loop = asyncio.get_running_loop()
    certificates = CertificateStore() if gw.listen_tls is not None else None
    server = Server(gw, limiter=RateLimiter.from_config(**spec.limiter), certificates=certificates)
    view = {"rateLimit": dict(spec.rate_limit_view)}
    server.control_plane = lambda: view
    try:
        await server.start(reuse_port=True)
    except OSError as e:
        log.error("cannot listen on %s:%d: %s", *gw.listen, e)
        return 1
    try:
        admin = await start_admin_unix(server, spec.admin_socket)
    except OSError as e:
        log.error("cannot listen on admin socket %s: %s", spec.admin_socket, e)
        await server.close()
        return 1
    reader, writer = await asyncio.open_unix_connection(sock=channel)
    feed = TableFeed(server, reader, writer)
    feeding = asyncio.ensure_future(feed.run())
    host, port = server.addresses[0] if server.addresses else gw.listen
    log.info("worker %d: proxy bound on %s:%d (accepting from the first table), admin on unix:%s (proxy core: %s)",
             spec.index, host, port, spec.admin_socket, _native.describe())

    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    stopping = asyncio.ensure_future(stop.wait())
    await asyncio.wait((feeding, stopping), return_when=asyncio.FIRST_COMPLETED)
    code = 0
    if feeding.done() and not stop.is_set():
        exc = feeding.exception()
        if exc is not None:  # a bug, or not our protocol: exit non-zero, the supervisor starts a fresh worker
            log.error("worker %d: table channel broken: %r", spec.index, exc, exc_info=exc)
            code = 1
        else:
            log.warning("worker %d: the controller closed the table channel: draining", spec.index)
    else:
        log.info("worker %d: SIGTERM: draining", spec.index)
    await server.drain()
    for task in (feeding, stopping):
        task.cancel()
    await asyncio.gather(feeding, stopping, return_exceptions=True)
    writer.close()
    await admin.cleanup()
    log.info("worker %d stopped", spec.index)
    return code
