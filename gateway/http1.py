"""The HTTP/1.x protocol: one ``ClientProtocol`` per client connection.

It parses requests with httptools (llhttp), refuses what cannot be parsed
safely (limits on the request target and head, framing errors, versions
other than 1.0 and 1.1, upgrades other than WebSocket), and makes each request
an ``Exchange`` (gateway/exchange.py) that routes, applies policies, forwards
and answers it. Pipelined requests queue behind the one in progress and are
answered in order. The protocol owns the connection: flow control in both
directions, the head and idle timeouts (checked by the server's sweeper), the
upgraded stream after a 101, and the half-close.

Neighbours: gateway/server.py creates one per accepted connection and owns
listeners, the table reference and the sweeper; wire-format helpers are in
gateway/wire.py. A connection that turns out to speak HTTP/2 (ALPN h2 on the
TLS listener, the HTTP/2 preface on the plain one) is handed to
gateway/h2server.py, which feeds the same exchange.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import sys
import time
from collections import deque

import httptools

from gateway.exchange import Downstream, Exchange, new_exchange
from gateway.grpcstatus import grpc_http1_answer, grpc_message, grpc_status, grpc_timeout, is_grpc, message_of
from gateway.h2server import PREFACE, serve_http2
from gateway.normalize import valid_host
from gateway.tls import bound_server_name
from gateway import policies
from gateway.wire import (
    CONNECTION_OPTIONS, RESPONSE_LOOKED, RESPONSE_NOT_COPIED, add_field, answer_bytes, connection_tokens, header_value,
    last_chunk, switching_head, upstream_status_line, websocket_upgrade, whole_request,
)

log = logging.getLogger("crdgate.proxy")

# Interned method names: no decode per request for the common ones.
_METHODS = {m.encode(): m for m in ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT")}
# Lengths of the request header names looked at before routing:
# host, expect, connection, content-length, transfer-encoding (and, by their first
# letter, proxy-connection and grpc-timeout).
_SPECIAL_LENGTHS = frozenset((4, 6, 10, 14, 17))
# The answer to a request line of another major version (HTTP/2.0 or the HTTP/2
# preface, HTTP/3.0, HTTP/0.9): this listener speaks HTTP/1.x only.
VERSION_NOT_SUPPORTED = "only HTTP/1.0 and HTTP/1.1 are served on this listener"

_HTTPS = b"https"
_SCHEME_BYTES = {"http": b"http", "https": _HTTPS}

_monotonic = time.monotonic


class _Reject(Exception):
    """Raised inside parser callbacks to refuse a request (limits)."""

    def __init__(self, status: int, message: str):
        self.status = status
        self.message = message


class ClientProtocol(Downstream):
    """One client connection: parsing, pipelining, flow control, timeouts.

    An asyncio protocol by duck typing (the event loop only calls its methods):
    subclassing asyncio.Protocol would keep it from compiling to an extension type.
    """

    def __init__(self, server, scheme: str = "http"):  # server: gateway.server.Server
        self.server = server
        # What the server fixes before it accepts connections, read here once
        # instead of per request (an attribute of a Python object each time):
        # typed when compiled.
        self.upstreams = server.upstreams
        self.stats = server.stats
        self.access_log = server.access_log
        self.request_id_header = server.request_id_header
        self.create_traceparent = server.create_traceparent
        self.tracer = server.tracer
        self.limiter = server.limiter
        self.ratelimit_headers = server.ratelimit_headers
        # Per listener: what X-Forwarded-Proto says and what redirects compare against.
        self.scheme = scheme
        self.scheme_bytes = _SCHEME_BYTES.get(scheme) or scheme.encode()
        # TLS only: the SNI name when it chose a host-bound certificate; the Host must agree (421).
        self.sni: str | None = None
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.pipeline: deque[Exchange] = deque()
        self.current: Exchange | None = None  # being parsed
        self.closed = False
        self.peer = ""
        self.peer_bytes = b""
        self.forwarded_for = b""
        self.trusted = False
        self._paused: set[str] = set()
        self._url_size = 0
        self._header_bytes = 0
        self._head_deadline = 0.0
        self._idle_since = 0.0
        self._upgraded: Exchange | None = None
        self._writing_paused = False
        self._eof = False
        self._upgrade_refused = False
        self.last_host = b""  # the last Host value that passed valid_host on this connection
        self.last_host_str = ""
        self.auth_memo = None  # gateway.auth.base.AuthMemo, made by the first authenticated request
        self.addr_key = None  # the rate-limit key of the peer's address, made at first use
        self._headers: list = []
        lim = server.limits
        self._max_uri = lim.max_uri_bytes
        self._max_header_bytes = lim.max_header_bytes
        self._max_headers = lim.max_headers
        self._header_timeout = lim.header_timeout
        self.max_body_bytes = lim.max_body_bytes
        # The forwarding headers of the last Host seen on this connection (see
        # ClientConnection.forwarding): the same for every request of a keep-alive client.
        self.fwd_key: bytes | None = None
        self.fwd_block = b""
        self.framed = False  # HTTP/1 heads are bytes (see Downstream)
        self.draining = False  # the server is draining: each response closes the connection
        self.http_version = "HTTP/1.1"
        self._sniffing = False  # set by connection_made (plain listener, --h2c)
        self._sniffed = b""

    # -- connection ----------------------------------------------------------------

    def connection_made(self, transport) -> None:
        self.transport = transport
        peer = transport.get_extra_info("peername")
        # Interned: the connections of one client share the one str, so the access log finds
        # its "client" run unchanged by identity instead of comparing the text per request.
        ip = sys.intern(peer[0]) if peer else ""
        self.peer = ip
        self.peer_bytes = ip.encode()
        self.forwarded_for = b'"[%s]"' % self.peer_bytes if ":" in ip else self.peer_bytes
        srv = self.server
        if srv.trusted_proxies and ip:
            try:
                addr = ipaddress.ip_address(ip)
                self.trusted = any(addr in net for net in srv.trusted_proxies)
            except ValueError:
                self.trusted = False
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is not None:
            self.sni = bound_server_name(ssl_object)
            if ssl_object.selected_alpn_protocol() == "h2":
                serve_http2(self, b"")  # the client picked HTTP/2 in the handshake
                return
        else:
            # Plain listener with --h2c: the first bytes may be the HTTP/2 preface (see _sniff).
            self._sniffing = srv.config.h2c
        # Until its first request arrives a connection is due its head within the
        # header timeout, not the idle timeout: a client that connects and sends
        # nothing must not hold a slot for a minute. (On the TLS listener the
        # protocol is connected once the handshake is done, itself bounded by
        # the same timeout.)
        now = self._idle_since = _monotonic()
        self._head_deadline = now + self._header_timeout
        self.draining = srv.draining  # set by Server.drain on every connection it has
        srv.connections.add(self)

    def connection_lost(self, exc) -> None:
        self.closed = True
        self.server.connections.discard(self)
        for ex in list(self.pipeline):
            if not ex.finished:
                # The client went away: stop the upstream work it caused.
                ex.finished = True
                if ex.policy_task is not None:
                    ex.policy_task.cancel()
                if ex.resp_started or ex.sent_head:
                    ex.server.stats.record_route(ex.route, ex.method, 499, time.monotonic() - ex.start)
                ex.drop_upstream()
                if ex.trace is not None:
                    self.tracer.finish(ex, time.monotonic(), "client_closed")
        self.pipeline.clear()
        self.server.connection_closed(self)

    def data_received(self, data: bytes) -> None:
        if self._sniffing:
            data = self._sniff(data)
            if data is None:
                return
        if self._upgraded is not None:
            self._upgraded.upgrade_data(data)
            return
        if self.current is None and not self.pipeline and not self._paused:
            # The usual request, its head whole in one read and nothing after it: taken
            # apart here (wire.whole_request) instead of through llhttp's callbacks;
            # anything else, refusals included, goes to llhttp.
            head = whole_request(data, self._max_uri, self._max_header_bytes, self._max_headers,
                                 self.request_id_header)
            if head is not None and self._whole_request(head):
                return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as e:
            off = e.args[0] if e.args else len(data)
            ex = self.current
            if ex is not None and ex.upgrade:
                self.current = None
                if off < len(data):
                    ex.upgrade_data(data[off:])
            elif self._upgrade_refused:
                self.pause_reading("upgrade refused")  # what follows is not parsed: closing after the response
            else:
                self._refuse(400, "unexpected upgrade")
        except _Reject as e:
            self._refuse(e.status, e.message)
        except httptools.HttpParserCallbackError as e:
            cause = e.__context__
            if isinstance(cause, _Reject):
                self._refuse(cause.status, cause.message)
            else:
                log.exception("parser callback failed")
                self._refuse(500, "internal error")
        except httptools.HttpParserInvalidURLError:
            self._refuse(400, "invalid request target")
        except httptools.HttpParserError:
            # llhttp refuses most other versions itself ("Invalid HTTP version"), and the
            # HTTP/2 preface ("PRI * HTTP/2.0"); the version it read tells them apart
            # from malformed input ("0.0": no version read).
            version = self.parser.get_http_version()
            if version[0] != "1" and version != "0.0":
                self._refuse(505, VERSION_NOT_SUPPORTED)
            else:
                self._refuse(400, "malformed request")

    def _whole_request(self, head: tuple) -> bool:
        """A request head wire.whole_request read: what llhttp's callbacks would have done
        with it (on_message_begin to on_message_complete), in their order. False, and
        nothing done, for a Host that llhttp's path refuses."""
        method, url, headers, host, user_agent, connection, size, lines = head
        if host is not None and host != self.last_host:
            if not valid_host(host):
                return False
            self.last_host = host
            self.last_host_str = host.decode("latin-1")
        ex = new_exchange(self)
        ex.method = method
        ex.url = url
        ex.headers = headers
        if host is not None:
            ex.host = host
        ex.user_agent = user_agent
        ex.conn_value = connection
        ex.req_lines = lines
        ex.head_complete = True
        self._headers = headers
        self._url_size = len(url)
        self._header_bytes = size
        self._head_deadline = 0.0
        self.current = ex
        self.pipeline.append(ex)
        try:
            ex.begin()
            self.current = None
            ex.request_complete()
        except Exception:
            # As a callback's exception inside llhttp (data_received).
            log.exception("handling a request failed")
            self._refuse(500, "internal error")
        return True

    def _sniff(self, data: bytes):
        """The first bytes on the plain listener: HTTP/2 with prior knowledge opens with
        its preface (RFC 9113 3.3). Returns the bytes to parse as HTTP/1, or None
        (handed over to HTTP/2, or waiting for the rest of a preface)."""
        data = self._sniffed + data if self._sniffed else data
        if PREFACE.startswith(data[:24]):
            if len(data) < 24:
                self._sniffed = data
                return None
            self._sniffing = False
            self._sniffed = b""
            serve_http2(self, data)
            return None
        self._sniffing = False
        self._sniffed = b""
        return data

    def _refuse(self, status: int, message: str) -> None:
        """Refuse what cannot be parsed safely: answer if we can, then close."""
        self.server.stats.rejected(status)
        self.pause_reading("refused")  # nothing after a framing error can be trusted
        ex = self.current
        self.current = None
        head = self.pipeline[0] if self.pipeline else None
        if ex is None and head is None:
            ex = Exchange(self)
            self.pipeline.append(ex)
            head = ex
        elif ex is not None:
            self._method_read(ex)
        if ex is not head or ex.finished or ex.resp_started:
            # Answering in order would mean waiting on the request ahead: cut instead.
            self.abort()
            return
        ex.keep_alive = False
        ex.respond(status, message, extra=None, close=True)

    def _method_read(self, ex: Exchange) -> None:
        """A request answered before its head was complete (refused, timed out) is logged and
        counted with the method its request line gave, if the parser got that far: the
        target follows the method, so a target begun means the method was read (llhttp's
        method is meaningless before that). Otherwise it keeps "-", unknown."""
        if not ex.head_complete and self._url_size:
            method = self.parser.get_method()
            ex.method = _METHODS.get(method) or method.decode("ascii", "replace")

    def eof_received(self):
        # A half-close from the client: finish what is in flight, then close.
        self._eof = True
        return bool(self.pipeline)

    def pause_writing(self) -> None:
        self._writing_paused = True
        head = self.pipeline[0] if self.pipeline else None
        if head is not None and head.conn is not None and head.conn.transport is not None:
            head.conn.transport.pause_reading()

    def resume_writing(self) -> None:
        self._writing_paused = False
        head = self.pipeline[0] if self.pipeline else None
        if head is not None and head.conn is not None and head.conn.transport is not None:
            head.conn.transport.resume_reading()

    def pause_reading(self, why: str) -> None:
        if not self._paused and self.transport is not None and not self.closed:
            self.transport.pause_reading()
        self._paused.add(why)

    def resume_reading(self, why: str) -> None:
        if why in self._paused:
            self._paused.discard(why)
            if not self._paused and self.transport is not None and not self.closed:
                self.transport.resume_reading()

    def abort(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.abort()

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.close()

    # -- httptools callbacks ----------------------------------------------------------

    def on_message_begin(self) -> None:
        ex = new_exchange(self)
        self.current = ex
        self._headers = ex.headers
        pipeline = self.pipeline
        pipeline.append(ex)
        self._url_size = 0
        self._header_bytes = 0
        if self._head_deadline == 0.0:
            self._head_deadline = ex.start + self._header_timeout
        if len(pipeline) > 1:
            self.pause_reading("pipeline")

    def on_url(self, url: bytes) -> None:
        ex = self.current
        self._url_size += len(url)
        if self._url_size > self._max_uri:
            raise _Reject(414, "request target too long")
        ex.url = url if not ex.url else ex.url + url

    def on_header(self, name: bytes, value: bytes) -> None:
        size = self._header_bytes + len(name) + len(value) + 4
        self._header_bytes = size
        headers = self._headers
        headers.append((name, value))
        if size > self._max_header_bytes or len(headers) > self._max_headers:
            raise _Reject(431, "request trailer fields too large" if self.current.head_complete
                          else "request header fields too large")
        # Only a few names matter before routing; their lengths filter cheaply.
        n = len(name)
        if n in _SPECIAL_LENGTHS or (n == 16 and name[0] | 0x20 == 0x70) or (n == 12 and name[0] | 0x20 == 0x67):
            self._special_header(name.lower(), value)

    def _special_header(self, lname: bytes, value: bytes) -> None:
        ex = self.current
        if ex.head_complete:
            return  # a trailer field (after a chunked body): framing and routing were settled by the head
        if lname == b"host":
            if ex.host:
                raise _Reject(400, "more than one Host header")
            if value != self.last_host:  # a keep-alive client repeats its Host: checked once
                if not valid_host(value):
                    raise _Reject(400, "invalid Host header")
                self.last_host = value
                self.last_host_str = value.decode("latin-1")  # for routing: decoded once too
            ex.host = value
        elif lname == b"content-length":
            ex.content_length = int(value)  # llhttp has checked digits and duplicates
        elif lname == b"connection" or lname == b"proxy-connection":
            # llhttp reads Proxy-Connection as Connection (keep-alive, close, upgrade):
            # so do we, or a request it keeps alive would pass for HTTP/1.1 below.
            ex.conn_value = value if ex.conn_value is None else ex.conn_value + b"," + value
        elif lname == b"user-agent":
            ex.user_agent = value  # for the access log (same length as Connection: no extra test)
        elif lname == b"expect":
            if value.lower() == b"100-continue":
                ex.expect_continue = True
            else:
                raise _Reject(417, "unsupported expectation")
        elif lname == b"transfer-encoding":
            if value.strip().lower() == b"chunked" and not ex.chunked:
                ex.chunked = True
            else:
                ex.chunked = None  # anything but one "chunked": refuse (501)
        elif lname == b"grpc-timeout":
            ex.grpc_timeout = grpc_timeout(value) or 0.0  # kept for a gRPC request (on_headers_complete)

    def on_headers_complete(self) -> None:
        ex = self.current
        p = self.parser
        self._head_deadline = 0.0
        ex.head_complete = True
        method = p.get_method()
        # GET by comparison (a few bytes) before the lookup, which hashes the new bytes object.
        ex.method = "GET" if method == b"GET" else (_METHODS.get(method) or method.decode("ascii", "replace"))
        ex.keep_alive = p.should_keep_alive()
        # llhttp keeps a connection of any version but 1.1 alive only on "Connection:
        # keep-alive", so kept alive without a Connection header is 1.1: the version
        # string, formatted by httptools on every call (a tenth of this callback's
        # cost), is not needed. llhttp parses 0.9, 1.0, 1.1 and 2.0 request lines.
        if not ex.keep_alive or ex.conn_value is not None:
            version = p.get_http_version()
            if version == "1.0":
                ex.http10 = True
            elif version != "1.1":
                raise _Reject(505, VERSION_NOT_SUPPORTED)
        # llhttp flags an upgrade only for CONNECT or with "Connection: upgrade": without a
        # Connection header the parser need not be asked.
        if (ex.conn_value is not None or ex.method == "CONNECT") and p.should_upgrade():
            if ex.method == "GET" and websocket_upgrade(ex.headers):
                ex.upgrade = True
            else:
                # Only WebSocket is tunnelled. An h2c (or any other) upgrade passed
                # on would let the backend switch protocols and take requests on
                # that stream past routing and auth ("h2c smuggling"); it is served
                # as an ordinary request, Upgrade dropped as hop-by-hop. llhttp
                # parses nothing after an upgrade request (not even its body), so a
                # body is refused and the connection closes after the response.
                if ex.content_length > 0 or ex.chunked:
                    raise _Reject(400, "Upgrade on a request with a body")
                ex.keep_alive = False
                self._upgrade_refused = True
        if ex.grpc_timeout and not is_grpc(header_value(ex.headers, b"content-type")):
            ex.grpc_timeout = 0.0  # grpc-timeout is gRPC's: other requests keep the route's deadline
        if ex.chunked:
            # Fields parsed from now on are the request's trailers (llhttp reports the last
            # chunk's fields through on_header, with no on_headers_complete after them):
            # their own list, held to the same limits as a head.
            self._headers = []
            self._header_bytes = 0
        if self.pipeline[0] is ex:
            ex.begin()

    def on_body(self, body: bytes) -> None:
        self.current.request_body(body)

    def on_message_complete(self) -> None:
        ex = self.current
        if ex is None:
            return
        if not ex.upgrade:
            self.current = None
        if ex.chunked and self._headers:
            ex.request_trailers(self._headers)  # forwarded as an HTTP/2 client's are
        ex.request_complete()

    # -- pipeline -------------------------------------------------------------------------

    def exchange_done(self, ex: Exchange) -> None:
        if not self.pipeline or self.pipeline[0] is not ex:
            return
        self.pipeline.popleft()
        if ex.close_after or not ex.keep_alive:
            self.close()
            return
        self._idle_since = ex.ended or _monotonic()
        if self.pipeline:
            nxt = self.pipeline[0]
            if len(self.pipeline) == 1:
                self.resume_reading("pipeline")
            if nxt.head_complete:
                nxt.start = _monotonic()
                nxt.begin()  # may finish it at once, and then start the one after it
        else:
            self.resume_reading("pipeline")
            if self.draining or self._eof:
                self.close()

    def response_head(self, ex: Exchange, status: int, reason: bytes, headers: list) -> None:
        http1_response_head(ex, status, reason, headers)

    def answer(self, ex: Exchange, status: int, extra, body: bytes) -> None:
        unread_body = not ex.req_done and (ex.chunked or ex.content_length > 0)
        if unread_body or not ex.keep_alive or self.draining or ex.upgrade:
            # An unread request body would be taken for the next request: close.
            ex.close_after = True
        if is_grpc(header_value(ex.headers, b"content-type")):
            # gRPC over HTTP/1.1 (a gRPC-Web or bridging client): the same trailers-only form as over HTTP/2.
            text = body.decode("utf-8", "replace") if status < 400 else message_of(body)
            ex.resp_bytes = 0
            self.transport.write(grpc_http1_answer(status, text, extra, ex.extra_resp_headers, ex.close_after))
        else:
            self.transport.write(answer_bytes(status, body, extra, ex.extra_resp_headers, ex.close_after,
                                              ex.method == "HEAD"))

    def end_cut(self, ex: Exchange, status: int, message: str) -> bool:
        """A gRPC response that cannot be completed (past its deadline: ``status`` 504;
        the backend reset or closed it: 502) ends in its last chunk, with the
        ``grpc-status`` and ``grpc-message`` trailers an HTTP/2 client would get, when the
        client asked for trailers (``TE: trailers``) and the response is chunked. A cut
        connection reads to a gRPC client as INTERNAL, neither the timeout nor the
        retryable failure it is. Anything else is cut."""
        if not ex.resp_chunked or ex.finished or not is_grpc(header_value(ex.headers, b"content-type")):
            return False
        last = last_chunk(((b"grpc-status", b"%d" % grpc_status(status)), (b"grpc-message", grpc_message(message))),
                          ex.header_view.get("te"))
        if last is None:
            return False
        ex.resp_chunked = False
        if not ex.req_done:
            ex.close_after = True  # the rest of a streamed request body has no reader left
        out = ex.out
        if out is None:
            out = ex.out = []
        out.append(last)
        ex.flush()
        return True

    def upgraded(self, ex: Exchange, conn, reason: bytes, headers: list) -> None:
        self.transport.write(switching_head(reason, headers))
        self._upgraded = ex
        self.resume_reading("pipeline")
        for chunk in ex.body_buf:
            conn.transport.write(chunk)
        ex.body_buf = []

    def check_timeouts(self, now: float) -> None:
        if self.closed:
            return
        if self._head_deadline and now > self._head_deadline:
            # Slow or stalled request head (slowloris): 408 if nothing is in progress.
            head = self.pipeline[0] if self.pipeline else None
            if head is None:
                # Not one request byte since accept: closed without an answer, as
                # there is no request to answer (and a client that preconnected
                # may retry on a fresh connection).
                self.close()
                return
            if head is self.current and not head.head_complete:
                self.server.stats.rejected(408)
                self.current = None
                self._method_read(head)
                head.keep_alive = False
                head.respond(408, "request head timed out", extra=None, close=True)
                return
        if not self.pipeline:
            if self._upgraded is None and now - self._idle_since > self.server.limits.idle_timeout:
                self.close()
            return
        self.pipeline[0].check_timeouts(now)


def http1_response_head(ex: Exchange, status: int, reason: bytes, headers: list) -> None:
    """The upstream's response head in HTTP/1.1 framing, left in ``ex.out``: the fields
    copied less the hop-by-hop ones (and those its Connection names), CORS and the
    route's added fields, then the framing this client gets (length, chunked, or
    until close for HTTP/1.0) and Connection."""
    pol = ex.route.policy
    parts = [upstream_status_line(status, reason)]
    length = -1
    chunked = False
    drop = None
    special = RESPONSE_NOT_COPIED
    looked = RESPONSE_LOOKED
    conn = ex.conn
    whole = conn.whole if conn is not None else None
    if whole is not None and whole[2] is headers:
        # Read whole by wire.whole_response and unchanged since: its field lines as they came,
        # less the hop-by-hop ones, in one piece; its Content-Length is its body's length.
        parts.append(whole[4])
        length = len(whole[3])
    else:
        for name, value in headers:
            n = len(name)
            if n < 32 and looked[n]:
                lname = name.lower()
                if lname in special:
                    if lname == b"transfer-encoding":
                        chunked = True
                    elif (lname == b"connection" and value != b"keep-alive" and value != b"close"
                          and value.lower() not in CONNECTION_OPTIONS):
                        # The usual "keep-alive"/"close" lists no header: skip the split.
                        drop = connection_tokens(value, drop) - CONNECTION_OPTIONS
                    continue
                if lname == b"content-length":
                    if status == 204:
                        continue  # RFC 9110 8.6: never on a 204 (a client could wait for that body)
                    length = int(value)  # llhttp has validated it
            add_field(parts, name, value)
    if drop:
        # Names listed in Connection are hop-by-hop for this message: take them out again.
        kept = [parts[0]]
        for name, value in headers:
            lname = name.lower()
            if lname not in special and lname not in drop and not (status == 204 and lname == b"content-length"):
                add_field(kept, name, value)
        parts = kept
    if pol.cors is not None:
        policies.cors_response_headers(ex, pol.cors, parts)
    if ex.extra_resp_headers:
        for name, value in ex.extra_resp_headers:
            add_field(parts, name, value)
    if length >= 0 and not chunked:
        pass  # passed through as received
    elif ex.method == "HEAD" or status == 204 or status == 304:
        pass
    elif ex.http10:
        ex.resp_until_close = not chunked
        ex.close_after = True
    else:
        ex.resp_chunked = True
        ex.resp_until_close = not chunked
        parts.append(b"transfer-encoding: chunked\r\n")
    if ex.upgrade:
        ex.close_after = True  # the client may already be sending upgraded bytes
    if ex.close_after or not ex.keep_alive or ex.proto.draining:
        ex.close_after = True
        parts.append(b"connection: close\r\n\r\n")
    elif ex.http10:
        parts.append(b"connection: keep-alive\r\n\r\n")
    else:
        parts.append(b"\r\n")
    # Corked: the head leaves with the first body bytes of the same read (see
    # Exchange.flush), one write instead of two on the common small response.
    ex.out = parts
