"""The proxy's HTTP/1.1 protocol: parse, match, apply policies, forward, stream back.

One ``ClientProtocol`` per client connection parses requests with httptools;
each request is an ``Exchange`` that reads the routing table once
(``server.table``), so a table swap never changes a request already routed.
Pipelined requests queue behind the one in progress and are answered in order.
Everything on the common path runs in protocol callbacks: no task, no
coroutine, unless a policy needs I/O (a JWKS fetch, a Redis round trip) or a new
upstream connection must be opened.

Neighbours: gateway/server.py owns listeners, the table reference and the
timeout sweeper; gateway/upstream.py owns upstream connections; policies come
from gateway/auth.py, gateway/ratelimit.py and gateway/policies.py.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import random
import time
from collections import deque
from typing import TYPE_CHECKING

import httptools

from gateway import policies
from gateway.normalize import BadTarget, normalize_target, valid_host
from gateway.routing import ENDPOINTS_NOT_FOUND, normalize_host
from gateway.syntax import unsafe_field_value, unsafe_target
from gateway.tls import bound_server_name
from gateway.upstream import EndpointPool, Handler, UpstreamConnection

if TYPE_CHECKING:
    from gateway.server import Server

log = logging.getLogger("crdgate.proxy")

# RFC 9110 7.6.1: connection-specific fields, never forwarded.
HOP_BY_HOP = frozenset(
    (b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer", b"transfer-encoding", b"upgrade",
     b"proxy-authorization", b"proxy-authenticate")
)
# Set by us; when the peer is not a trusted proxy, its own values are dropped.
FORWARDING = frozenset((b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"x-forwarded-port",
                        b"forwarded", b"x-real-ip"))
IDEMPOTENT = frozenset(("GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"))
# Interned method names: no decode per request for the common ones.
_METHODS = {m.encode(): m for m in ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT")}
# Lengths of the request header names looked at before routing:
# host, expect, connection, content-length, transfer-encoding.
_SPECIAL_LENGTHS = frozenset((4, 6, 10, 14, 17))
# Request headers never copied as they are: hop-by-hop ones, those we set
# ourselves, and the framing we re-create.
_REQ_SPECIAL = HOP_BY_HOP | FORWARDING | {b"host", b"content-length", b"expect"}
# Response headers never copied as they are.
_RESP_SPECIAL = HOP_BY_HOP | {b"connection"}
# By name length: whether a response header can be one of those or Content-Length.
# Most are not (Date, Server, Content-Type...): copied without lower-casing the name.
_RESP_LOOKED = tuple(n in {len(h) for h in _RESP_SPECIAL | {b"content-length"}} for n in range(32))
_STATUS_LINES: dict[int, tuple[bytes, bytes]] = {}
KNOWN_METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT"))

REASONS = {
    200: "OK", 204: "No Content", 301: "Moved Permanently", 302: "Found", 303: "See Other",
    307: "Temporary Redirect", 308: "Permanent Redirect", 400: "Bad Request", 401: "Unauthorized",
    403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed", 408: "Request Timeout", 417: "Expectation Failed",
    413: "Content Too Large", 414: "URI Too Long", 421: "Misdirected Request", 429: "Too Many Requests",
    431: "Request Header Fields Too Large", 500: "Internal Server Error", 501: "Not Implemented",
    502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout", 505: "HTTP Version Not Supported",
}
# The answer to a request line of another major version (HTTP/2.0 or the HTTP/2
# preface, HTTP/3.0, HTTP/0.9): this listener speaks HTTP/1.x only.
VERSION_NOT_SUPPORTED = "only HTTP/1.0 and HTTP/1.1 are served on this listener"

# Normalised request targets by raw target: clients repeat the same few, and
# normalising is pure. Bounded: cleared when full.
TARGETS_MEMO_LIMIT = 4096
_TARGETS: dict[bytes, tuple] = {}

# Request body bytes kept so an idempotent request can be sent again on retry.
REPLAY_LIMIT = 64 * 1024
# Request body buffered while no upstream is attached before reading pauses.
BUFFER_HIGH = 256 * 1024


def json_body(status: int, message: str) -> bytes:
    # Messages are ours, never echoes of request input, so no escaping is needed
    # beyond quotes; keep it that way.
    reason = REASONS.get(status, "Error")
    return ('{"status":%d,"error":"%s","message":"%s"}\n' % (status, reason, message.replace('"', "'"))).encode()


def status_line(status: int, reason: bytes | None = None) -> bytes:
    if reason is None:
        reason = REASONS.get(status, "Status").encode()
    return b"HTTP/1.1 %d %s\r\n" % (status, reason)


class _Reject(Exception):
    """Raised inside parser callbacks to refuse a request (limits)."""

    def __init__(self, status: int, message: str):
        self.status = status
        self.message = message


class HeaderView:
    """Lower-case str view of the request headers, decoded only on lookup."""

    __slots__ = ("_headers", "_cache")

    def __init__(self, headers: list[tuple[bytes, bytes]]):
        self._headers = headers
        self._cache: dict[str, str] | None = None

    def _build(self) -> dict[str, str]:
        d: dict[str, str] = {}
        for name, value in self._headers:
            k = name.decode("latin-1").lower()
            v = value.decode("latin-1")
            d[k] = d[k] + ", " + v if k in d else v
        self._cache = d
        return d

    def get(self, name: str, default=None):
        d = self._cache if self._cache is not None else self._build()
        return d.get(name, default)

    def __getitem__(self, name: str) -> str:
        d = self._cache if self._cache is not None else self._build()
        return d[name]

    def __contains__(self, name: object) -> bool:
        d = self._cache if self._cache is not None else self._build()
        return name in d

    def items(self):
        d = self._cache if self._cache is not None else self._build()
        return d.items()


class Exchange(Handler):
    """One request and its response, from parsed head to last byte.

    Compiled, it is a C struct (gateway/http.pxd types every field), so this
    initialisation is a run of plain stores.
    """

    def __init__(self, proto: "ClientProtocol"):
        self.proto = proto
        self.server = proto.server
        self.start = _monotonic()
        # request, as parsed
        self.method = "GET"
        self.url = b""
        self.http10 = False
        self.keep_alive = True
        self.upgrade = False
        self.content_length = -1
        self.chunked = False
        self.expect_continue = False
        self.host = b""
        self.conn_value = None
        self.head_complete = False
        self.req_done = False
        self.req_bytes = 0
        # routing: the table read once at the head, the route it matched
        self.table = None
        self.route = None
        self.path = ""
        self.query = ""
        self.header_view = None
        self.consumer = None
        self.auth_headers = ()
        self.extra_resp_headers = None
        self.upstream_host = None
        # request body toward the upstream: buffered until a connection is attached;
        # ``replay`` keeps up to REPLAY_LIMIT bytes so a retry can resend it
        self.body_buf_size = 0
        self.sent_head = False
        self.up_paused = False
        # upstream tries
        self.conn = None
        self.pool = None
        self.attempts = 0
        self.tried = ()
        self.backend_key = ""
        self.peers = 1
        self.deadline = 0.0
        self.try_deadline = 0.0
        self.upstream_start = 0.0
        self.upstream_time = 0.0
        self.connecting = False
        self.upstream_ep = None
        self.up_keep_alive = True
        # response toward the client; ``out`` holds bytes until flush()
        self.resp_started = False
        self.status = 0
        self.resp_chunked = False
        self.resp_until_close = False
        self.resp_bytes = 0
        self.finished = False
        self.close_after = False
        self.request_id = None
        self.policy_task = None
        self.out = None
        self.headers = []
        self.body_buf = []
        self.replay = []

    @property
    def upstream_addr(self) -> str | None:
        """host:port of the endpoint tried last (access log), formatted only when asked."""
        ep = self.upstream_ep
        return ep.address if ep is not None else None

    # ------------------------------------------------------------------ request

    def route_name(self) -> str:
        return self.route.name if self.route is not None else "-"

    def begin(self) -> None:
        """Headers are complete and this exchange is at the head of the pipeline."""
        srv = self.server
        if self.chunked is None:
            return self.respond(501, "unsupported transfer-coding", close=True)
        target = _TARGETS.get(self.url)
        if target is None:
            try:
                target = normalize_target(self.url)
            except BadTarget as e:
                return self.respond(e.status, e.reason, close=True)
            if len(_TARGETS) >= TARGETS_MEMO_LIMIT:
                _TARGETS.clear()  # distinct targets from a scan: start over, never grow
            _TARGETS[self.url] = target
        path, query, authority = target
        if path == "*":
            return self.respond(400, "asterisk-form is not routed", close=True)
        if authority is not None:
            # Absolute form: its authority replaces Host (RFC 9112 3.2.2), so it is held to the
            # same grammar; userinfo ("user@host") is refused as RFC 9110 4.2.4 asks.
            if not valid_host(authority):
                return self.respond(400, "invalid authority in request target", close=True)
            self.host = authority
        elif not self.host and not self.http10:
            return self.respond(400, "missing Host header", close=True)
        self.path, self.query = path, query
        proto = self.proto
        host = proto._host_str if self.host == proto._host_ok else self.host.decode("latin-1")
        sni = proto.sni
        if sni is not None and host and normalize_host(host) != sni:
            # The certificate was chosen for another name: this host is not served on this connection.
            return self.respond(421, "Host does not match the TLS server name")
        table = self.table = srv.table
        if table is None:
            return self.respond(503, "no routing table yet")
        self.header_view = hv = HeaderView(self.headers)
        res = table.match(self.method, host, path, hv, query)
        route = res.route
        if self.method == "OPTIONS":  # maybe a CORS preflight: routed as the request it announces
            route = policies.preflight_route(table, route, host, path, hv, query)
        if route is None:
            if res.status == 405:
                allow = ", ".join(res.allow).encode()
                return self.respond(405, "method not allowed", extra=[(b"allow", allow)])
            return self.respond(404, "no route")
        self.route = route
        pol = route.policy
        timeouts = pol.timeouts
        if timeouts.request:
            self.deadline = self.start + timeouts.request
        limit = pol.max_body_bytes if pol.max_body_bytes is not None else proto.max_body_bytes
        if self.content_length > limit:
            return self.respond(413, "request body too large", close=True)
        if route.plain:
            self.forward()
        else:
            self.run_policies(0)

    # Policies run in this order; each may answer the request itself.
    # 0 https/redirect/cors-preflight/body limit, 1 auth, 2 rate limit, then forward.
    def run_policies(self, step: int) -> None:
        route = self.route
        pol = route.policy
        if step <= 0 and pol.answers_early:
            answer = policies.early_answer(self, pol)
            if answer is not None:
                status, message, extra, body = answer
                return self.respond(status, message, extra=extra, body=body)
        if step <= 1 and pol.auth is not None:
            result = policies.authenticate(self, pol.auth)
            if hasattr(result, "__await__"):
                return self._await_policy(result, 1)
            if not policies.apply_auth(self, pol.auth, result):
                return
        if step <= 2 and pol.rate_limit is not None and self.proto.limiter is not None:
            admitted = policies.rate_limit(self, pol.rate_limit)
            if admitted is not True:
                if admitted is not False:  # a future of the Decision (Global, through Redis)
                    self._await_policy(admitted, 2)
                return
        self.forward()

    def _await_policy(self, awaitable, step: int) -> None:
        """A policy needs I/O: carry on from ``step`` once it has answered.

        A future (a Global rate-limit check) gets a callback; anything else
        (a JWKS fetch) runs in a task. Reading pauses meanwhile, so pipelined
        requests wait their turn.
        """
        self.proto.pause_reading("policy")
        if isinstance(awaitable, asyncio.Future):
            self.policy_task = awaitable
            awaitable.add_done_callback(self._auth_answered if step == 1 else self._rate_limit_answered)
            return

        async def wait():
            try:
                outcome = await awaitable
            except asyncio.CancelledError:  # the exchange ended meanwhile
                self._policy_over()
                raise
            except Exception as exc:
                self._policy_answered(step, None, exc)
                return
            self._policy_answered(step, outcome, None)

        self.policy_task = asyncio.ensure_future(wait())

    def _auth_answered(self, fut) -> None:
        self._future_answered(1, fut)

    def _rate_limit_answered(self, fut) -> None:
        self._future_answered(2, fut)

    def _future_answered(self, step: int, fut) -> None:
        if fut.cancelled():  # the exchange ended meanwhile (respond, or the client left)
            self._policy_over()
            return
        exc = fut.exception()
        self._policy_answered(step, None if exc is not None else fut.result(), exc)

    def _policy_over(self) -> None:
        self.policy_task = None
        self.proto.resume_reading("policy")

    def _policy_answered(self, step: int, outcome, exc) -> None:
        self._policy_over()
        if exc is not None:
            log.error("policy failed on route %s", self.route_name(), exc_info=exc)
            if not self.finished:
                self.respond(500, "policy error")
            return
        if self.finished or self.proto.closed:
            return
        if step == 1:
            if not policies.apply_auth(self, self.route.policy.auth, outcome):
                return
            self.run_policies(2)
        else:
            if not policies.apply_rate_limit(self, self.route.policy.rate_limit, outcome):
                return
            self.run_policies(3)

    def request_body(self, data: bytes) -> None:
        self.req_bytes += len(data)
        route = self.route
        if route is not None:
            limit = route.policy.max_body_bytes
            if limit is None:
                limit = self.proto.max_body_bytes
            if self.req_bytes > limit:
                if not self.resp_started:
                    self.drop_upstream()
                    self.respond(413, "request body too large", close=True)
                else:
                    self.proto.abort()
                return
        if self.finished:
            return  # answered already; the rest of the body is discarded
        if self.replay is not None:
            if self.req_bytes <= REPLAY_LIMIT:
                self.replay.append(data)
            else:
                self.replay = None
        if self.sent_head and self.conn is not None:
            self._write_body(data)
        else:
            self.body_buf.append(data)
            self.body_buf_size += len(data)
            if self.body_buf_size > BUFFER_HIGH:
                self.proto.pause_reading("buffer")

    def request_complete(self) -> None:
        self.req_done = True
        if self.finished:
            self.proto.exchange_done(self)
            return
        if self.sent_head and self.conn is not None and self.chunked:
            self.conn.transport.write(b"0\r\n\r\n")

    def _write_body(self, data: bytes) -> None:
        t = self.conn.transport
        if self.chunked:
            t.write(b"%x\r\n%b\r\n" % (len(data), data))
        else:
            t.write(data)

    def upgrade_data(self, data: bytes) -> None:
        """Bytes after an Upgrade request: raw stream for the upstream."""
        if self.conn is not None and self.conn.upgraded:
            self.conn.transport.write(data)
        else:
            self.body_buf.append(data)
            self.body_buf_size += len(data)
            if self.body_buf_size > BUFFER_HIGH:
                self.proto.pause_reading("buffer")

    # ------------------------------------------------------------------ forward

    def forward(self) -> None:
        if self.expect_continue and not self.req_done:
            # We answer 100 ourselves once the request has passed every policy,
            # and do not forward Expect: the upstream sees an ordinary request.
            self.proto.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            self.expect_continue = False
        self.attempt(first=True)

    def attempt(self, first: bool = False) -> None:
        table, route = self.table, self.route
        backends = route.backends
        if not backends:
            return self.respond(500, "route has no backend")
        if len(backends) == 1:
            ref = backends[0]
        else:
            ref = _weighted(backends)
            if ref is None:
                return self.respond(503, "all backends have weight 0")
        eset = table.endpoints.get(ref.key)
        if eset is None or eset.state == ENDPOINTS_NOT_FOUND:
            return self.respond(500, "backend not found")
        pool = self.proto.upstreams.pick(eset, route.policy.load_balancer, self.tried)
        if pool is None:
            return self.respond(503, "no ready endpoints")
        self.attempts += 1
        self.pool = pool
        self.upstream_ep = pool.endpoint
        self.backend_key = eset.key
        self.peers = len(eset.endpoints)
        self.upstream_host = eset.host_header.encode() if eset.host_header else None
        pool.active += 1
        now = _monotonic()
        self.upstream_start = now
        bt = route.policy.timeouts.backend_request
        self.try_deadline = now + bt if bt else 0.0
        conn = pool.take_idle()
        if conn is not None:
            self._send(conn)
        else:
            self.connecting = True
            asyncio.ensure_future(self._connect(pool))

    async def _connect(self, pool: EndpointPool) -> None:
        try:
            conn = await pool.connect(self.route.policy.timeouts.connect)
        except asyncio.CancelledError:
            raise
        except (OSError, asyncio.TimeoutError) as e:
            self.connecting = False
            if self.finished or self.pool is not pool:
                return
            self._try_failed("connect", repr(e))
            return
        self.connecting = False
        if self.finished or self.pool is not pool or self.proto.closed:
            pool.release(conn)
            return
        conn.reused = False
        self._send(conn)

    def _send(self, conn: UpstreamConnection) -> None:
        self.conn = conn
        head = self._upstream_head()
        if head is None:  # the route's configuration would inject bytes: nothing was written
            self._release_try(close=False)
            return self.respond(502, "the route's configuration makes an invalid upstream request")
        conn.send(self, head, self.method == "HEAD", self.upgrade)
        self.sent_head = True
        if self.upgrade:
            return  # buffered bytes go after the 101
        # Retries replay the body from ``replay``; the first try drains the buffer.
        if self.attempts > 1 and self.replay is not None:
            chunks = self.replay
        else:
            chunks = self.body_buf
        for chunk in chunks:
            self._write_body(chunk)
        self.body_buf = []
        if self.body_buf_size > BUFFER_HIGH:
            self.proto.resume_reading("buffer")
        self.body_buf_size = 0
        if self.req_done and self.chunked:
            conn.transport.write(b"0\r\n\r\n")

    def _upstream_head(self) -> bytes | None:
        """The request head for the upstream; None (logged) if the route's configuration
        would put a space, CR, LF or other control byte into it (gateway/syntax.py: the
        compiler refuses such values; this is the last line of defence)."""
        route = self.route
        pol = route.policy
        path = self.path
        host = self.host
        if pol.rewrite is not None:
            path, new_host = policies.rewrite(route, pol.rewrite, path)
            if new_host:
                host = new_host.encode()
        elif self.upstream_host is not None:
            host = self.upstream_host
        target = path.encode() if not self.query else (path + "?" + self.query).encode()
        if pol.rewrite is not None and (unsafe_target(target) or unsafe_field_value(host)):
            _refused(route, "rewritten request line or Host", target + b" " + host)
            return None
        if pol.request_headers is not None and policies.unsafe_modifier(pol.request_headers):
            _refused(route, "request header modifier", b"")
            return None
        parts = [self.method.encode(), b" ", target, b" HTTP/1.1\r\nhost: ", host, b"\r\n"]
        headers = self.headers
        # The client's Connection options name its own hop-by-hop fields: they
        # never remove a field the gateway adds (consumer, claims, modifiers).
        drop = _connection_tokens(self.conn_value, None) - _NOT_LISTED if self.conn_value is not None else None
        strip = None
        if not route.plain:
            if pol.request_headers is not None:
                headers = policies.modify_request_headers(self, pol, headers, drop)
                drop = None
            elif pol.auth is not None:
                # The credentials and any client-sent consumer or claim header go in
                # the loop below; what authentication established is added after it.
                strip = pol.auth.strip_headers
        special = _REQ_SPECIAL
        forwarded = None
        rid = None
        rid_name = self.proto.request_id_header
        for name, value in headers:
            lname = name.lower()
            if strip is not None and lname in strip:
                continue
            if lname in special:
                if lname in FORWARDING and self.proto.trusted:
                    if forwarded is None:
                        forwarded = {}
                    forwarded[lname] = forwarded[lname] + b", " + value if lname in forwarded else value
                continue
            if drop and lname in drop:
                continue
            if lname == rid_name:
                rid = value
            _add_field(parts, name, value)
        if strip is not None:
            for name, value in self.auth_headers:
                _add_field(parts, name, value)
        parts.append(self._forwarding(forwarded))
        if self.proto.create_traceparent and not _has_header(headers, b"traceparent"):
            # W3C Trace Context: start a trace for requests that arrive without one
            # (ones that carry it are forwarded untouched, like any end-to-end header).
            parts.append(b"traceparent: 00-%032x-%016x-01\r\n" % (random.getrandbits(128) or 1, random.getrandbits(64) or 1))
        if rid is None:
            rid = next_request_id()
            _add_field(parts, rid_name, rid)
        self.request_id = rid
        if self.upgrade:
            parts.append(b"connection: upgrade\r\nupgrade: ")
            parts.append(self.header_view.get("upgrade", "").encode("latin-1"))
            parts.append(b"\r\n\r\n")
        elif self.chunked:
            parts.append(b"transfer-encoding: chunked\r\n\r\n")
        elif self.content_length >= 0:
            parts.append(b"content-length: %d\r\n\r\n" % self.content_length)
        else:
            parts.append(b"\r\n")
        return b"".join(parts)

    def _forwarding(self, incoming: dict | None) -> bytes:
        """X-Forwarded-For/-Proto/-Host and Forwarded for this hop.

        From an untrusted peer the incoming values were dropped and the block
        depends only on the connection and the Host, so it is cached on the
        connection. From a trusted proxy the incoming chain is extended.
        """
        proto = self.proto
        host = self.host
        if incoming is None and proto.fwd_key == host:
            return proto.fwd_block
        peer = proto.peer_bytes
        scheme = proto.scheme_bytes
        this_hop = b'for=%s;host="%s";proto=%s' % (proto.forwarded_for, host.replace(b'"', b""), scheme)
        if incoming is None:
            block = b"x-forwarded-for: %s\r\nx-forwarded-proto: %s\r\nx-forwarded-host: %s\r\nforwarded: %s\r\n" % (
                peer, scheme, host, this_hop)
            proto.fwd_key = host
            proto.fwd_block = block
            return block
        xff = incoming.get(b"x-forwarded-for")
        fwd = incoming.get(b"forwarded")
        out = b"x-forwarded-for: %s\r\nx-forwarded-proto: %s\r\nx-forwarded-host: %s\r\nforwarded: %s\r\n" % (
            peer if xff is None else xff + b", " + peer,
            incoming.get(b"x-forwarded-proto") or scheme,
            incoming.get(b"x-forwarded-host") or host,
            this_hop if fwd is None else fwd + b", " + this_hop,
        )
        port = incoming.get(b"x-forwarded-port")
        if port is not None:
            out += b"x-forwarded-port: %s\r\n" % port
        return out

    # ------------------------------------------------------------------ upstream events

    def upstream_head(self, conn, status: int, reason: bytes, headers: list, keep_alive: bool) -> None:
        route = self.route
        pol = route.policy
        if status >= 500:
            retries = pol.retries
            if status in retries.status_codes and self.attempts < retries.attempts and self._may_retry():
                self.pool.failed(self.backend_key, self.peers)
                self.server.stats.retry(route.name)
                self._release_try(close=True)
                self._schedule_retry()
                return
            if status in (502, 503, 504):
                self.pool.failed(self.backend_key, self.peers)
            else:
                self.pool.succeeded()
        elif self.pool.failures:
            self.pool.succeeded()
        self.upstream_time = _monotonic() - self.upstream_start
        self.up_keep_alive = keep_alive
        if pol.response_headers is not None and policies.unsafe_modifier(pol.response_headers):
            _refused(route, "response header modifier", b"")
            self._release_try(close=True)  # the rest of this response is never read
            return self.respond(502, "the route's configuration makes an invalid response header")
        self.status = status
        self.resp_started = True
        if status == 101 and self.upgrade:
            return self._switch_protocols(conn, reason, headers)
        if pol.response_headers is not None:
            headers = policies.modify_headers(pol.response_headers, headers)
        # By status, with the reason it was made for: no tuple to build and hash per response.
        known = _STATUS_LINES.get(status)
        if known is not None and known[0] == reason:
            line = known[1]
        else:
            line = status_line(status, reason or None)
            if len(_STATUS_LINES) < 512:
                _STATUS_LINES[status] = (reason, line)
        parts = [line]
        length = -1
        chunked = False
        drop = None
        special = _RESP_SPECIAL
        looked = _RESP_LOOKED
        for name, value in headers:
            n = len(name)
            if n < 32 and looked[n]:
                lname = name.lower()
                if lname in special:
                    if lname == b"transfer-encoding":
                        chunked = True
                    elif lname == b"connection" and value.lower() not in _NOT_LISTED:
                        # The usual "keep-alive"/"close" lists no header: skip the split.
                        drop = _connection_tokens(value, drop) - _NOT_LISTED
                    continue
                if lname == b"content-length":
                    if status == 204:
                        continue  # RFC 9110 8.6: never on a 204 (a client could wait for that body)
                    length = int(value)  # llhttp has validated it
            _add_field(parts, name, value)
        if drop:
            # Names listed in Connection are hop-by-hop for this message: take them out again.
            kept = [parts[0]]
            for name, value in headers:
                lname = name.lower()
                if lname not in special and lname not in drop and not (status == 204 and lname == b"content-length"):
                    _add_field(kept, name, value)
            parts = kept
        if pol.cors is not None:
            policies.cors_response_headers(self, pol.cors, parts)
        if self.extra_resp_headers:
            for name, value in self.extra_resp_headers:
                _add_field(parts, name, value)
        if length >= 0 and not chunked:
            pass  # passed through as received
        elif self.method == "HEAD" or status == 204 or status == 304:
            pass
        elif self.http10:
            self.resp_until_close = not chunked
            self.close_after = True
        else:
            self.resp_chunked = True
            self.resp_until_close = not chunked
            parts.append(b"transfer-encoding: chunked\r\n")
        if self.upgrade:
            self.close_after = True  # the client may already be sending upgraded bytes
        if self.close_after or not self.keep_alive or self.server.draining:
            self.close_after = True
            parts.append(b"connection: close\r\n\r\n")
        elif self.http10:
            parts.append(b"connection: keep-alive\r\n\r\n")
        else:
            parts.append(b"\r\n")
        # Corked: the head leaves with the first body bytes of the same read (see
        # flush), one write instead of two on the common small response.
        self.out = parts

    def _switch_protocols(self, conn, reason: bytes, headers: list) -> None:
        conn.upgraded = True
        parts = [status_line(101, reason or None)]
        for name, value in headers:
            _add_field(parts, name, value)
        parts.append(b"\r\n")
        self.proto.transport.write(b"".join(parts))
        self.proto.upgraded(self)
        for chunk in self.body_buf:
            conn.transport.write(chunk)
        self.body_buf = []

    def upstream_body(self, data: bytes) -> None:
        if self.finished:
            return
        self.resp_bytes += len(data)
        out = self.out
        if out is None:
            if self.conn is not None and self.conn.upgraded:
                self.proto.transport.write(data)
                return
            out = self.out = []
        if self.resp_chunked:
            out.append(b"%x\r\n%b\r\n" % (len(data), data))
        else:
            out.append(data)

    def flush(self) -> None:
        """End of one upstream read: write what it produced in one call."""
        out = self.out
        if out is not None:
            self.out = None
            if not self.proto.closed:
                self.proto.transport.write(b"".join(out))

    def upstream_done(self, conn) -> None:
        if self.finished:
            conn.close()
            return
        reusable = self.req_done and not conn.upgraded and self.up_keep_alive
        self._release_try(close=not reusable)
        if self.resp_chunked:
            if self.out is None:
                self.out = []
            self.out.append(b"0\r\n\r\n")
        self.flush()
        self.finish()

    def upstream_closed(self, conn) -> None:
        if self.finished:
            return
        if conn.upgraded:
            self._release_try(close=True)
            self.finish()
            self.proto.close()
            return
        if self.resp_started and self.resp_until_close:
            self.upstream_done(conn)
            return
        self.upstream_failed(conn, "reset")

    def upstream_failed(self, conn, reason: str) -> None:
        if self.finished:
            return
        stale = conn.reused and not conn.got_bytes
        if not stale:
            self.pool.failed(self.backend_key, self.peers)
        self._try_failed(reason, "", stale=stale)

    def upstream_pause(self) -> None:
        self.up_paused = True
        self.proto.pause_reading("upstream")

    def upstream_resume(self) -> None:
        self.up_paused = False
        self.proto.resume_reading("upstream")

    # ------------------------------------------------------------------ failures, retries

    def _may_retry(self) -> bool:
        retries = self.route.policy.retries
        if self.method not in IDEMPOTENT and not retries.non_idempotent:
            return False
        if self.upgrade or self.resp_started:
            return False
        # A body we no longer hold cannot be sent again.
        return self.replay is not None and self.req_done

    def _try_failed(self, reason: str, detail: str, stale: bool = False) -> None:
        route = self.route
        self.server.stats.upstream_error(route.name, reason)
        self._release_try(close=True)
        if self.resp_started:
            # Part of the response is with the client already: all we can do is cut.
            self.finished = True
            self.proto.abort()
            return
        retries = route.policy.retries
        if stale and (self.method in IDEMPOTENT or self.req_bytes == 0) and self.replay is not None:
            # A pooled connection the upstream closed while idle: the request never
            # reached it, so resending on a fresh connection is safe.
            self.attempts -= 1
            self.attempt()
            return
        if (
            self.attempts < retries.attempts
            and (reason != "connect" or retries.on_connect_failure)
            and self._may_retry()
        ):
            self.server.stats.retry(route.name)
            self._schedule_retry()
            return
        if reason == "timeout":
            self.respond(504, "upstream timed out")
        else:
            self.respond(502, "upstream " + ("unreachable" if reason == "connect" else "failed"))

    def _schedule_retry(self) -> None:
        backoff = self.route.policy.retries.backoff * (2 ** (self.attempts - 1))
        # Jitter keeps retries from many clients off the same beat.
        delay = backoff * (0.5 + random.random())
        asyncio.get_running_loop().call_later(delay, self._retry)

    def _retry(self) -> None:
        if self.finished or self.proto.closed:
            return
        self.attempt()

    def _release_try(self, close: bool) -> None:
        pool, conn = self.pool, self.conn
        if conn is not None:
            self.conn = None
            conn.handler = None
            if close:
                conn.close()
            else:
                pool.release(conn)
        if pool is not None:
            pool.active -= 1
            if pool not in self.tried:
                self.tried = self.tried + (pool,)
            self.pool = None
        self.sent_head = False
        self.try_deadline = 0.0
        if self.up_paused:
            self.up_paused = False
            self.proto.resume_reading("upstream")

    def drop_upstream(self) -> None:
        if self.pool is not None or self.conn is not None:
            self._release_try(close=True)

    def check_timeouts(self, now: float) -> None:
        if self.finished or not self.head_complete:
            return
        if self.conn is not None and self.conn.upgraded:
            return  # upgraded streams live until either side closes
        expired = (self.deadline and now > self.deadline) or (self.try_deadline and now > self.try_deadline)
        if not expired:
            return
        if self.resp_started:
            # Part of the response is out: all we can do is cut the connection.
            self.server.stats.upstream_error(self.route_name(), "timeout")
            self._release_try(close=True)
            self.finished = True
            self.proto.abort()
        elif self.pool is not None:
            self._try_failed("timeout", "")
        else:
            # Waiting on a policy or a retry backoff past the request's deadline.
            self.respond(504, "request timed out")

    # ------------------------------------------------------------------ answering

    def respond(self, status: int, message: str, extra=None, close: bool = False, body: bytes | None = None) -> None:
        """Answer from the gateway itself (errors, redirects, preflights)."""
        if self.finished or self.resp_started:
            return
        if extra and _unsafe_fields(extra):
            # A Location (or another field) built from configuration would split the response.
            _refused(self.route, "response header", b"; ".join([v for _, v in extra]))
            status, message, extra, body = 500, "the route's configuration makes an invalid response header", None, None
        self.drop_upstream()
        if self.policy_task is not None and not self.policy_task.done():
            self.policy_task.cancel()
        self.status = status
        self.resp_started = True
        if body is None:
            body = json_body(status, message) if status >= 400 else b""
        parts = [status_line(status)]
        if body:
            parts.append(b"content-type: application/json\r\n")
        if extra:
            for name, value in extra:
                _add_field(parts, name, value)
        if self.extra_resp_headers:
            for name, value in self.extra_resp_headers:
                _add_field(parts, name, value)
        parts.append(b"content-length: %d\r\n" % len(body))
        unread_body = not self.req_done and (self.chunked or self.content_length > 0)
        if close or unread_body or not self.keep_alive or self.server.draining or self.upgrade:
            # An unread request body would be taken for the next request: close.
            self.close_after = True
            parts.append(b"connection: close\r\n")
        parts.append(b"\r\n")
        if self.method != "HEAD":
            parts.append(body)
        self.proto.transport.write(b"".join(parts))
        self.resp_bytes = len(body)
        self.finish()

    def finish(self) -> None:
        if self.finished:
            return
        self.finished = True
        proto = self.proto
        now = _monotonic()
        proto.stats.record(self.route_name(), self.method, self.status, now - self.start)
        route = self.route
        if route is not None and not route.plain and route.policy.mirror is not None and self.status < 500:
            policies.mirror(self)
        if proto.access_log is not None:
            proto.access_log.write(self, now)
        if self.req_done or self.close_after:
            self.proto.exchange_done(self)
        # else: the rest of the request body is read and discarded; request_complete
        # then calls exchange_done.


_monotonic = time.monotonic

# Request ids: a random per-process prefix and 12 hex digits of a counter.
# Unique (each worker process imports this afresh), and no system call per
# request (os.urandom is one). The last 3 digits come from a table and the rest
# are formatted once per 4,096 ids (b"%012x" on every request cost as much as
# building the rest of the upstream head). Compiled, the counter and the high
# part are C variables (http.pxd): rebinding a Python module global per request
# would void the compiled module's cached lookups of every global.
_RID_PREFIX = os.urandom(6).hex().encode()
_RID_LOW = tuple(b"%03x" % i for i in range(4096))
_rid_count = 0
_rid_high = _RID_PREFIX + b"%09x" % 0


def next_request_id() -> bytes:
    global _rid_count, _rid_high
    _rid_count += 1
    n = _rid_count
    low = n & 0xFFF
    if low == 0:
        _rid_high = _RID_PREFIX + b"%09x" % (n >> 12)
    return _rid_high + _RID_LOW[low]


def _add_field(parts: list, name: bytes, value: bytes) -> None:
    """One header line into a head being built. Compiled, four appends are a few
    stores each; ``parts += (name, b": ", value, b"\r\n")`` built a tuple and
    went through the generic in-place add for every header."""
    parts.append(name)
    parts.append(b": ")
    parts.append(value)
    parts.append(b"\r\n")


def _unsafe_fields(fields) -> bool:
    """Whether a value of these (name, value) pairs holds CR, LF or NUL."""
    for _, value in fields:
        if unsafe_field_value(value):
            return True
    return False


def _refused(route, what: str, value: bytes) -> None:
    """Log a head the gateway refused to write (%r: the bytes are never logged raw either)."""
    log.error(
        "route %s: refused to write a %s holding a space, CR, LF or control byte: %r",
        route.name if route is not None else "-", what, value[:200],
    )


def _websocket_upgrade(headers) -> bool:
    """Whether the Upgrade header offers WebSocket, the one protocol this proxy tunnels."""
    for name, value in headers:
        if len(name) == 7 and name.lower() == b"upgrade":
            for token in value.split(b","):
                if token.strip().lower() == b"websocket":
                    return True
    return False


def _has_header(headers, lname: bytes) -> bool:
    for name, _ in headers:
        if name.lower() == lname:
            return True
    return False


def _weighted(backends):
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


_NOT_LISTED = frozenset((b"keep-alive", b"close", b"upgrade"))


def _connection_tokens(value: bytes, into: set | None) -> set:
    out = into if into is not None else set()
    for tok in value.split(b","):
        tok = tok.strip().lower()
        if tok:
            out.add(tok)
    return out


_HTTPS = b"https"
_SCHEME_BYTES = {"http": b"http", "https": _HTTPS}


class ClientProtocol:
    """One client connection: parsing, pipelining, flow control, timeouts.

    An asyncio protocol by duck typing (the event loop only calls its methods):
    subclassing asyncio.Protocol would keep it from compiling to an extension type.
    """


    def __init__(self, server: "Server", scheme: str = "http"):
        self.server = server
        # What the server fixes before it accepts connections, read here once
        # instead of per request (an attribute of a Python object each time):
        # typed when compiled.
        self.upstreams = server.upstreams
        self.stats = server.stats
        self.access_log = server.access_log
        self.request_id_header = server.request_id_header
        self.create_traceparent = server.create_traceparent
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
        self._host_ok = b""  # the last Host value that passed valid_host on this connection
        self._host_str = ""
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
        # Exchange._forwarding): the same for every request of a keep-alive client.
        self.fwd_key: bytes | None = None
        self.fwd_block = b""

    # -- connection ----------------------------------------------------------------

    def connection_made(self, transport) -> None:
        self.transport = transport
        peer = transport.get_extra_info("peername")
        ip = peer[0] if peer else ""
        self.peer = ip
        self.peer_bytes = ip.encode()
        self.forwarded_for = b'"[%s]"' % self.peer_bytes if ":" in ip else self.peer_bytes
        srv = self.server
        if self.scheme_bytes is _HTTPS:
            self.sni = bound_server_name(transport.get_extra_info("ssl_object"))
        if srv.trusted_proxies and ip:
            try:
                addr = ipaddress.ip_address(ip)
                self.trusted = any(addr in net for net in srv.trusted_proxies)
            except ValueError:
                self.trusted = False
        # Until its first request arrives a connection is due its head within the
        # header timeout, not the idle timeout: a client that connects and sends
        # nothing must not hold a slot for a minute. (On the TLS listener the
        # protocol is connected once the handshake is done, itself bounded by
        # the same timeout.)
        now = self._idle_since = _monotonic()
        self._head_deadline = now + self._header_timeout
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
                    ex.server.stats.record(ex.route_name(), ex.method, 499, time.monotonic() - ex.start)
                ex.drop_upstream()
        self.pipeline.clear()
        self.server.connection_closed(self)

    def data_received(self, data: bytes) -> None:
        if self._upgraded is not None:
            self._upgraded.upgrade_data(data)
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
        if ex is not head or ex.finished or ex.resp_started:
            # Answering in order would mean waiting on the request ahead: cut instead.
            self.abort()
            return
        ex.keep_alive = False
        ex.respond(status, message, close=True)

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
        ex = Exchange(self)
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
            raise _Reject(431, "request header fields too large")
        # Only a few names matter before routing; their lengths filter cheaply.
        n = len(name)
        if n in _SPECIAL_LENGTHS or (n == 16 and name[0] | 0x20 == 0x70):  # or Proxy-Connection, by its "p"
            self._special_header(name.lower(), value)

    def _special_header(self, lname: bytes, value: bytes) -> None:
        ex = self.current
        if lname == b"host":
            if ex.host:
                raise _Reject(400, "more than one Host header")
            if value != self._host_ok:  # a keep-alive client repeats its Host: checked once
                if not valid_host(value):
                    raise _Reject(400, "invalid Host header")
                self._host_ok = value
                self._host_str = value.decode("latin-1")  # for routing: decoded once too
            ex.host = value
        elif lname == b"content-length":
            ex.content_length = int(value)  # llhttp has checked digits and duplicates
        elif lname == b"connection" or lname == b"proxy-connection":
            # llhttp reads Proxy-Connection as Connection (keep-alive, close, upgrade):
            # so do we, or a request it keeps alive would pass for HTTP/1.1 below.
            ex.conn_value = value if ex.conn_value is None else ex.conn_value + b"," + value
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

    def on_headers_complete(self) -> None:
        ex = self.current
        p = self.parser
        self._head_deadline = 0.0
        ex.head_complete = True
        method = p.get_method()
        ex.method = _METHODS.get(method) or method.decode("ascii", "replace")
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
            if ex.method == "GET" and _websocket_upgrade(ex.headers):
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
        ex.request_complete()

    # -- pipeline -------------------------------------------------------------------------

    def exchange_done(self, ex: Exchange) -> None:
        if not self.pipeline or self.pipeline[0] is not ex:
            return
        self.pipeline.popleft()
        if ex.close_after or not ex.keep_alive:
            self.close()
            return
        self._idle_since = _monotonic()
        if self.pipeline:
            nxt = self.pipeline[0]
            if len(self.pipeline) == 1:
                self.resume_reading("pipeline")
            if nxt.head_complete:
                nxt.start = _monotonic()
                nxt.begin()
                if nxt.req_done and nxt.finished:
                    pass
        else:
            self.resume_reading("pipeline")
            if self.server.draining or self._eof:
                self.close()

    def upgraded(self, ex: Exchange) -> None:
        self._upgraded = ex
        self.resume_reading("pipeline")

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
                head.keep_alive = False
                head.respond(408, "request head timed out", close=True)
                return
        if not self.pipeline:
            if self._upgraded is None and now - self._idle_since > self.server.limits.idle_timeout:
                self.close()
            return
        self.pipeline[0].check_timeouts(now)
