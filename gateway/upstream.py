"""Upstream side of the proxy: endpoint pools, keep-alive connections, balancing, ejection.

``Upstreams`` outlives routing tables: pools are keyed by endpoint address, so a
table swap keeps warm connections, round-robin positions and ejection state.
An ``UpstreamConnection`` parses responses with httptools and hands every event
to its current ``handler`` (the proxy's exchange, gateway/exchange.py); it knows
nothing about clients. Imports only gateway.routing and gateway.metrics.
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
import time
from typing import Callable

import httptools

from gateway import metrics
from gateway.routing import Endpoint, EndpointSet
from gateway.wire import whole_response

log = logging.getLogger("crdgate.upstream")

# Passive health: consecutive failures that eject an endpoint, and for how long.
EJECT_AFTER = 5
EJECT_BASE_SECONDS = 5.0
EJECT_MAX_SECONDS = 120.0

_monotonic = time.monotonic


class Handler:
    """What an UpstreamConnection reports to: the base of exchange.Exchange (through request.RequestView).

    A base class rather than a Protocol: compiled, upstream.pxd declares the
    per-response callbacks as C methods, so the connection's calls to its
    exchange are vtable calls instead of Python method calls.
    """

    def upstream_head(self, conn: "UpstreamConnection", status: int, reason: bytes, headers: list, keep_alive: bool) -> None:
        raise NotImplementedError

    def upstream_body(self, data: bytes) -> None:
        raise NotImplementedError

    def flush(self) -> None:
        raise NotImplementedError

    def upstream_done(self, conn: "UpstreamConnection") -> None:
        raise NotImplementedError

    def upstream_failed(self, conn: "UpstreamConnection", reason: str) -> None:
        raise NotImplementedError

    def upstream_closed(self, conn: "UpstreamConnection") -> None:
        raise NotImplementedError

    def upstream_trailers(self, fields: list) -> None:
        """The response's trailer fields (an HTTP/2 upstream's: gRPC's grpc-status), just
        before upstream_done. A Python method: only HTTP/2 responses have them."""
        raise NotImplementedError

    def upstream_pause(self) -> None:
        raise NotImplementedError

    def upstream_resume(self) -> None:
        raise NotImplementedError


class UpstreamConnection:
    """One keep-alive connection to an endpoint (an asyncio protocol by duck typing, see http.ClientProtocol)."""

    def __init__(self, pool: "EndpointPool"):
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.handler: Handler | None = None
        self.reused = False
        self.got_bytes = False
        self.head_only = False  # the request was HEAD: the response has no body
        self.may_upgrade = False  # the request offered an upgrade: a 101 is an answer, not an error
        self._headers: list[tuple[bytes, bytes]] = []
        self._header_bytes = 0
        self._max_header_bytes = pool.upstreams.max_header_bytes
        self._reason = b""
        self._status = 0  # of the response being parsed
        self._closed = False
        self.idle_since = 0.0
        self.upgraded = False  # after 101: raw bytes, no parsing
        self.at_boundary = True  # the parser is between messages (see data_received)
        self.whole = None  # while its head is forwarded: the response whole_response read (see _whole)
        # False when the handler reads no field of the response (it forwards the field lines as they
        # came): a response read whole then hands it None for ``headers``, and no (name, value) list is built.
        self.keep_fields = True
        # The last head read whole without the field list: (head bytes, body length, status,
        # reason, field lines to copy); the next identical head is not read again.
        self.last_head = None

    # -- asyncio.Protocol ------------------------------------------------------

    def connection_made(self, transport) -> None:
        self.transport = transport
        metrics.UPSTREAM_CONNECTIONS.inc()

    def data_received(self, data: bytes) -> None:
        h = self.handler
        if self.upgraded:
            if h is not None:
                h.upstream_body(data)
            return
        if h is None:
            # Bytes on an idle connection: the upstream broke the protocol. Drop it.
            self.close()
            return
        self.got_bytes = True
        if self.at_boundary and not self.head_only and not self.may_upgrade:
            # The usual answer, whole in one read: taken apart here (wire.whole_response)
            # instead of through a dozen parser callbacks; anything else goes to llhttp.
            last = self.last_head
            if (last is not None and not self.keep_fields and data.startswith(last[0])
                    and len(data) - len(last[0]) == last[1]):
                # The very head of the last response read whole, and its body's length: what
                # whole_response would return, without the pass over the head's bytes (a
                # backend's heads change with its Date, once a second).
                whole = (last[2], last[3], None, data[len(last[0]):], last[4])
            else:
                whole = whole_response(data, self._max_header_bytes, self.keep_fields)
                if whole is not None and not self.keep_fields:
                    size = len(whole[3])
                    self.last_head = (data[:len(data) - size], size, whole[0], whole[1], whole[4])
            if whole is not None:
                self._whole(h, whole)
                return
        try:
            self.parser.feed_data(data)
            h.flush()
        except httptools.HttpParserUpgrade as e:
            # 101 Switching Protocols: upstream_head switched us to raw mode; what
            # followed the response head already belongs to the upgraded stream.
            off = e.args[0] if e.args else len(data)
            if off < len(data) and self.handler is not None:
                self.handler.upstream_body(data[off:])
        except httptools.HttpParserError:
            if self.handler is not None:
                self.handler = None
                h.upstream_failed(self, "protocol")
            self.close()

    def _whole(self, h: Handler, whole: tuple) -> None:
        """A response whole_response read: the callbacks llhttp would have made, in its order."""
        status, reason, headers, body, fields = whole
        self._status = status
        self._reason = reason
        self._headers = headers
        try:
            # Kept while the head is built: the client's HTTP/1.1 head can take the field lines as
            # they came (wire.whole_response) when the exchange forwards ``headers`` unchanged.
            self.whole = whole
            h.upstream_head(self, status, reason, headers, True)
            self.whole = None
            if body and self.handler is not None:
                self.handler.upstream_body(body)
            self._finish()
            h.flush()
        except Exception:
            self.whole = None
            # As a callback's exception inside llhttp (data_received): the response is lost.
            log.exception("handling an upstream response failed")
            if self.handler is not None:
                self.handler = None
                h.upstream_failed(self, "protocol")
            self.close()

    def eof_received(self):
        return False  # close the transport

    def connection_lost(self, exc) -> None:
        if not self._closed:
            self._closed = True
            metrics.UPSTREAM_CONNECTIONS.dec()
        self.pool.forget(self)
        h = self.handler
        if h is not None:
            self.handler = None
            # The exchange knows whether the response was close-delimited (or an
            # upgraded stream), in which case a close is its normal end.
            h.upstream_closed(self)

    def pause_writing(self) -> None:
        if self.handler is not None:
            self.handler.upstream_pause()

    def resume_writing(self) -> None:
        if self.handler is not None:
            self.handler.upstream_resume()

    # -- httptools callbacks ----------------------------------------------------

    def on_message_begin(self) -> None:
        if self.handler is None:
            # A second response in the same read as the first: the upstream answered
            # something it was not asked. Reusing this connection could hand those
            # bytes to the next request; the parser error this becomes closes it.
            raise ValueError("upstream response without a request")
        self.at_boundary = False
        self._headers = []
        self._reason = b""  # llhttp calls on_status only for a non-empty reason phrase
        self._header_bytes = 0

    def on_status(self, status: bytes) -> None:
        self._reason = status

    def on_header(self, name: bytes, value: bytes) -> None:
        size = self._header_bytes + len(name) + len(value) + 4
        self._header_bytes = size
        if size > self._max_header_bytes:
            # A backend streaming an endless head would grow it without bound; the
            # parser error this becomes answers 502 and closes the connection.
            raise ValueError("upstream response header section too large")
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self._status = self.parser.get_status_code()  # on_message_complete reads it too
        if 100 <= status < 200 and status != 101:
            return  # interim response (e.g. 103): not forwarded
        if status == 101 and not self.may_upgrade:
            # Switching protocols on a request that offered none: nothing after it can be parsed.
            raise ValueError("upstream switched protocols unasked")
        h = self.handler
        if h is not None:
            h.upstream_head(self, status, self._reason, self._headers, self.parser.should_keep_alive())
        if self.head_only and not self.upgraded:
            # httptools cannot be told the request was HEAD; the message ends here.
            self.parser = httptools.HttpResponseParser(self)
            self.at_boundary = True
            self._finish()

    def on_body(self, body: bytes) -> None:
        h = self.handler
        if h is not None:
            h.upstream_body(body)

    def on_message_complete(self) -> None:
        self.at_boundary = True
        if self.upgraded or self.head_only:
            return  # an upgraded stream or a HEAD response ends elsewhere
        if self._status < 200:
            return  # the end of an interim response: the final one follows
        self._finish()

    def _finish(self) -> None:
        h = self.handler
        if h is not None:
            self.handler = None
            h.upstream_done(self)

    # -- used by the exchange -----------------------------------------------------

    def send(self, handler: Handler, data: bytes, head_only: bool, may_upgrade: bool = False) -> None:
        self.handler = handler
        self.got_bytes = False
        self.keep_fields = True  # the handler may set it False (see Exchange._send)
        self.head_only = head_only
        self.may_upgrade = may_upgrade
        self.transport.write(data)

    def close(self) -> None:
        self.handler = None
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def is_usable(self) -> bool:
        # A method, not a property: compiled, the pool's checks are then C calls.
        return self.transport is not None and not self.transport.is_closing() and not self.upgraded


class EndpointPool:
    """Keep-alive connections and health of one upstream address."""

    def __init__(self, endpoint: Endpoint, upstreams: "Upstreams"):
        self.endpoint = endpoint
        self.idle: list[UpstreamConnection] = []
        self.active = 0  # requests in flight, for least-request balancing
        self.failures = 0
        self.ejected_until = 0.0
        self.ejections = 0
        self.upstreams = upstreams
        self.ssl = upstreams.client_ssl if endpoint.tls else None
        # gateway.h2upstream.H2Pool when the endpoint speaks HTTP/2 (its streams are
        # UpstreamConnections to the exchange); None: HTTP/1.1, the idle list below.
        self.h2 = upstreams.http2_pool(self) if endpoint.http2 and upstreams.http2_pool is not None else None

    def take_idle(self) -> UpstreamConnection | None:
        if self.h2 is not None:
            return self.h2.open_stream()
        idle = self.idle
        while idle:
            conn = idle.pop()  # LIFO: the warmest connection
            if conn.is_usable():
                conn.reused = True
                return conn
        return None

    def release(self, conn: UpstreamConnection, now: float = 0.0) -> None:
        """Back to the idle list, or closed beyond ``max_idle``; ``now``: the time if the caller
        has it (the idle timeout counts from it), else read here."""
        if conn.is_usable() and len(self.idle) < self.upstreams.max_idle:
            conn.idle_since = now if now else _monotonic()
            self.idle.append(conn)
        else:
            conn.close()

    def forget(self, conn: UpstreamConnection) -> None:
        try:
            self.idle.remove(conn)
        except ValueError:
            pass

    async def connect(self, timeout: float) -> UpstreamConnection:
        if self.h2 is not None:
            return await self.h2.connect(timeout)
        loop = asyncio.get_running_loop()
        ep = self.endpoint
        _, conn = await asyncio.wait_for(
            loop.create_connection(lambda: UpstreamConnection(self), ep.host, ep.port, ssl=self.ssl,
                                   server_hostname=ep.host if self.ssl else None),
            timeout,
        )
        return conn

    # -- passive health ---------------------------------------------------------

    def succeeded(self) -> None:
        if self.failures:
            self.failures = 0
        if self.ejections and self.ejected_until == 0.0:
            self.ejections = 0

    def failed(self, backend_key: str, peers: int) -> None:
        self.failures += 1
        if self.failures >= EJECT_AFTER and peers > 1:
            self.ejections += 1
            seconds = min(EJECT_BASE_SECONDS * (2 ** (self.ejections - 1)), EJECT_MAX_SECONDS)
            self.ejected_until = time.monotonic() + seconds
            self.failures = 0
            metrics.UPSTREAM_EJECTIONS.labels(backend_key).inc()
            log.warning("ejected %s of %s for %.0fs after %d failures", self.endpoint.address, backend_key, seconds, EJECT_AFTER)

    def ejected(self, now: float) -> bool:
        if self.ejected_until == 0.0:
            return False
        if now >= self.ejected_until:
            self.ejected_until = 0.0  # back in rotation; the next failure counts from zero
            return False
        return True

    def close_idle(self) -> None:
        for conn in self.idle:
            conn.close()
        self.idle.clear()
        if self.h2 is not None:
            self.h2.close()


def _usable_offset(pools: tuple, start: int, exclude: tuple, now: float) -> int:
    """Round the ring from ``start``: how far on is the first pool neither excluded (tried
    already) nor ejected; else the first not excluded; else 0. Usually 0."""
    n = len(pools)
    fallback = -1
    for k in range(n):
        p = pools[(start + k) % n]
        if exclude and p in exclude:
            continue
        if not p.ejected(now):
            return k
        if fallback < 0:
            fallback = k
    return fallback if fallback >= 0 else 0


class Upstreams:
    """Every endpoint pool of the process, and the balancing state per backend."""

    def __init__(self, max_idle: int = 256, idle_timeout: float = 20.0, client_ssl: ssl.SSLContext | None = None,
                 max_header_bytes: int = 65536, http2_pool: Callable | None = None,
                 client_ssl_h2: ssl.SSLContext | None = None):
        self.pools: dict[Endpoint, EndpointPool] = {}
        self.rr: dict[str, int] = {}
        self.max_idle = max_idle
        self.max_header_bytes = max_header_bytes  # a response head above this: 502
        self._sets: dict[str, tuple[EndpointSet, tuple[EndpointPool, ...]]] = {}  # see pools_of
        self.idle_timeout = idle_timeout
        self.client_ssl = client_ssl or ssl.create_default_context()
        # HTTP/2 endpoints: pools of multiplexed connections, made by the server's
        # factory (gateway.h2upstream.H2Pool: that module builds on this one), and
        # the TLS context that offers ALPN h2. No factory: they are spoken to in HTTP/1.1.
        self.http2_pool = http2_pool
        self.client_ssl_h2 = client_ssl_h2
        self._rand: Callable[[], float] = random.random

    def pool(self, ep: Endpoint) -> EndpointPool:
        p = self.pools.get(ep)
        if p is None:
            p = self.pools[ep] = EndpointPool(ep, self)
        return p

    def pools_of(self, eset: EndpointSet) -> tuple[EndpointPool, ...]:
        """The pools of ``eset``'s endpoints, in its order; built once per endpoint set.

        Endpoint sets are immutable and replaced on change, so the tuple is
        kept with the set it was built from and rebuilt when another one
        arrives under the same key. (Looking each endpoint's pool up per
        request hashed every endpoint of the backend on every request.)
        """
        got = self._sets.get(eset.key)
        if got is not None and got[0] is eset:
            return got[1]
        pools = tuple([self.pool(e) for e in eset.endpoints])
        self._sets[eset.key] = (eset, pools)
        return pools

    def pick(self, eset: EndpointSet, lb: str, exclude: tuple = ()) -> EndpointPool | None:
        """Choose an endpoint of ``eset``: skip ejected and excluded ones when others exist."""
        pools = self.pools_of(eset)
        n = len(pools)
        if n <= 1:
            return pools[0] if n else None
        now = _monotonic()
        if lb == "LeastRequest":
            # Power of two choices: near-optimal without scanning every endpoint.
            i = int(self._rand() * n)
            j = i + 1 + int(self._rand() * (n - 1))  # another endpoint than i
            a = pools[(i + _usable_offset(pools, i, exclude, now)) % n]
            b = pools[(j + _usable_offset(pools, j, exclude, now)) % n]
            return a if a.active <= b.active else b
        i = self.rr.get(eset.key, 0)
        i += _usable_offset(pools, i, exclude, now)
        # Skipped endpoints move the position too, so the rest share evenly.
        self.rr[eset.key] = i + 1
        return pools[i % n]

    def sweep(self, now: float, live: set[Endpoint] | None = None) -> None:
        """Close idle connections past their idle timeout, and pools no table uses."""
        limit = now - self.idle_timeout
        for ep, pool in list(self.pools.items()):
            if pool.idle:
                keep = []
                for c in pool.idle:
                    if c.idle_since < limit or not c.is_usable():
                        c.close()
                    else:
                        keep.append(c)
                pool.idle = keep
            if pool.h2 is not None:
                pool.h2.sweep(limit)
            if live is not None and ep not in live and pool.active == 0:
                pool.close_idle()
                del self.pools[ep]
        if live is not None:
            self._sets.clear()  # may hold pools just dropped, or sets no table has any more

    def next_expiry(self, now: float, busy_recheck: float) -> float | None:
        """When (``time.monotonic()``) ``sweep`` next has something to close: the
        first idle connection's idle timeout, or ``now + busy_recheck`` while a
        connection is in use (it goes idle later, unseen); None when there is no
        connection at all. The sweeper of a gateway with no client connection
        sleeps until then instead of waking every tick."""
        first = None
        for pool in self.pools.values():
            if pool.active:
                return now + busy_recheck
            for c in pool.idle:
                if first is None or c.idle_since < first:
                    first = c.idle_since
            if pool.h2 is not None:
                for conn in pool.h2.conns:
                    if conn.active:
                        return now + busy_recheck
                    if first is None or conn.idle_since < first:
                        first = conn.idle_since
        return None if first is None else first + self.idle_timeout

    def close(self) -> None:
        for pool in self.pools.values():
            pool.close_idle()


def pick_weighted(backends):
    """A backend by weight (Gateway API backendRefs); None when every weight is 0."""
    total = 0
    for b in backends:
        total += b.weight
    if total <= 0:
        return None
    x = random.random() * total
    for b in backends:
        x -= b.weight
        if x < 0 and b.weight > 0:
            return b
    for b in reversed(backends):
        if b.weight > 0:
            return b
    return None
