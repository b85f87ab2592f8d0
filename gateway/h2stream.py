"""One HTTP/2 stream as the exchange sees its client: ``Http2Stream``, a ``Downstream``.

Each request stream of an HTTP/2 connection (gateway/h2server.py) becomes one
``Exchange`` (gateway/exchange.py), driven exactly as an HTTP/1.1 request is:
routing, policies, retries, timeouts, mirroring, metrics and the access log are
the exchange's. What differs is how the response leaves. The exchange sees
``framed`` set and hands this stream the response head as a status and header
pairs (``response_head``) and its own answers as status, fields and body
(``answer``) instead of writing HTTP/1.1 bytes; body bytes still go to
``transport.write``, which here is the stream's own ``write``; the end of the
response is ``exchange_done``; ``send_trailers`` ends it with trailers instead
(for an upstream that sends them). Nothing is framed here: the stream queues
the head, the body and the end, and the connection emits them as frames
through the h2 state machine as flow control allows (``emit``).

Flow control, per stream: response bytes wait in ``pending`` while the client's
window is closed; above ``PENDING_HIGH`` the upstream connection stops being
read, so a slow reader holds at most that much (and one upstream read) and
never stalls the other streams. Request bytes are acknowledged (the client's
window reopened) as they reach the exchange, except while the exchange has
paused reading (its buffer is full or the upstream is slow): then the client's
window for this stream stays closed.

gRPC: a request with ``content-type: application/grpc*`` that the gateway
answers itself (no route, auth, rate limit, upstream failure, timeout) gets
the gRPC form, trailers-only (gateway/grpcstatus.py).
"""

from __future__ import annotations

import time

from collections import deque

from gateway import policies
from gateway.exchange import Downstream, Exchange
from gateway.grpcstatus import (
    ANSWER_SKIPPED, grpc_message, grpc_status, grpc_timeout, is_grpc, message_of,
)
from gateway.wire import CONNECTION_OPTIONS, RESPONSE_NOT_COPIED, connection_tokens

_monotonic = time.monotonic

# Response bytes a stream holds for a slow reader before the upstream stops being read.
PENDING_HIGH = 256 * 1024
PENDING_LOW = 64 * 1024

_STATUS = {s: b"%d" % s for s in range(100, 600)}


class Http2Stream(Downstream):
    """One request stream: the client side of one exchange (see the module docstring)."""

    def __init__(self, conn, stream_id: int):  # conn: gateway.h2server.Http2Protocol
        self.conn = conn
        self.stream_id = stream_id
        # What the exchange and policies read of their client: the connection's, copied once.
        self.server = conn.server
        self.upstreams = conn.upstreams
        self.stats = conn.stats
        self.access_log = conn.access_log
        self.request_id_header = conn.request_id_header
        self.create_traceparent = conn.create_traceparent
        self.tracer = conn.tracer
        self.limiter = conn.limiter
        self.ratelimit_headers = conn.ratelimit_headers
        self.scheme = conn.scheme
        self.scheme_bytes = conn.scheme_bytes
        self.sni = conn.sni
        self.peer = conn.peer
        self.peer_bytes = conn.peer_bytes
        self.forwarded_for = conn.forwarded_for
        self.trusted = conn.trusted
        self.max_body_bytes = conn.max_body_bytes
        self.auth_memo = conn.auth_memo  # one memo object shared by the connection's streams
        self.addr_key = conn.addr_key
        self.fwd_key = conn.fwd_key
        self.fwd_block = conn.fwd_block
        self.last_host = b""
        self.last_host_str = ""
        self.framed = True
        self.http_version = "HTTP/2.0"
        self.transport = self  # the exchange writes response body bytes here (``write``)
        self.closed = False
        self.exchange: Exchange | None = None
        self.grpc = False
        self.expectation_failed = False  # an Expect other than 100-continue
        # request side
        self.remote_ended = False  # the client sent END_STREAM
        self.unacked = 0  # request bytes received but not yet acknowledged to the client
        self._paused: set[str] = set()
        # response side, emitted by the connection (``emit``)
        self.interim: list | None = None  # a 100 Continue head, emitted before ``head``
        self.head: list | None = None
        self.pending: deque = deque()
        self.pending_size = 0
        self.ending = False  # the response is complete: END_STREAM once ``pending`` is out
        self.trailers: list | None = None
        self.ended = False  # END_STREAM sent (or the stream reset)
        self.queued = False  # on the connection's list of streams to emit
        self.stalled_since = 0.0  # response bytes waiting on a closed window since then
        self.paused_upstream = None  # the upstream transport paused for this stream's backlog

    # -- the exchange's calls ----------------------------------------------------------

    def response_head(self, ex: Exchange, status: int, reason: bytes, headers: list) -> None:
        """The upstream's response head: kept for the stream, HTTP/1.1's connection fields left out."""
        drop = None
        for name, value in headers:
            if len(name) == 10 and name.lower() == b"connection" and value.lower() not in CONNECTION_OPTIONS:
                drop = connection_tokens(value, drop) - CONNECTION_OPTIONS
        fields = [(b":status", _STATUS.get(status) or b"%d" % status)]
        framing = False  # Content-Length or Transfer-Encoding: the body ends without the connection closing
        for field in headers:
            name, value = field
            # Names from an HTTP/2 upstream are lower-case already: the field goes on
            # as it came (the HPACK encoder's memo then finds the same tuple again).
            if name.islower():
                lname = name
            else:
                lname = name.lower()
                field = (lname, value)
            if lname == b"transfer-encoding":
                framing = True
            if lname in RESPONSE_NOT_COPIED or (drop and lname in drop):
                continue
            if lname == b"content-length":
                framing = True
                if status == 204:
                    continue
            fields.append(field)
        if not framing and ex.method != "HEAD" and status != 204 and status != 304:
            ex.resp_until_close = True  # an HTTP/1.1 body delimited by the upstream closing
        pol = ex.route.policy
        if pol.cors is not None:
            fields += policies.cors_fields(ex, pol.cors)
        if ex.extra_resp_headers:
            for name, value in ex.extra_resp_headers:
                fields.append((name.lower(), value))
        self.head = fields
        self.conn.schedule(self)

    def answer(self, ex: Exchange, status: int, extra, body: bytes) -> None:
        """An answer the gateway makes itself; trailers-only gRPC for a gRPC request."""
        if self.grpc:
            fields = [(b":status", b"200"), (b"content-type", b"application/grpc")]
            self._add_answer_fields(fields, extra, ex.extra_resp_headers)
            message = body.decode("utf-8", "replace") if status < 400 else message_of(body)
            fields.append((b"grpc-status", b"%d" % grpc_status(status)))
            fields.append((b"grpc-message", grpc_message(message)))
            self.head = fields
            self.ending = True
            self.conn.schedule(self)
            return
        fields = [(b":status", _STATUS.get(status) or b"%d" % status)]
        if body:
            fields.append((b"content-type", b"application/json"))
        self._add_answer_fields(fields, extra, ex.extra_resp_headers)
        fields.append((b"content-length", b"%d" % len(body)))
        self.head = fields
        if body and ex.method != "HEAD":
            self.write(body)
        self.ending = True
        self.conn.schedule(self)

    def informational(self, ex: Exchange, status: int) -> None:
        """``Expect: 100-continue`` honoured: an interim HEADERS frame, the final response to follow."""
        if not self.closed and not self.ended and self.head is None:
            self.interim = [(b":status", _STATUS[status])]
            self.conn.schedule(self)

    @staticmethod
    def _add_answer_fields(fields: list, extra, extra_resp) -> None:
        for group in (extra, extra_resp):
            if group:
                for name, value in group:
                    lname = name.lower()
                    if lname not in ANSWER_SKIPPED:
                        fields.append((lname, value))

    def end_cut(self, ex: Exchange, status: int, message: str) -> bool:
        """A gRPC response that cannot be completed ends with trailers after what the
        upstream sent so far: ``grpc-status: 4`` past its deadline (504), 14 UNAVAILABLE
        when the backend reset or closed it (502). A gRPC client reads a reset as
        INTERNAL or CANCELLED, neither the timeout nor the retryable failure it is.
        Any other stream is reset."""
        if not self.grpc or self.closed or self.ended:
            return False
        self.trailers = [(b"grpc-status", b"%d" % grpc_status(status)), (b"grpc-message", grpc_message(message))]
        return True

    def write(self, data: bytes) -> None:
        """Response body bytes from the exchange: queued until the client's window has room."""
        if self.closed or self.ended or not data:
            return
        self.pending.append(data)
        self.pending_size += len(data)
        if self.pending_size > PENDING_HIGH and self.paused_upstream is None:
            ex = self.exchange
            up = ex.conn if ex is not None else None
            if up is not None and up.transport is not None:
                # The client reads slower than the upstream sends: stop reading the upstream.
                up.transport.pause_reading()
                self.paused_upstream = up.transport
        self.conn.schedule(self)

    def send_trailers(self, fields: list) -> None:
        """Trailers of the response (lower-case names): sent with END_STREAM after the body."""
        self.trailers = [(name.lower(), value) for name, value in fields]

    def exchange_done(self, ex: Exchange) -> None:
        if self.ending or self.closed:
            return
        self.ending = True
        # The upstream connection is done with this response (pooled, or closed):
        # it must not stay paused for this stream's backlog.
        self._resume_upstream()
        self.conn.schedule(self)

    def pause_reading(self, why: str) -> None:
        self._paused.add(why)

    def resume_reading(self, why: str) -> None:
        if why in self._paused:
            self._paused.discard(why)
            if not self._paused and self.unacked:
                self.conn.acknowledge(self)

    @property
    def reading_paused(self) -> bool:
        return bool(self._paused)

    def abort(self) -> None:
        """The exchange cannot finish the response it started: reset this stream, not the connection."""
        self.conn.reset(self)

    def close(self) -> None:
        self.exchange_done(self.exchange)

    def upgraded(self, ex: Exchange, conn, reason: bytes, headers: list) -> None:
        raise RuntimeError("HTTP/2 streams are never upgraded")  # the stream never sets ex.upgrade

    # -- the connection's calls --------------------------------------------------------

    def request(self, headers: list, ended: bool) -> Exchange:
        """The exchange for a request head (pseudo-header fields as h2 validated them)."""
        ex = self.exchange = Exchange(self)
        ex.http10 = False
        ex.keep_alive = True
        own = ex.headers
        cookies = None
        authority = None
        expect = None
        timeout = None
        for name, value in headers:
            if name[0] == 58:  # b":"
                if name == b":method":
                    ex.method = value.decode("ascii", "replace")
                elif name == b":path":
                    ex.url = value
                elif name == b":authority":
                    authority = value
                continue
            if name == b"cookie":
                # RFC 9113 8.2.3: cookie crumbs are joined again for an HTTP/1.1 hop.
                cookies = value if cookies is None else cookies + b"; " + value
                continue
            own.append((name, value))
            if name == b"host":
                if authority is None and not ex.host:
                    ex.host = value
            elif name == b"content-length":
                ex.content_length = int(value)  # h2 has checked it is a number, and checks the body against it
            elif name == b"user-agent":
                ex.user_agent = value
            elif name == b"content-type":
                self.grpc = is_grpc(value)
            elif name == b"expect":
                expect = value
            elif name == b"grpc-timeout":
                timeout = value
        if timeout is not None and self.grpc:
            ex.grpc_timeout = grpc_timeout(timeout) or 0.0  # a malformed value is no deadline
        if cookies is not None:
            own.append((b"cookie", cookies))
        if authority is not None:
            ex.host = authority  # RFC 9113 8.3.1: :authority over Host
        if expect is not None:
            # As over HTTP/1.1: 100-continue is answered by the gateway (Exchange.forward),
            # any other expectation is refused (``expectation_failed``, 417).
            if expect.lower() == b"100-continue":
                ex.expect_continue = not ended
            else:
                self.expectation_failed = True
        if ended:
            self.remote_ended = True
            if ex.content_length < 0 and ex.method in ("POST", "PUT", "PATCH"):
                ex.content_length = 0
        elif ex.content_length < 0:
            ex.chunked = True  # a body of unknown length: chunked on the HTTP/1.1 hop
        ex.head_complete = True
        return ex

    def cancel(self, status: int = 499, reason: str = "client_closed") -> None:
        """The client reset the stream, or the connection is gone: stop the work it caused."""
        self.closed = True
        self.ended = True
        self.pending.clear()
        self.pending_size = 0
        self._resume_upstream()
        ex = self.exchange
        if ex is not None and not ex.finished:
            ex.finished = True
            if ex.policy_task is not None:
                ex.policy_task.cancel()
            if ex.resp_started or ex.sent_head:
                self.stats.record_route(ex.route, ex.method, status, _monotonic() - ex.start)
            ex.drop_upstream()
            if ex.trace is not None:
                self.tracer.finish(ex, _monotonic(), reason)

    def detach(self) -> None:
        """The connection is done with this stream (ended or reset): nothing more goes out.

        Its exchange and ``transport`` (the stream itself) are let go: stream and
        exchange point at each other, and as a cycle every call's objects would
        wait for the garbage collector instead of being freed as the call ends.
        """
        self.closed = True
        self.transport = None
        self.exchange = None

    def pending_drained(self) -> None:
        """The connection sent some of ``pending``: read the upstream again when it is low."""
        if self.paused_upstream is not None and self.pending_size <= PENDING_LOW:
            self._resume_upstream()

    def _resume_upstream(self) -> None:
        t = self.paused_upstream
        if t is not None:
            self.paused_upstream = None
            if not t.is_closing():
                t.resume_reading()
