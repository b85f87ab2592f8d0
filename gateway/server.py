"""The proxy server: listeners, the live table reference, timeouts, access log, drain.

``Server.table`` is the one reference the controller swaps (``swap``); every
request reads it once. A single sweeper task checks every connection's
deadlines ten times a second instead of arming a timer per request and closes
stale upstream connections; with no client connection it sleeps until one is
accepted (or an idle upstream connection expires), so an idle gateway does not
wake ten times a second. The access log goes through a bounded writer
(gateway/loopwriter.py) that never blocks the loop.

Startup and shutdown run in a fixed order (``start`` / ``drain``): on drain,
readiness turns 503 first, listeners close after ``drain_seconds``, idle
keep-alive connections close, in-flight requests get ``shutdown_timeout`` to
finish, and whatever is left is cut.

Listeners: the plain one (``config.listen``) and, with ``config.listen_tls``,
an HTTPS one whose certificates come from a gateway/tls.py CertificateStore.
Each connection's protocol knows its listener's scheme (X-Forwarded-Proto,
https redirects).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time

from gateway import metrics
from gateway.accesslog import AccessLog
from gateway.config import GatewayConfig
from gateway.exchange import Exchange
from gateway.targets import TARGETS_MEMO_LIMIT
from gateway.h2upstream import H2Pool
from gateway.http1 import ClientProtocol
from gateway.routing import RouteTable, memo_limit
from gateway.tls import CertificateStore, upstream_context
from gateway.tracing import Tracer
from gateway.upstream import Upstreams

log = logging.getLogger("crdgate.server")

SWEEP_INTERVAL = 0.1
# Seconds a closing TLS connection waits for the peer's close_notify.
TLS_SHUTDOWN_TIMEOUT = 3.0


class Server:
    def __init__(self, config: GatewayConfig, limiter=None, access_log: AccessLog | None = None,
                 certificates: CertificateStore | None = None):
        self.config = config
        self.limits = config.limits
        self.trusted_proxies = config.trusted_proxies
        self.scheme = config.scheme
        self.scheme_bytes = config.scheme.encode()
        self.request_id_header = config.request_id_header.lower().encode()
        self.limiter = limiter
        if limiter is not None:
            # /metrics reports the store of the limiter this server serves with.
            metrics.LOCAL_RATELIMIT.limiter = limiter
        self.ratelimit_headers = config.ratelimit_headers
        self.create_traceparent = config.create_traceparent
        # Spans of sampled requests, exported from a thread (gateway/tracing.py); None: tracing off.
        self.tracer = Tracer(config.otlp_endpoint, config.trace_sample_ratio) if config.otlp_endpoint else None
        if self.tracer is not None:
            metrics.TRACING.tracer = self.tracer
        self.table: RouteTable | None = None
        # Bound of the exchange's memo of normalised request targets: like the
        # table's match memo it follows the table, so that clients spread over
        # every route of a big table keep hitting it (see gateway/routing.py).
        self.targets_memo_limit = TARGETS_MEMO_LIMIT
        self.swapped_at: float | None = None  # wall time of the last swap (the admin dashboard)
        # What the controller knows that the data plane does not (object statuses,
        # load errors), as plain data: set by the front door (crdgate/run.py), read
        # by the admin dashboard (gateway/dashboard.py). None: nothing handed over.
        self.control_plane = None
        self.upstreams = Upstreams(max_idle=config.limits.max_idle_per_endpoint,
                                   idle_timeout=config.limits.upstream_idle_timeout,
                                   max_header_bytes=config.limits.max_response_header_bytes,
                                   client_ssl=upstream_context(config.upstream_ca_file),
                                   http2_pool=H2Pool,
                                   client_ssl_h2=upstream_context(config.upstream_ca_file, alpn=("h2", "http/1.1")))
        # What the TLS listener serves; run.py feeds it from the controller.
        self.certificates = certificates
        self.stats = metrics.STATS
        self.access_log = access_log if access_log is not None else (
            AccessLog(max_buffer=config.log_buffer_bytes, format=config.access_log_format,
                      sample_2xx=config.access_log_sample_2xx) if config.access_log else None)
        self.connections: set[ClientProtocol] = set()
        self.draining = False
        self._servers: list[asyncio.AbstractServer] = []
        self._tls_servers: list[asyncio.AbstractServer] = []
        # Listeners bound but not yet accepting: opened by the first table (see start).
        self._deferred: list[asyncio.AbstractServer] = []
        self._sweeper: asyncio.Task | None = None
        self._idle = asyncio.Event()
        self._wake = asyncio.Event()  # wakes the sweeper of an idle server (see _sweep)
        self._live_endpoints: set | None = None

    # -- the table -----------------------------------------------------------------

    def swap(self, table: RouteTable) -> None:
        """Publish a new table: one reference assignment; requests in flight keep theirs."""
        self.table = table
        self.targets_memo_limit = memo_limit(len(table), TARGETS_MEMO_LIMIT)
        self.swapped_at = time.time()
        self._live_endpoints = None  # recomputed lazily by the sweeper
        self._wake.set()  # an idle sweeper drops the pools this table no longer uses
        metrics.TABLE_GENERATION.set(table.generation)
        metrics.TABLE_ROUTES.set(len(table))
        if self._deferred and not self.draining:
            deferred, self._deferred = self._deferred, []
            for srv in deferred:
                asyncio.ensure_future(srv.start_serving())

    @property
    def ready(self) -> bool:
        return self.table is not None and not self.draining

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self, sock: socket.socket | None = None, reuse_port: bool = False) -> None:
        """Open the plain listener, and the TLS one when ``config.listen_tls`` is set.

        With ``reuse_port`` (``--workers``: processes sharing the port) the
        sockets are bound now, so a taken port fails at start, but accept
        connections only once the first table is in: the kernel spreads new
        connections over every listening socket of the group, and a restarted
        worker still listing its source would answer them 503 while its
        siblings serve the last good table. A lone process listens at once
        and answers 503 until ready, as /readyz says.
        """
        loop = asyncio.get_running_loop()
        scheme = self.scheme
        serve_now = not reuse_port or self.table is not None
        if sock is not None:
            srv = await loop.create_server(lambda: self._protocol(scheme), sock=sock, backlog=2048,
                                           start_serving=serve_now)
        else:
            host, port = self.config.listen
            srv = await loop.create_server(lambda: self._protocol(scheme), host, port, backlog=2048,
                                           reuse_address=True, reuse_port=reuse_port or None,
                                           start_serving=serve_now)
        self._servers.append(srv)
        if not serve_now:
            self._deferred.append(srv)
        if self.config.listen_tls is not None:
            await self.start_tls(*self.config.listen_tls, reuse_port=reuse_port)
        if self._sweeper is None:
            self._sweeper = asyncio.ensure_future(self._sweep())

    async def start_tls(self, host: str, port: int, reuse_port: bool = False) -> None:
        """The HTTPS listener: certificates by SNI from ``self.certificates``."""
        if self.certificates is None:
            self.certificates = CertificateStore()
        loop = asyncio.get_running_loop()
        srv = await loop.create_server(
            lambda: self._protocol("https"), host, port, backlog=2048,
            ssl=self.certificates.server_context,
            # A client that connects and never finishes the handshake holds a socket: bound it.
            ssl_handshake_timeout=self.limits.header_timeout,
            ssl_shutdown_timeout=TLS_SHUTDOWN_TIMEOUT,
            reuse_address=True, reuse_port=reuse_port or None,
            start_serving=not reuse_port or self.table is not None,
        )
        self._servers.append(srv)
        self._tls_servers.append(srv)
        if reuse_port and self.table is None:
            self._deferred.append(srv)  # same rule as the plain listener (see start)

    @property
    def deferred(self) -> bool:
        """Bound listeners wait for the first table before accepting (see start)."""
        return bool(self._deferred)

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """Addresses of the plain listeners."""
        return self._addresses(s for s in self._servers if s not in self._tls_servers)

    @property
    def tls_addresses(self) -> list[tuple[str, int]]:
        return self._addresses(self._tls_servers)

    @staticmethod
    def _addresses(servers) -> list[tuple[str, int]]:
        out = []
        for srv in servers:
            for s in srv.sockets:
                out.append(s.getsockname()[:2])
        return out

    def _protocol(self, scheme: str) -> ClientProtocol:
        """A new client connection's protocol (the listeners' factory)."""
        if not self.connections:
            self._wake.set()  # the sweeper sleeps while there is no connection (see _sweep)
        return ClientProtocol(self, scheme)

    async def _sweep(self) -> None:
        """Client connections' deadlines every SWEEP_INTERVAL while there are any;
        idle upstream connections and pools no table uses every tenth tick.

        With no client connection there is no deadline to check: the task sleeps
        until a connection is accepted, a table is swapped in or the first idle
        upstream connection passes its idle timeout. A gateway that woke ten
        times a second for nothing took the CPU it shares (and, with threads, the
        GIL) at moments no request chose."""
        tick = 0
        while True:
            if not self.connections:
                self._wake.clear()
                now = time.monotonic()
                self._sweep_upstreams(now)
                expiry = self.upstreams.next_expiry(now, 10 * SWEEP_INTERVAL)
                timeout = None if expiry is None else max(0.0, expiry - now) + SWEEP_INTERVAL
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout)
                except asyncio.TimeoutError:
                    continue
                # Woken by an accept: one tick at least, as the protocol's
                # connection_made (which adds it to ``connections``) may come after.
            await asyncio.sleep(SWEEP_INTERVAL)
            now = time.monotonic()
            for conn in list(self.connections):
                try:
                    conn.check_timeouts(now)
                except Exception:
                    log.exception("timeout check failed")
            tick += 1
            if tick % 10 == 0:
                self._sweep_upstreams(now)

    def _sweep_upstreams(self, now: float) -> None:
        table = self.table
        if table is not None and self._live_endpoints is None:
            self._live_endpoints = {ep for es in table.endpoints.values() for ep in es.endpoints}
        self.upstreams.sweep(now, self._live_endpoints)
        metrics.CLIENT_CONNECTIONS.set(len(self.connections))

    def connection_closed(self, proto: ClientProtocol) -> None:
        if self.draining and not self.connections:
            self._idle.set()

    async def drain(self, drain_seconds: float | None = None, timeout: float | None = None) -> None:
        """Graceful shutdown: 503 on /readyz, stop accepting, finish in-flight requests."""
        cfg = self.config
        self.draining = True
        for conn in list(self.connections):
            if isinstance(conn, ClientProtocol):
                conn.draining = True  # its responses close the connection (read per response, a C field)
        log.info("draining: readiness is now 503")
        await asyncio.sleep(cfg.drain_seconds if drain_seconds is None else drain_seconds)
        for srv in self._servers:
            srv.close()
        # Idle keep-alive connections close now; busy ones close after their response.
        for conn in list(self.connections):
            if not conn.pipeline:
                conn.close()
        deadline = time.monotonic() + (cfg.shutdown_timeout if timeout is None else timeout)
        while self.connections and time.monotonic() < deadline:
            if all(not c.pipeline for c in self.connections):
                for conn in list(self.connections):
                    conn.close()
            try:
                await asyncio.wait_for(self._idle.wait(), 0.05)
            except asyncio.TimeoutError:
                pass
        left = len(self.connections)
        for conn in list(self.connections):
            conn.abort()
        if left:
            log.warning("drain timed out: cut %d connections", left)
        await self.close()

    async def close(self) -> None:
        for srv in self._servers:
            srv.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for conn in list(self.connections):
            conn.abort()
        self.upstreams.close()
        if self.access_log is not None:
            # Writes out what is buffered, bounded in time, without blocking the loop.
            await self.access_log.aclose()
        if self.tracer is not None:
            # Exports what is queued (bounded in time) from its thread: off the loop.
            await asyncio.to_thread(self.tracer.close)
        if self.limiter is not None and hasattr(self.limiter, "close"):
            try:
                await self.limiter.close()
            except Exception:
                pass
