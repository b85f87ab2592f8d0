"""Upstream HTTP/2: multiplexed connections to an endpoint, one stream per request try.

An endpoint whose backend asks for HTTP/2 (``Endpoint.http2``: a Service port's
appProtocol ``kubernetes.io/h2c``, a url backend's ``protocol: HTTP/2``) gets an
``H2Pool`` beside its ``EndpointPool`` (gateway/upstream.py). Cleartext
endpoints are spoken to with prior knowledge (h2c, RFC 9113 3.3); TLS ones
offer ALPN ``h2`` and ``http/1.1``, and an endpoint whose server picks
``http/1.1`` becomes an ordinary HTTP/1.1 pool.

The exchange (gateway/exchange.py) drives a ``Stream`` exactly as it drives an
HTTP/1 ``UpstreamConnection`` (a stream is one, so the exchange's typed fields
take it): ``send`` the head, write the body into ``transport``, hear back
through the same ``Handler`` callbacks (upstream_head/body/done/failed, pause,
resume, and ``upstream_trailers``). So retries, timeouts, outlier ejection,
metrics and the access log need nothing new. The exchange writes the request
as HTTP/1.1 bytes, the head built with every route policy applied, then the
body by length or chunked; a stream parses them back with httptools (the same
parser as the client side: C, and exact about chunked framing) and turns them
into HEADERS and DATA frames of the ``h2`` state machine (the last chunk's
trailer fields, a client's request trailers, into a trailing HEADERS frame). Connection-specific
fields never reach the backend; ``TE: trailers`` always does (we take trailers).

Limits: the server's SETTINGS_MAX_CONCURRENT_STREAMS (at most
``MAX_STREAMS_PER_CONNECTION``) per connection, then another connection, up to
``MAX_CONNECTIONS``, then requests wait for a stream. GOAWAY: in-flight
streams finish, new ones go to a new connection, streams the server never
processed are retried at once. RST_STREAM(REFUSED_STREAM) is retried the same
way (RFC 9113 8.7: the request was not processed). Flow control both ways:
request body bytes wait for the stream's send window (the client stops being
read meanwhile); response bytes are acknowledged as soon as they are handed to
the client's transport, and not while that transport is full, so a slow
client closes its stream's window, never the connection's.
"""

from __future__ import annotations

import asyncio
import logging
import time
from http import HTTPStatus

import h2.config
import h2.connection
import h2.exceptions
import h2.settings
import httptools
from h2.connection import ConnectionState
from h2.errors import ErrorCodes
from h2.events import (
    ConnectionTerminated, DataReceived, InformationalResponseReceived, RemoteSettingsChanged, ResponseReceived,
    StreamEnded, StreamReset, TrailersReceived, WindowUpdated,
)
from hpack import NeverIndexedHeaderTuple

from gateway import metrics
from gateway.errors import MalformedFields
from gateway.h2fields import check_repeated, check_response, check_trailers
from gateway.h2state import H2State
from gateway.upstream import UpstreamConnection

log = logging.getLogger("crdgate.upstream")

# Streams one connection carries at most, whatever the server allows: bounds
# what one connection's failure costs.
MAX_STREAMS_PER_CONNECTION = 200
# Connections to one endpoint; past this, requests wait for a free stream.
MAX_CONNECTIONS = 16
# Our receive windows. A stream's bounds what one slow client makes us hold;
# the connection's is large enough that every stream can fill its own, so a
# stalled stream never stalls the others.
STREAM_WINDOW = 256 * 1024
CONNECTION_WINDOW = STREAM_WINDOW * MAX_STREAMS_PER_CONNECTION
# Request body bytes waiting for a send window before the client stops being read.
PENDING_HIGH = 64 * 1024
# A server that refuses this many streams in a row on one connection gets no more
# on it, and the refusal counts as a failed try (not an immediate resend).
REFUSALS_IN_ROW = 3

# Fields of an HTTP/1.1 request that mean nothing (or something else) in HTTP/2 (RFC 9113 8.2.2).
CONNECTION_SPECIFIC = frozenset((b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding",
                                 b"upgrade", b"http2-settings", b"host", b"te"))
# Fields whose value differs on every request (the gateway's request id, trace context).
PER_REQUEST = frozenset((b"x-request-id", b"traceparent", b"tracestate"))
_REASONS = {s.value: s.phrase.encode() for s in HTTPStatus}
# The header blocks a server sends, by h2 event, and the check of their fields.
_FIELDS_CHECKS = {ResponseReceived: check_response, InformationalResponseReceived: check_response,
                  TrailersReceived: check_trailers}


class _ClientState(H2State):
    """h2's client connection, kept open after a graceful GOAWAY.

    RFC 9113 6.8: streams up to the GOAWAY's last stream id may still complete.
    h2 closes its whole state machine on any GOAWAY it receives, so their
    responses would be protocol errors (python-hyper/h2#1181, open); after a
    NO_ERROR GOAWAY the state goes back to open. H2Connection opens no stream
    on the connection afterwards (``goaway``), which is all the closed state
    guarded.
    """

    def _receive_goaway_frame(self, frame):
        frames, events = super()._receive_goaway_frame(frame)
        if frame.error_code == ErrorCodes.NO_ERROR:
            self.state_machine.state = ConnectionState.CLIENT_OPEN
        return frames, events


class H2Pool:
    """The HTTP/2 connections of one endpoint (beside its EndpointPool, which keeps
    the balancing and health state)."""

    def __init__(self, pool):
        self.pool = pool  # gateway.upstream.EndpointPool
        self.conns: list[H2Connection] = []
        self.connecting = 0  # connections being opened
        self.waiters: list[asyncio.Future] = []  # requests waiting for a stream (MAX_CONNECTIONS reached)
        ep = pool.endpoint
        self.scheme = b"https" if ep.tls else b"http"

    def open_stream(self) -> Stream | None:
        """A stream on a connection with room for one, or None (the caller then awaits ``connect``)."""
        for conn in self.conns:
            if conn.has_room():
                return conn.new_stream()
        return None

    async def connect(self, timeout: float):
        """A stream on a new connection (or on one that freed a stream meanwhile)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            stream = self.open_stream()
            if stream is not None:
                return stream
            # One new connection at a time: requests arriving meanwhile wait for
            # it (and its stream limit) instead of each opening their own.
            if not self.connecting and len(self.conns) < MAX_CONNECTIONS:
                break
            fut = loop.create_future()
            self.waiters.append(fut)
            try:
                await asyncio.wait_for(fut, max(0.0, deadline - loop.time()))
            finally:
                if fut in self.waiters:
                    self.waiters.remove(fut)
        self.connecting += 1
        try:
            conn = await self._open(max(0.001, deadline - loop.time()))
        finally:
            self.connecting -= 1
            self.wake()  # its other streams are for whoever waits (or, failed, they try themselves)
        if isinstance(conn, UpstreamConnection):
            return conn  # the TLS server chose HTTP/1.1: this endpoint is an HTTP/1.1 one now
        self.conns.append(conn)
        return conn.new_stream()

    async def _open(self, timeout: float):
        loop = asyncio.get_running_loop()
        pool = self.pool
        ep = pool.endpoint
        ssl = pool.upstreams.client_ssl_h2 if ep.tls else None
        transport, conn = await asyncio.wait_for(
            loop.create_connection(lambda: H2Connection(self), ep.host, ep.port, ssl=ssl,
                                   server_hostname=ep.host if ssl else None),
            timeout,
        )
        if not conn.h2_chosen:
            # ALPN picked http/1.1: hand the transport to an HTTP/1.1 connection, and
            # let the endpoint's pool be a plain one from now on.
            pool.h2 = None
            up = UpstreamConnection(pool)
            transport.set_protocol(up)
            up.connection_made(transport)
            return up
        try:
            # The server's SETTINGS (its stream limit, its windows) come first: a
            # server that sends none is not speaking HTTP/2.
            await asyncio.wait_for(asyncio.shield(conn.settled), timeout)
        except BaseException:
            conn.close()
            raise
        return conn

    def wake(self) -> None:
        """Streams may be free: let waiting requests look again (in their order)."""
        waiters, self.waiters = self.waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    def forget(self, conn: H2Connection) -> None:
        try:
            self.conns.remove(conn)
        except ValueError:
            pass
        self.wake()

    def sweep(self, limit: float) -> None:
        """Close connections idle (no stream) since before ``limit``."""
        for conn in list(self.conns):
            if not conn.streams and conn.idle_since < limit:
                conn.close()

    def close(self) -> None:
        for conn in list(self.conns):
            conn.close()


class H2Connection:
    """One HTTP/2 connection to an endpoint (an asyncio protocol)."""

    def __init__(self, pool: H2Pool):
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.h2: h2.connection.H2Connection | None = None
        self.streams: dict[int, Stream] = {}  # by stream id, once HEADERS went out
        self.active = 0  # streams handed out and not yet over (some have no id yet)
        self.h2_chosen = True
        self.closed = False
        self.goaway = False  # no new streams on this connection
        self.served = False  # a stream got a response: later failures of others may be stale
        self.refusals = 0  # REFUSED_STREAM in a row
        self.stream_limit = 0  # streams at once: the server's SETTINGS_MAX_CONCURRENT_STREAMS, capped
        self.passed_blocks: dict = {}  # the last header block each field check passed (h2fields)
        self.write_paused = False
        self.flush_pending = False
        self.idle_since = time.monotonic()
        self.settled = asyncio.get_running_loop().create_future()

    # -- asyncio.Protocol ------------------------------------------------------

    def connection_made(self, transport) -> None:
        self.transport = transport
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is not None and ssl_object.selected_alpn_protocol() != "h2":
            self.h2_chosen = False
            return
        metrics.UPSTREAM_CONNECTIONS.inc()
        # Outbound validation off: the fields come from httptools (names are tokens,
        # values hold no CR, LF or NUL, surrounding whitespace is stripped) and
        # _send_headers lower-cases them and drops the connection-specific ones; h2
        # checking each again cost more CPU than the rest of the request. What the
        # server sends is checked by gateway/h2fields.py (h2's rules, in one pass). Inbound
        # normalisation joins Cookie crumbs, a request field: for responses, a pass for nothing.
        config = h2.config.H2Configuration(client_side=True, header_encoding=None, validate_outbound_headers=False,
                                           normalize_outbound_headers=False, validate_inbound_headers=False,
                                           normalize_inbound_headers=False)
        conn = self.h2 = _ClientState(config=config)
        conn.local_settings = h2.settings.Settings(client=True, initial_values={
            h2.settings.SettingCodes.ENABLE_PUSH: 0,
            h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: STREAM_WINDOW,
            h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: self.pool.pool.upstreams.max_header_bytes,
        })
        conn.initiate_connection()
        conn.increment_flow_control_window(CONNECTION_WINDOW - 65535)
        self.flush()

    def data_received(self, data: bytes) -> None:
        try:
            events = self.h2.receive_data(data)
        except h2.exceptions.ProtocolError as e:
            self._broken(e)  # h2 queued the GOAWAY
            return
        # Streams that got response bytes in this read: their exchanges write them
        # to the client once the read is worked through (one write each).
        touched = []
        for event in events:
            t = type(event)
            check = _FIELDS_CHECKS.get(t)
            if check is not None:
                try:
                    check_repeated(check, event.headers, self.passed_blocks)
                except MalformedFields as e:
                    self.h2.close_connection(ErrorCodes.PROTOCOL_ERROR)  # as h2 answers its own check
                    self._broken(e)
                    return
            if t is DataReceived:
                s = self.streams.get(event.stream_id)
                if s is not None:
                    s.data(event.data, event.flow_controlled_length)
                    if not s.touched:
                        s.touched = True
                        touched.append(s)
                elif event.flow_controlled_length:
                    # A stream we gave up on: its bytes still count against the connection.
                    self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif t is ResponseReceived:
                s = self.streams.get(event.stream_id)
                if s is not None:
                    self.served = True
                    self.refusals = 0
                    s.head(event.headers)
                    if not s.touched:
                        s.touched = True
                        touched.append(s)
            elif t is TrailersReceived:
                s = self.streams.get(event.stream_id)
                if s is not None:
                    s.trailers(event.headers)
            elif t is StreamEnded:
                s = self.streams.get(event.stream_id)
                if s is not None:
                    s.ended()  # upstream_done writes what the response left in the exchange
            elif t is StreamReset:
                s = self.streams.get(event.stream_id)
                if s is not None:
                    s.reset(event.error_code)
            elif t is WindowUpdated:
                for s in [self.streams.get(event.stream_id)] if event.stream_id else list(self.streams.values()):
                    if s is not None:
                        try:
                            s.pump()
                        except h2.exceptions.ProtocolError:
                            s.failed("protocol", unprocessed=False)
            elif t is ConnectionTerminated:
                self.goaway = True
                self.fail_all("reset", unprocessed_after=event.last_stream_id or 0)
            elif t is RemoteSettingsChanged:
                # The server's stream limit, read here once rather than from h2's settings
                # (a mapping in Python) for every stream asked for.
                self.stream_limit = min(self.h2.remote_settings.max_concurrent_streams, MAX_STREAMS_PER_CONNECTION)
                if not self.settled.done():
                    self.settled.set_result(None)
                self.pool.wake()  # the stream limit may have grown
        for s in touched:
            s.touched = False
            s.flush_handler()
        self.flush()
        if self.goaway and not self.streams and not self.active:
            self.close()

    def _broken(self, error: Exception) -> None:
        """The server broke the protocol: the GOAWAY queued goes out, every stream fails, the connection closes."""
        log.warning("HTTP/2 upstream %s broke the protocol: %s", self.pool.pool.endpoint.address, error)
        self.flush()
        self.fail_all("protocol", unprocessed_after=None)
        self.close()

    def eof_received(self):
        return False

    def connection_lost(self, exc) -> None:
        if not self.closed:
            self.closed = True
            if self.h2 is not None:
                metrics.UPSTREAM_CONNECTIONS.dec()
        if not self.settled.done():
            self.settled.set_exception(ConnectionResetError("HTTP/2 upstream closed before its SETTINGS"))
            self.settled.exception()  # retrieved: nobody may be waiting any more
        self.pool.forget(self)
        # Whatever was in flight: stale (resendable) only where nothing came back yet
        # on a connection that had served before, as for a pooled HTTP/1.1 connection.
        self.fail_all("reset", unprocessed_after=None)

    def pause_writing(self) -> None:
        self.write_paused = True
        for s in list(self.streams.values()):
            s.set_blocked()

    def resume_writing(self) -> None:
        self.write_paused = False
        for s in list(self.streams.values()):
            s.set_blocked()

    # -- streams ---------------------------------------------------------------

    def has_room(self) -> bool:
        # stream_limit is 0 until the server's SETTINGS came (``settled``).
        return self.active < self.stream_limit and not self.closed and not self.goaway

    def new_stream(self) -> Stream:
        self.active += 1
        return Stream(self)

    def stream_over(self, s: Stream) -> None:
        """``s`` no longer counts against this connection."""
        if s.stream_id and self.streams.get(s.stream_id) is s:
            del self.streams[s.stream_id]
        self.active -= 1
        if not self.active:
            self.idle_since = time.monotonic()
        if self.goaway and not self.active:
            self.close()
        else:
            self.pool.wake()

    def fail_all(self, reason: str, unprocessed_after: int | None) -> None:
        """Fail streams: all of them, or (GOAWAY) those above the last one the server processed."""
        for sid, s in list(self.streams.items()):
            if unprocessed_after is None:
                s.failed(reason, unprocessed=self.served and not s.got_bytes and s.reused)
            elif sid > unprocessed_after:
                s.failed(reason, unprocessed=True)

    def flush(self) -> None:
        if self.h2 is None:
            return
        data = self.h2.data_to_send()
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def flush_soon(self) -> None:
        """Flush at the end of this turn of the event loop: the streams that several
        clients' requests opened in one turn leave in one write (one system call)."""
        if not self.flush_pending:
            self.flush_pending = True
            asyncio.get_running_loop().call_soon(self._flush_soon)

    def _flush_soon(self) -> None:
        self.flush_pending = False
        self.flush()

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            if self.h2 is not None and not self.closed:
                try:
                    self.h2.close_connection()
                    self.flush()
                except h2.exceptions.ProtocolError:
                    pass
            self.transport.close()
        self.goaway = True
        self.pool.forget(self)


class Stream(UpstreamConnection):
    """One request try on an HTTP/2 connection, driven like an HTTP/1 connection.

    ``transport`` is the stream itself: the exchange writes the request there
    as HTTP/1.1 bytes (``write``), and the client's protocol pauses and
    resumes reading the response there (``pause_reading``/``resume_reading``).
    """

    # Parser callbacks a request parser would look up and call for nothing (the first is
    # UpstreamConnection's, for a response): None, httptools leaves them out.
    on_message_begin = on_status = on_chunk_header = on_chunk_complete = None

    def __init__(self, conn: H2Connection):
        # Not UpstreamConnection.__init__: a stream has no socket and no response parser.
        self.pool = conn.pool.pool
        self.conn = conn
        self.transport = self
        self.handler = None
        self.reused = conn.served
        self.got_bytes = False
        self.head_only = False
        self.may_upgrade = False
        self.upgraded = False
        self.whole = None
        self.idle_since = 0.0
        self.stream_id = 0
        self.parser = httptools.HttpRequestParser(self)
        self.fields: list = []  # of the header block being parsed: the head's, then the trailers'
        self.head_fields: list = []
        self.url = b""
        self.over = False  # done, failed or cancelled: counts no more
        self.local_end = False  # the request is complete (END_STREAM goes with its last pending byte)
        self.sent_end = False  # END_STREAM went out
        self.pending: list[bytes] = []  # request body bytes waiting for a window
        self.pending_bytes = 0
        self.blocked = False  # the exchange was told to pause (upstream_pause)
        self.reading_paused = False
        self.unacked = 0  # response bytes not acknowledged while the client is slow
        self.touched = False  # on the list of streams whose exchange flushes after this read

    # -- UpstreamConnection, as the exchange uses it ---------------------------

    def send(self, handler, data: bytes, head_only: bool, may_upgrade: bool = False) -> None:
        self.handler = handler
        self.head_only = head_only
        self.write(data)

    def close(self) -> None:
        self.handler = None
        if self.over:
            return
        self._abandon()
        self.conn.flush_soon()

    def is_usable(self) -> bool:
        return False  # a stream serves one try; EndpointPool.release closes it

    # -- transport, as the exchange and the client's protocol use it -------------

    def write(self, data: bytes) -> None:
        if self.over:
            return
        try:
            self.parser.feed_data(data)
            # After the parse, not from its callbacks: a body and its end parsed from one
            # write leave as one DATA frame carrying END_STREAM, not DATA then an empty one.
            self.pump()
        except httptools.HttpParserUpgrade:
            # An Upgrade is hop-by-hop: the backend gets the request without it, and
            # its answer goes back as an ordinary response.
            if not self.local_end:
                self._send_headers(end=True)
        except (httptools.HttpParserError, h2.exceptions.ProtocolError, ValueError) as e:
            log.warning("request not sendable over HTTP/2 to %s: %s", self.pool.endpoint.address, e.__context__ or e)
            # Reported later, not from inside the exchange's own write (as an HTTP/1
            # connection reports only from its own callbacks).
            h, self.handler = self.handler, None
            self._abandon()
            if h is not None:
                self.got_bytes = True
                asyncio.get_running_loop().call_soon(h.upstream_failed, self, "protocol")
        self.conn.flush_soon()

    def is_closing(self) -> bool:
        return self.over

    def pause_reading(self) -> None:
        self.reading_paused = True

    def resume_reading(self) -> None:
        self.reading_paused = False
        if self.unacked and not self.over:
            n, self.unacked = self.unacked, 0
            self._ack(n)
            self.conn.flush_soon()

    # -- httptools callbacks: the request the exchange wrote ----------------------

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.fields.append((name, value))

    def on_headers_complete(self) -> None:
        # Sent with the first body bytes or the end of the message, whichever comes
        # first. Fields parsed from now on are trailers (the last chunk's).
        self.head_fields = self.fields
        self.fields = []

    def on_body(self, body: bytes) -> None:
        if not self.stream_id:
            self._send_headers(end=False)
        self.pending.append(bytes(body))
        self.pending_bytes += len(body)  # sent by ``write`` once the parse is over

    def on_message_complete(self) -> None:
        trailers = self.fields
        if trailers:
            # The request's trailers: a HEADERS frame with END_STREAM after the body.
            self.fields = trailers = [(n.lower(), v) for n, v in trailers if n.lower() not in CONNECTION_SPECIFIC]
        if not self.stream_id:
            self._send_headers(end=not trailers)
            if not trailers:
                return
        self.local_end = True  # sent by ``write`` once the parse is over

    def _send_headers(self, end: bool) -> None:
        conn = self.conn
        authority = b""
        fields = []
        for name, value in self.head_fields:
            lname = name.lower()
            if lname in CONNECTION_SPECIFIC:
                if lname == b"host":
                    authority = value
                continue
            # A value new on every request would only churn the HPACK table (and make
            # every later lookup in it slower): sent as a literal, never indexed.
            fields.append(NeverIndexedHeaderTuple(lname, value) if lname in PER_REQUEST else (lname, value))
        # TE: trailers says the gateway takes trailers, which it does (passed on, or
        # dropped for a client that takes none); gRPC servers require it.
        head = [(b":method", self.parser.get_method()), (b":scheme", conn.pool.scheme),
                (b":authority", authority), (b":path", self.url), (b"te", b"trailers")]
        sid = self.stream_id = conn.h2.get_next_available_stream_id()
        conn.streams[sid] = self
        self.local_end = self.sent_end = end
        conn.h2.send_headers(sid, head + fields, end_stream=end)

    # -- request body toward the server: flow control ---------------------------

    def pump(self) -> None:
        """Send what the windows allow; END_STREAM with the last byte."""
        if self.over or not self.stream_id or self.sent_end:
            return
        h = self.conn.h2
        sid = self.stream_id
        pending = self.pending
        while pending:
            window = min(h.local_flow_control_window(sid), h.max_outbound_frame_size)
            if window <= 0:
                break
            chunk = pending[0]
            if len(chunk) <= window:
                pending.pop(0)
            else:
                pending[0] = chunk[window:]
                chunk = chunk[:window]
            self.pending_bytes -= len(chunk)
            self.sent_end = self.local_end and not pending and not self.fields
            h.send_data(sid, chunk, end_stream=self.sent_end)
        if self.local_end and not pending and not self.sent_end:
            if self.fields:
                h.send_headers(sid, self.fields, end_stream=True)  # the request's trailers
            else:
                h.end_stream(sid)
            self.sent_end = True
        self.set_blocked()

    def set_blocked(self) -> None:
        """Tell the exchange to stop (or start again) reading the client's body."""
        blocked = self.pending_bytes > PENDING_HIGH or (self.conn.write_paused and not self.sent_end)
        if blocked != self.blocked and self.handler is not None:
            self.blocked = blocked
            if blocked:
                self.handler.upstream_pause()
            else:
                self.handler.upstream_resume()

    # -- the response, from H2Connection ------------------------------------------

    def head(self, headers) -> None:
        status = 0
        fields = []
        for name, value in headers:
            if name[:1] == b":":
                if name == b":status":
                    status = int(value)
                continue
            fields.append((name, value))
        self.got_bytes = True
        h = self.handler
        if h is not None:
            h.upstream_head(self, status, _REASONS.get(status, b""), fields, True)

    def data(self, data: bytes, flow_controlled: int) -> None:
        h = self.handler
        if h is not None:
            h.upstream_body(data)
        if self.reading_paused:
            self.unacked += flow_controlled
        elif flow_controlled:
            self._ack(flow_controlled)

    def _ack(self, n: int) -> None:
        try:
            self.conn.h2.acknowledge_received_data(n, self.stream_id)
        except h2.exceptions.StreamClosedError:
            pass  # the stream ended meanwhile; h2 counted the connection's share already

    def flush_handler(self) -> None:
        h = self.handler
        if h is not None:
            h.flush()

    def trailers(self, headers) -> None:
        h = self.handler
        if h is not None:
            h.upstream_trailers([(n, v) for n, v in headers if n[:1] != b":"])

    def ended(self) -> None:
        h = self.handler
        self.handler = None
        if self.stream_id and not self.sent_end:
            # The response is complete before the request: the server needs no more of it (RFC 9113 8.1).
            try:
                self.conn.h2.reset_stream(self.stream_id, ErrorCodes.NO_ERROR)
            except h2.exceptions.ProtocolError:
                pass
        self._over()
        if h is not None:
            h.upstream_done(self)

    def reset(self, error_code) -> None:
        if error_code == ErrorCodes.REFUSED_STREAM:
            conn = self.conn
            conn.refusals += 1
            if conn.refusals >= REFUSALS_IN_ROW:
                conn.goaway = True  # a server that refuses everything: stop asking this connection
            self.failed("reset", unprocessed=conn.refusals < REFUSALS_IN_ROW)
        else:
            self.failed("reset", unprocessed=False)

    def failed(self, reason: str, unprocessed: bool) -> None:
        """The try failed; ``unprocessed``: the server never acted on the request (resend at once)."""
        h = self.handler
        self.handler = None
        self._abandon()
        if h is not None:
            # The exchange resends at once, as for a stale pooled connection, a request
            # that was never processed (gateway/exchange.py: reused and no bytes back).
            self.reused = unprocessed
            self.got_bytes = not unprocessed
            h.upstream_failed(self, reason)

    def _abandon(self) -> None:
        """Cancel the stream on the server's side (if it is open there) and stop counting it."""
        if self.stream_id and not self.over and not self.conn.closed:
            try:
                self.conn.h2.reset_stream(self.stream_id, ErrorCodes.CANCEL)
            except h2.exceptions.ProtocolError:
                pass  # closed on the server's side already
        self._over()

    def _over(self) -> None:
        if not self.over:
            self.over = True
            self.pending = []
            # The parser's callbacks and ``transport`` point back at this stream: with
            # those cut, a finished try is freed when its last reference goes, not
            # left to the garbage collector (one cycle per call was a collection
            # every few dozen calls).
            self.parser = None
            self.transport = None
            self.conn.stream_over(self)
