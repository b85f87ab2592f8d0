"""The HTTP/2 protocol: one ``Http2Protocol`` per client connection that speaks HTTP/2.

A connection becomes HTTP/2 in one of two ways (``serve_http2``, called by the
HTTP/1 protocol, gateway/http1.py, which every listener starts with): on the
TLS listener when the client picked ``h2`` by ALPN, and on the plain listener
when the connection opens with the HTTP/2 preface (prior knowledge, ``--h2c``).
Framing and flow-control accounting are the h2 package's state machine
(``H2Connection``, as ``H2State``: gateway/h2state.py; HPACK: gateway/h2hpack.py); this module feeds it
bytes, turns its events into work and writes what it has to send.

Each request stream is an ``Http2Stream`` (gateway/h2stream.py), the client
side of one ``Exchange``: the same pipeline as HTTP/1.1. Response frames are
emitted here, once per event-loop turn for every stream that has something to
send (``schedule``), as far as the client's windows allow.

Limits, each against a known attack on HTTP/2 servers:
- concurrency: ``SETTINGS_MAX_CONCURRENT_STREAMS`` is advertised and a stream
  past it is refused with ``REFUSED_STREAM`` (a stream error, RFC 9113 5.1.2);
- header lists: ``SETTINGS_MAX_HEADER_LIST_SIZE`` from ``--max-header-bytes``,
  enforced by the HPACK decoder; our HPACK encoder indexes nothing
  (gateway/h2hpack.py), so no table of our headers grows at the client's word;
  CONTINUATION floods (CVE-2024-27316) stop at h2's backlog of 64 frames, a
  connection error;
- rapid reset (CVE-2023-44487): streams the client resets before their
  response is out are counted; past ``RESET_LIMIT`` and half of all streams the
  connection closes with ``ENHANCE_YOUR_CALM``;
- floods of frames that cost work but carry no request (PING, SETTINGS,
  PRIORITY, empty DATA, unknown types): a token bucket per connection;
  exhausted, ``ENHANCE_YOUR_CALM`` and close. While the client does not read
  what we write (the transport is paused), we stop reading it, so answers to
  such frames cannot pile up;
- timeouts: the first request within ``--header-timeout``, a connection with no
  stream closes after ``--idle-timeout``, and a stream whose response bytes
  make no progress (the client keeps its window shut) for ``--idle-timeout``
  is reset; when the whole connection's window is shut, the connection closes.

Drain: the first sweep after draining starts sends GOAWAY naming the last
stream taken; streams in flight finish, then the connection closes.

Neighbours: gateway/server.py owns the listeners and sweeps ``check_timeouts``.
"""

from __future__ import annotations

import asyncio
import logging
import time

from h2.config import H2Configuration
from h2.errors import ErrorCodes
from h2.events import (
    ConnectionTerminated, DataReceived, PingReceived, PriorityUpdated, RemoteSettingsChanged, RequestReceived,
    StreamEnded, StreamReset, TrailersReceived, UnknownFrameReceived, WindowUpdated,
)
from h2.exceptions import H2Error, ProtocolError
from h2.settings import SettingCodes, Settings
from hyperframe.frame import GoAwayFrame

from gateway.errors import MalformedFields
from gateway.h2fields import check_repeated, check_request, check_trailers
from gateway.h2state import H2State
from gateway.h2stream import Http2Stream

log = logging.getLogger("crdgate.proxy")

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
MAX_CONCURRENT_STREAMS = 128
# h2 would answer a stream past its own limit with a connection error: it is
# kept above ours so that ours (REFUSED_STREAM) is the one a client meets.
_H2_STREAM_LIMIT = 2 * MAX_CONCURRENT_STREAMS
# Our request-body window per stream; the connection's is wide enough for every
# stream's at once, so streams paused by a slow upstream never starve the others.
STREAM_WINDOW = 65535
CONNECTION_WINDOW = STREAM_WINDOW * (MAX_CONCURRENT_STREAMS + 1)
# What our HPACK encoder keeps of the headers we sent, whatever the client allows.
ENCODER_TABLE_LIMIT = 4096
# Rapid reset: the client reset this many streams before their response was out ...
RESET_LIMIT = 100
# ... and they are at least this share of the streams it opened.
RESET_SHARE = 0.5
# Frames without a request (PING, SETTINGS, PRIORITY, empty DATA...): a bucket of
# FLOOD_BURST refilled at FLOOD_RATE a second.
FLOOD_BURST = 1000.0
FLOOD_RATE = 1000.0

_monotonic = time.monotonic

# Request heads and trailers are checked by gateway/h2fields.py (pseudo-header
# fields, characters, connection-specific fields, TE other than "trailers"):
# the same rules as h2's inbound check, in one pass, at a quarter of its cost.
# What we send is built from fields already parsed and filtered
# (gateway/h2stream.py): checking it again costs a tenth of a response.
# Cookie crumbs are joined by Http2Stream.request as it copies the fields (h2's
# inbound normalisation would be one more pass over every request's fields).
_CONFIG = H2Configuration(client_side=False, header_encoding=None, validate_inbound_headers=False,
                          validate_outbound_headers=False, normalize_outbound_headers=False,
                          normalize_inbound_headers=False)


class _Settings(Settings):
    """Our SETTINGS as advertised, with h2's own stream limit above the advertised one (see above)."""

    @property
    def max_concurrent_streams(self) -> int:
        return _H2_STREAM_LIMIT


def serve_http2(http1, data: bytes) -> None:
    """Hand the connection of the HTTP/1 protocol ``http1`` over to HTTP/2.

    ``data``: bytes already read (the preface and what came with it). The
    HTTP/1 protocol has seen the connection made (peer, trusted proxy, TLS
    server name) and is dropped.
    """
    transport = http1.transport
    proto = Http2Protocol(http1.server, http1.scheme)
    proto.peer = http1.peer
    proto.peer_bytes = http1.peer_bytes
    proto.forwarded_for = http1.forwarded_for
    proto.trusted = http1.trusted
    proto.sni = http1.sni
    http1.server.connections.discard(http1)
    http1.transport = None
    http1.closed = True
    transport.set_protocol(proto)
    proto.connection_made(transport)
    if data:
        proto.data_received(data)


class Http2Protocol:
    """One HTTP/2 client connection (see the module docstring). An asyncio protocol by duck typing."""

    def __init__(self, server, scheme: str = "http"):  # server: gateway.server.Server
        self.server = server
        self.upstreams = server.upstreams
        self.stats = server.stats
        self.access_log = server.access_log
        self.request_id_header = server.request_id_header
        self.create_traceparent = server.create_traceparent
        self.tracer = server.tracer
        self.limiter = server.limiter
        self.ratelimit_headers = server.ratelimit_headers
        self.scheme = scheme
        self.scheme_bytes = scheme.encode()
        self.sni: str | None = None
        self.peer = ""
        self.peer_bytes = b""
        self.forwarded_for = b""
        self.trusted = False
        lim = server.limits
        self.limits = lim
        self.max_body_bytes = lim.max_body_bytes
        self.max_headers = lim.max_headers
        # Per-connection memos, shared with the streams (see Http2Stream.__init__ and _forget).
        self.auth_memo = None
        self.addr_key = None
        self.fwd_key = None
        self.fwd_block = b""
        self.transport = None
        self.closed = False
        self.h2 = H2State(_CONFIG)
        self.streams: dict[int, Http2Stream] = {}
        self.opened = 0  # streams taken
        self.premature_resets = 0
        self.flood_tokens = FLOOD_BURST
        self.flood_at = _monotonic()
        self.idle_since = 0.0
        self.goaway_sent = False
        self.peer_goaway = False
        self.write_paused = False
        self._ready: list[Http2Stream] = []
        self._flush_due = False
        self._receiving = False
        self.passed_blocks: dict = {}  # the last header block each field check passed (h2fields)

    # The server's drain and sweeper read ``pipeline``: the requests in flight.
    @property
    def pipeline(self) -> dict:
        return self.streams

    # -- connection ------------------------------------------------------------------

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.idle_since = _monotonic()
        h2 = self.h2
        h2.local_settings = _Settings(client=False, initial_values={
            SettingCodes.MAX_CONCURRENT_STREAMS: MAX_CONCURRENT_STREAMS,
            SettingCodes.MAX_HEADER_LIST_SIZE: self.limits.max_header_bytes,
            SettingCodes.INITIAL_WINDOW_SIZE: STREAM_WINDOW,
            SettingCodes.ENABLE_PUSH: 0,
        })
        h2.decoder.max_header_list_size = self.limits.max_header_bytes
        h2.initiate_connection()
        h2.increment_flow_control_window(CONNECTION_WINDOW - STREAM_WINDOW)
        transport.write(h2.data_to_send())
        self.server.connections.add(self)

    def connection_lost(self, exc) -> None:
        self.closed = True
        self.server.connections.discard(self)
        for stream in list(self.streams.values()):
            stream.cancel()
        self.streams.clear()
        self.server.connection_closed(self)

    def eof_received(self) -> bool:
        return False  # an HTTP/2 client that half-closes is gone: close

    def pause_writing(self) -> None:
        # The client does not read what we write: stop reading it too, so the
        # answers to its frames (PING and SETTINGS acknowledgements) cannot pile up.
        self.write_paused = True
        if not self.closed:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        if not self.closed:
            self.transport.resume_reading()
            for stream in self.streams.values():
                if stream.pending:
                    self.schedule(stream)

    def abort(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.abort()

    def close(self) -> None:
        """Graceful: GOAWAY, streams in flight finish, then the connection closes."""
        if self.closed:
            return
        if self.streams:
            self._send_goaway()
        else:
            self._close(ErrorCodes.NO_ERROR)

    def _close(self, code: int) -> None:
        if self.closed:
            return
        try:
            self.h2.close_connection(error_code=code, last_stream_id=self.h2.highest_inbound_stream_id)
        except H2Error:
            pass  # closed already (h2 sent GOAWAY after a protocol error)
        self._write_out()
        self.closed = True
        self.transport.close()

    def _send_goaway(self) -> None:
        """GOAWAY naming the last stream taken, while those streams finish.

        Written with hyperframe (h2's framing layer) rather than through h2,
        whose state machine would refuse to send anything after its GOAWAY.
        """
        if self.goaway_sent:
            return
        self.goaway_sent = True
        self._write_out()
        frame = GoAwayFrame(0, last_stream_id=self.h2.highest_inbound_stream_id, error_code=0)
        self.transport.write(frame.serialize())

    def _calm(self, why: str) -> None:
        """A client abusing the protocol: GOAWAY ENHANCE_YOUR_CALM and close, its streams cancelled."""
        log.warning("closing HTTP/2 connection from %s: %s", self.peer, why)
        self.stats.rejected(400)
        for stream in list(self.streams.values()):
            stream.cancel()
        self.streams.clear()
        self._close(ErrorCodes.ENHANCE_YOUR_CALM)

    # -- reading -----------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        self._receiving = True
        try:
            try:
                events = self.h2.receive_data(data)
            except ProtocolError as e:
                # h2 has queued a GOAWAY with the error's code: send it and close.
                self._protocol_error(e)
                return
            for event in events:
                if self.closed:
                    break  # the connection was closed for abuse: the rest is not worked on
                kind = type(event)
                if kind is DataReceived:
                    self._on_data(event)
                elif kind is RequestReceived:
                    if self._well_formed(check_request, event):
                        self._on_request(event)
                elif kind is StreamEnded:
                    self._on_stream_ended(event.stream_id)
                elif kind is WindowUpdated:
                    self._on_window(event.stream_id)
                elif kind is StreamReset:
                    self._on_reset(event.stream_id)
                elif kind is RemoteSettingsChanged:
                    self._flood(1)
                    self._on_settings(event)
                elif kind is PingReceived or kind is PriorityUpdated or kind is UnknownFrameReceived:
                    self._flood(1)
                elif kind is ConnectionTerminated:
                    self.peer_goaway = True
                    if not self.streams:
                        self._close(ErrorCodes.NO_ERROR)
                elif kind is TrailersReceived:
                    if self._well_formed(check_trailers, event):
                        self._on_trailers(event)  # StreamEnded follows
        finally:
            self._receiving = False
        if not self.closed:
            self._flush()

    def _well_formed(self, check, event) -> bool:
        """``check`` (gateway/h2fields.py) passes the event's header block; if not, GOAWAY as h2 would."""
        try:
            check_repeated(check, event.headers, self.passed_blocks)
        except MalformedFields as e:
            self.h2.close_connection(ErrorCodes.PROTOCOL_ERROR)
            self._protocol_error(e)
            return False
        return True

    def _protocol_error(self, error: Exception) -> None:
        """The client broke the protocol (h2 queued the GOAWAY): send it, close, its streams cancelled."""
        log.info("HTTP/2 protocol error from %s: %s", self.peer, error)
        self.stats.rejected(400)
        for stream in list(self.streams.values()):
            stream.cancel()
        self.streams.clear()
        self._write_out()
        self.closed = True
        self.transport.close()

    def _on_request(self, event) -> None:
        sid = event.stream_id
        if self.goaway_sent or self.peer_goaway or len(self.streams) >= MAX_CONCURRENT_STREAMS:
            self.h2.reset_stream(sid, ErrorCodes.REFUSED_STREAM)
            return
        stream = Http2Stream(self, sid)
        self.streams[sid] = stream
        self.opened += 1
        headers = event.headers
        ex = stream.request(headers, event.stream_ended is not None)
        if len(headers) > self.max_headers + 4:  # pseudo-header fields aside, as --max-headers counts lines
            self.stats.rejected(431)
            ex.respond(431, "request header fields too large")
            return
        if stream.expectation_failed:
            self.stats.rejected(417)
            ex.respond(417, "unsupported expectation")
            return
        ex.begin()  # a gRPC request's grpc-timeout is part of its deadline (Exchange.begin)

    def _on_data(self, event) -> None:
        sid = event.stream_id
        n = event.flow_controlled_length
        stream = self.streams.get(sid)
        if not event.data and event.stream_ended is None:
            self._flood(1)
        if stream is None or stream.closed:
            if n:
                try:
                    self.h2.acknowledge_received_data(n, sid)  # the connection's window only
                except H2Error:
                    pass
            return
        if stream.reading_paused:
            stream.unacked += n
        elif n:
            self.h2.acknowledge_received_data(n, sid)
        if event.data:
            stream.exchange.request_body(event.data)

    def _on_trailers(self, event) -> None:
        """Request trailers, checked as a head is (gateway/h2fields.py: no pseudo-header or
        connection-specific field, TE only ``trailers``; h2: the header list size): to the
        exchange, which forwards them."""
        stream = self.streams.get(event.stream_id)
        if stream is None or stream.closed or stream.exchange.finished:
            return  # answered already: nothing more of the request goes anywhere
        ex = stream.exchange
        if len(event.headers) > self.max_headers:
            self.stats.rejected(431)
            if ex.resp_started:
                self.reset(stream)
            else:
                ex.respond(431, "request trailer fields too large")
            return
        ex.request_trailers(event.headers)

    def acknowledge(self, stream: Http2Stream) -> None:
        """The exchange reads this stream's body again: reopen the client's window."""
        n = stream.unacked
        stream.unacked = 0
        if n and not self.closed and not stream.closed:
            try:
                self.h2.acknowledge_received_data(n, stream.stream_id)
            except H2Error:
                return
            self._flush_soon()

    def _on_stream_ended(self, sid: int) -> None:
        stream = self.streams.get(sid)
        if stream is None or stream.closed:
            return
        stream.remote_ended = True
        stream.exchange.request_complete()
        if stream.ended:
            self._forget(stream)

    def _on_reset(self, sid: int) -> None:
        stream = self.streams.pop(sid, None)
        if stream is None:
            return
        if not stream.ended:
            self.premature_resets += 1
        stream.cancel()
        self._forget(stream, popped=True)
        if self.premature_resets >= RESET_LIMIT and self.premature_resets >= self.opened * RESET_SHARE:
            self._calm("rapid reset: %d of %d streams reset by the client" % (self.premature_resets, self.opened))

    def _on_window(self, sid: int) -> None:
        if sid == 0:
            for stream in self.streams.values():
                if stream.pending:
                    self.schedule(stream)
        else:
            stream = self.streams.get(sid)
            if stream is not None and stream.pending:
                self.schedule(stream)

    def _on_settings(self, event) -> None:
        changed = event.changed_settings
        if SettingCodes.HEADER_TABLE_SIZE in changed and self.h2.encoder.header_table_size > ENCODER_TABLE_LIMIT:
            self.h2.encoder.header_table_size = ENCODER_TABLE_LIMIT
        if SettingCodes.INITIAL_WINDOW_SIZE in changed:
            self._on_window(0)

    def _flood(self, cost: float) -> None:
        now = _monotonic()
        tokens = min(FLOOD_BURST, self.flood_tokens + (now - self.flood_at) * FLOOD_RATE) - cost
        self.flood_at = now
        self.flood_tokens = tokens
        if tokens < 0:
            self._calm("flood of frames without requests (PING, SETTINGS, PRIORITY, empty DATA)")

    # -- writing -----------------------------------------------------------------------

    def schedule(self, stream: Http2Stream) -> None:
        """``stream`` has something to send: emitted once this turn of the loop is over."""
        if not stream.queued:
            stream.queued = True
            self._ready.append(stream)
        self._flush_soon()

    def _flush_soon(self) -> None:
        if not self._flush_due and not self._receiving and not self.closed:
            self._flush_due = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_due = False
        if self.closed:
            return
        ready = self._ready
        if ready:
            self._ready = []
            for stream in ready:
                stream.queued = False
                self._emit(stream)
        self._write_out()

    def _write_out(self) -> None:
        data = self.h2.data_to_send()
        if data and self.transport is not None:
            self.transport.write(data)

    def _emit(self, stream: Http2Stream) -> None:
        """Frames for what ``stream`` has queued, as far as the client's windows allow."""
        if stream.closed:
            return
        h2 = self.h2
        sid = stream.stream_id
        try:
            if stream.interim is not None:
                h2.send_headers(sid, stream.interim)
                stream.interim = None
            if stream.head is not None:
                head = stream.head
                stream.head = None
                end = stream.ending and not stream.pending and stream.trailers is None
                h2.send_headers(sid, head, end_stream=end)
                stream.ended = end
            if stream.pending:
                if not self.write_paused:
                    self._send_pending(stream)
                elif not stream.stalled_since:
                    stream.stalled_since = _monotonic()  # the client reads nothing at all: timed out too
            if stream.ending and not stream.pending and not stream.ended and stream.head is None:
                if stream.trailers is not None:
                    h2.send_headers(sid, stream.trailers, end_stream=True)
                else:
                    h2.end_stream(sid)
                stream.ended = True
        except H2Error as e:
            # The stream closed under us (a reset crossing our frames) or a field h2 refuses.
            log.debug("HTTP/2 stream %d of %s: %s", sid, self.peer, e)
            stream.cancel()
            try:
                h2.reset_stream(sid, ErrorCodes.INTERNAL_ERROR)
            except H2Error:
                pass
            self._forget(stream)
            return
        if stream.ended:
            if not stream.remote_ended:
                # RFC 9113 8.1: the response is complete before the request; the
                # client may stop sending it, without error.
                h2.reset_stream(sid, ErrorCodes.NO_ERROR)
                stream.closed = True
            self._forget(stream)

    def _send_pending(self, stream: Http2Stream) -> None:
        h2 = self.h2
        sid = stream.stream_id
        pending = stream.pending
        window = h2.local_flow_control_window(sid)
        frame_max = h2.max_outbound_frame_size
        sent = 0
        while pending and window > 0:
            chunk = pending[0]
            n = len(chunk)
            if n > window or n > frame_max:
                n = window if window < frame_max else frame_max
                piece = chunk[:n]
                pending[0] = chunk[n:]
            else:
                piece = chunk
                pending.popleft()
            window -= n
            sent += n
            end = stream.ending and not pending and stream.trailers is None
            h2.send_data(sid, piece, end_stream=end)
            if end:
                stream.ended = True
        stream.pending_size -= sent
        if pending:
            # Waiting on the client's window: timed out by check_timeouts if it never opens.
            stream.stalled_since = _monotonic() if sent else (stream.stalled_since or _monotonic())
        else:
            stream.stalled_since = 0.0
        if sent:
            stream.pending_drained()

    def reset(self, stream: Http2Stream) -> None:
        """Cut one stream (its response cannot be finished): RST_STREAM, the connection stays."""
        if stream.closed:
            return
        stream.cancel(status=502, reason="reset")
        if not self.closed:
            try:
                self.h2.reset_stream(stream.stream_id, ErrorCodes.INTERNAL_ERROR)
            except H2Error:
                pass
            self._flush_soon()
        self._forget(stream)

    def _forget(self, stream: Http2Stream, popped: bool = False) -> None:
        if not popped:
            self.streams.pop(stream.stream_id, None)
        stream.detach()
        # Memos a stream made are the connection's from now on (see Http2Stream.__init__).
        if self.auth_memo is None:
            self.auth_memo = stream.auth_memo
        if self.addr_key is None:
            self.addr_key = stream.addr_key
        if stream.fwd_key is not None:
            self.fwd_key = stream.fwd_key
            self.fwd_block = stream.fwd_block
        if not self.streams:
            self.idle_since = _monotonic()
            if (self.goaway_sent or self.peer_goaway) and not self.closed:
                self._flush()
                self._close(ErrorCodes.NO_ERROR)

    # -- timeouts (the server's sweeper) -------------------------------------------------

    def check_timeouts(self, now: float) -> None:
        if self.closed:
            return
        if self.server.draining and not self.goaway_sent:
            self.close()
            if self.closed:
                return
        if not self.streams:
            lim = self.limits
            if now - self.idle_since > (lim.header_timeout if self.opened == 0 else lim.idle_timeout):
                self._close(ErrorCodes.NO_ERROR)
            return
        stall_limit = self.limits.idle_timeout
        for stream in list(self.streams.values()):
            ex = stream.exchange
            if ex is not None and not stream.closed:
                ex.check_timeouts(now)
            if stream.stalled_since and now - stream.stalled_since > stall_limit and not stream.closed:
                if self.h2.outbound_flow_control_window <= 0 or self.write_paused:
                    # Nothing can move on this connection: the client does not read.
                    log.info("closing HTTP/2 connection from %s: the client's window stayed shut", self.peer)
                    for s in list(self.streams.values()):
                        s.cancel(status=504, reason="timeout")
                    self.streams.clear()
                    self._close(ErrorCodes.NO_ERROR)
                    return
                stream.cancel(status=504, reason="timeout")
                try:
                    self.h2.reset_stream(stream.stream_id, ErrorCodes.CANCEL)
                except H2Error:
                    pass
                self._forget(stream)
                self._flush_soon()
