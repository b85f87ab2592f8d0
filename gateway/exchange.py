"""One request and its response: ``Exchange``, from parsed head to last byte.

An exchange reads the routing table once (``server.table``), so a table swap
never changes a request already routed; runs the route's policies
(gateway/policies.py) in order, each of which may answer; forwards the request
to an upstream endpoint (gateway/upstream.py calls it back as its ``Handler``),
retrying where the route allows; and streams the response back. Everything on
the common path runs in protocol callbacks: no task, no coroutine, unless a
policy needs I/O (a JWKS fetch, a Redis round trip) or a new upstream
connection must be opened.

It is driven by a ``Downstream``, the client side as an exchange sees it (an HTTP/1
connection, gateway/http1.py, or an HTTP/2 stream, gateway/h2stream.py); policies see
it only as a ``RequestView`` (gateway/request.py); heads are built with gateway/wire.py.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time

from gateway import policies
from gateway.normalize import BadTarget, valid_host
from gateway.request import ClientConnection, RequestView, header_view
from gateway.routing import ENDPOINTS_NOT_FOUND, Route, RouteTable, normalize_host
from gateway.syntax import unsafe_field_value, unsafe_target
from gateway.targets import TARGETS_MEMO_LIMIT, RoutedTarget, normalized, remember, routed
from gateway.upstream import EndpointPool, UpstreamConnection, pick_weighted
from gateway.wire import (
    CONNECTION_OPTIONS, IDEMPOTENT, REQUEST_NOT_COPIED, REQUEST_NOT_COPIED_TRACED, add_field,
    connection_tokens, copy_request_fields, has_header, header_value, json_body, last_chunk,
    new_traceparent, next_request_id, refused_head, trailer_chunk, unsafe_fields,
)

log = logging.getLogger("crdgate.proxy")

# The start of the upstream request line by method: no encode per request.
_METHOD_SP = {m: m.encode() + b" " for m in ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS")}
# Host values of URL backends (EndpointSet.host_header), encoded once; bounded as targets' memo.
_HOST_HEADERS: dict[str, bytes] = {}

# Why a response under way was cut, by its failed try's reason (as counted in metrics), for a gRPC client.
_CUT_MESSAGES = {"reset": "the backend reset or closed the stream", "protocol": "the backend broke the protocol"}
# Request body bytes kept so an idempotent request can be sent again on retry.
REPLAY_LIMIT = 64 * 1024
# Request body buffered while no upstream is attached before reading pauses.
BUFFER_HIGH = 256 * 1024


class Downstream(ClientConnection):
    """The client connection as an exchange drives it ("downstream": Envoy's word).

    Beyond what policies read, an exchange writes to ``transport``, pauses and
    resumes reading (with a reason: reading resumes when none is left), and
    hands over when done (``exchange_done``). Each frames the response head its
    own way (``response_head``); HTTP/1 (gateway/http1.py) takes the gateway's own
    answers as bytes, a ``framed`` one (an HTTP/2 stream, gateway/h2stream.py) as
    fields (``answer``), body bytes through ``transport.write``, and ``exchange_done``
    on every finish. Fields, set once per connection by the protocol that extends it:

    - server, transport, closed; upstreams, stats, access_log (the server's);
    - max_body_bytes, request_id_header, create_traceparent (the server's settings);
    - tracer: the server's gateway.tracing.Tracer, or None when tracing is off;
    - sni: the TLS server name that chose the certificate (the peer as the forwarding
      headers write it is ClientConnection's);
    - last_host, last_host_str: the last Host value that passed ``valid_host``, and
      decoded (a keep-alive client repeats it); draining: set by Server.drain (HTTP/1).
    """

    def pause_reading(self, why: str) -> None:
        raise NotImplementedError

    def resume_reading(self, why: str) -> None:
        raise NotImplementedError

    def abort(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def exchange_done(self, ex: "Exchange") -> None:
        raise NotImplementedError

    def upgraded(self, ex: "Exchange", conn, reason: bytes, headers: list) -> None:
        """The upstream ``conn`` switched protocols (101, ``reason``, ``headers``): the
        connection's bytes now go to ``ex``, and the body bytes held go to ``conn``."""
        raise NotImplementedError

    def response_head(self, ex: "Exchange", status: int, reason: bytes, headers: list) -> None:
        """The upstream's response head, after the route's header rules, in the protocol's framing."""
        raise NotImplementedError

    def answer(self, ex: "Exchange", status: int, extra, body: bytes) -> None:
        """An answer the gateway makes itself (see ``Exchange.respond``), in the protocol's framing."""
        raise NotImplementedError

    def informational(self, ex: "Exchange", status: int) -> None:
        """Framed only: an interim response (100 Continue) before the final one."""
        raise NotImplementedError

    def end_cut(self, ex: "Exchange", status: int, message: str) -> bool:
        """The response is under way and cannot be completed: its deadline passed
        (``status`` 504) or the backend reset, closed or broke it (502). End it in the
        protocol's own words if it has some (gRPC's trailers: the grpc-status the
        gateway's own answer with ``status`` would carry, and ``message``) and say
        True; False, and the exchange cuts it (``abort``)."""
        return False


class Exchange(RequestView):
    """One request and its response, from parsed head to last byte.

    Compiled, it is a C struct (gateway/exchange.pxd types every field), so this
    initialisation is a run of plain stores.
    """

    def __init__(self, proto: Downstream):
        self._setup(proto)

    def _setup(self, proto: Downstream) -> None:
        # The body of __init__, as a method: ``new_exchange`` calls it on a bare
        # instance (compiled, a C call; calling the class is a Python call with
        # an argument tuple, then __init__'s argument parsing).
        self.proto = proto
        self._init_view(proto, proto.server)
        self.start = _monotonic()
        # request, as parsed
        self.url = b""
        self.http10 = False
        self.keep_alive = True
        self.upgrade = False
        self.content_length = -1
        self.chunked = False
        self.expect_continue = False
        self.conn_value = None
        self.req_lines = None  # the field lines to copy as they came (wire.whole_request), or None
        self.upstream_target = b""  # path and query as routed, encoded (set by begin)
        self.ended = 0.0  # finished (and its request read): the connection is idle from then
        self.head_complete = False
        self.req_bytes = 0
        self.upstream_host = None
        # request body toward the upstream: buffered until a connection is attached;
        # ``replay`` keeps up to REPLAY_LIMIT bytes so a retry can resend it
        self.body_buf_size = 0
        self.req_last_chunk = None  # the request's last chunk when it carries trailers (request_trailers)
        self.sent_head = self.up_paused = False
        # upstream tries
        self.conn = None
        self.pool = None
        self.attempts = 0
        self.tried = ()
        self.backend_key = ""
        self.backend = None  # the BackendRef of the current try (its own header filters)
        self.peers = 1
        self.deadline = self.try_deadline = self.upstream_start = self.upstream_time = 0.0
        self.grpc_timeout = 0.0  # a gRPC request's grpc-timeout in seconds, set by the protocol
        self.connecting, self.upstream_ep = False, None
        self.up_keep_alive = True
        # response toward the client; ``out`` holds bytes until flush()
        self.resp_started = self.resp_chunked = self.resp_until_close = self.finished = self.close_after = False
        self.status = self.resp_bytes = 0
        self.request_id = None
        self.request_id_made = False  # made by next_request_id: known clean, the access log need not check it
        self.user_agent = None  # the User-Agent as received (access log)
        self.policy_task = None
        self.out = None
        self.body_buf = []
        self.trace = None  # gateway.tracing.RequestTrace, only when this request is sampled

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
        tracer = self.proto.tracer
        if tracer is not None:
            # Sampling first, and only that: an unsampled request records nothing more. Without a
            # traceparent the ratio alone decides, here in C (a call into the tracer cost ~3,600
            # instructions a request); with one, the tracer parses it (parent-based).
            if has_header(self.headers, b"traceparent"):
                self.trace = tracer.sample(self.headers)
            elif _random() < tracer.ratio:
                self.trace = tracer.new_trace()
        if self.chunked is None:
            return self.respond(501, "unsupported transfer-coding", close=True)
        proto = self.proto
        table = self.table = self.server.table
        hit = None
        if table is not None:  # a target, method and Host this table routed before? (gateway/targets.py)
            host = proto.last_host_str if self.host == proto.last_host else self.host.decode("latin-1")
            hit = routed(table, self.url, self.method, host)
        if hit is None:
            route = self.route_target(table)
            if route is None:
                return  # answered
        else:
            self.path, self.query, self.upstream_target = hit.path, hit.query, hit.upstream_target
            self.header_view = header_view(self.headers)
            route = hit.route
            if proto.sni is not None and normalize_host(host) != proto.sni:
                return self.respond(421, "Host does not match the TLS server name")
        self.route = route
        pol = route.policy
        timeouts = pol.timeouts
        if timeouts.request:
            self.deadline = self.start + timeouts.request
        if self.grpc_timeout:
            # A gRPC client's own deadline, capped by the route's: the earlier one wins.
            deadline = self.start + self.grpc_timeout
            if not self.deadline or deadline < self.deadline:
                self.deadline = deadline
        limit = pol.max_body_bytes if pol.max_body_bytes is not None else proto.max_body_bytes
        if self.content_length > limit:
            return self.respond(413, "request body too large", close=True)
        if route.plain:
            self.forward()
        else:
            self.run_policies(0)

    def route_target(self, table: RouteTable | None) -> Route | None:
        """Normalise the request target, check Host and find the route: the Route, or
        None once the request is answered (400, 404, 405, 421, 503). A plain answer
        (no header or query condition, origin form, a Host) is kept in the table's
        ``request_memo`` for the next request with the same target, method and Host."""
        try:
            path, query, authority, self.upstream_target = normalized(self.url, self.server.targets_memo_limit)
        except BadTarget as e:
            return self.respond(e.status, e.reason, close=True)
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
        host = proto.last_host_str if self.host == proto.last_host else self.host.decode("latin-1")
        if proto.sni is not None and host and normalize_host(host) != proto.sni:
            # The certificate was chosen for another name: this host is not served on this connection.
            return self.respond(421, "Host does not match the TLS server name")
        if table is None:
            return self.respond(503, "no routing table yet")
        self.header_view = hv = header_view(self.headers)
        res, cacheable = table.lookup(self.method, host, path, hv, query)
        route = res.route
        if self.method == "OPTIONS":  # maybe a CORS preflight: routed as the request it announces
            route = policies.preflight_route(table, route, host, path, hv, query)
        elif route is not None and cacheable and authority is None and host:
            remember(table, self.url, RoutedTarget(self.method, host, path, query, self.upstream_target, route),
                     self.server.targets_memo_limit)
        if route is None and res.status == 405:
            return self.respond(405, "method not allowed", extra=[(b"allow", ", ".join(res.allow).encode())])
        if route is None:
            return self.respond(404, "no route")
        return route

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

    def request_trailers(self, fields: list) -> None:
        """Trailer fields after the request body (an HTTP/2 client's HEADERS frame, an
        HTTP/1.1 client's last chunk), before request_complete.

        They ride in the last chunk when the body goes chunked to the upstream (an
        HTTP/2 upstream stream sends them as a trailing HEADERS frame); a body sent
        with a Content-Length has no place for them: dropped. Fields no sender may
        put in trailers, and the credentials and identity fields the route's
        authentication strips from the head, are left out.
        """
        if self.finished or not self.chunked:
            return
        route = self.route
        auth = route.policy.auth if route is not None else None
        self.req_last_chunk = trailer_chunk(fields, auth.strip_headers if auth is not None else ())

    def request_complete(self) -> None:
        self.req_done = True
        if self.finished:
            self.ended = _monotonic()  # the connection is free from now, not from the response's end
            self.proto.exchange_done(self)
            return
        if self.sent_head and self.conn is not None and self.chunked:
            self.conn.transport.write(self.req_last_chunk or b"0\r\n\r\n")

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
            if self.proto.framed:
                self.proto.informational(self, 100)
            else:
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
            ref = pick_weighted(backends)
            if ref is None:
                return self.respond(503, "all backends have weight 0")
        eset = table.endpoints.get(ref.key)
        if eset is None or eset.state == ENDPOINTS_NOT_FOUND:
            return self.respond(500, "backend not found")
        pool = self.proto.upstreams.pick(eset, route.policy.load_balancer, self.tried)
        if pool is None:
            return self.respond(503, "no ready endpoints")
        self.attempts += 1
        self.pool, self.backend = pool, ref
        self.upstream_ep = pool.endpoint
        self.backend_key = eset.key
        self.peers = len(eset.endpoints)
        hh = eset.host_header
        if hh:
            upstream_host = _HOST_HEADERS.get(hh)
            if upstream_host is None:
                if len(_HOST_HEADERS) >= TARGETS_MEMO_LIMIT:
                    _HOST_HEADERS.clear()
                upstream_host = _HOST_HEADERS[hh] = hh.encode()
            self.upstream_host = upstream_host
        else:
            self.upstream_host = None
        pool.active += 1
        now = _monotonic()
        self.upstream_start = now
        if self.trace is not None:
            self.trace.try_started(pool.endpoint.address, now)
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
        except (OSError, asyncio.TimeoutError) as e:  # not CancelledError (a BaseException): it propagates
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
        if not self.proto.framed and self.route.policy.response_headers is self.backend.response_headers is None:
            conn.keep_fields = False  # an HTTP/1.1 head takes the field lines as they came (http1_response_head)
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
            conn.transport.write(self.req_last_chunk or b"0\r\n\r\n")

    def _upstream_head(self) -> bytes | None:
        """The request head for the upstream; None (logged) if the route's configuration
        would put a space, CR, LF or other control byte into it (gateway/syntax.py: the
        compiler refuses such values; this is the last line of defence)."""
        route = self.route
        pol = route.policy
        path = self.path
        # A URL backend (or an ExternalName) is asked for by its own name; a rewrite's
        # hostname wins over both; otherwise the client's Host goes through.
        host = self.host if self.upstream_host is None else self.upstream_host
        if pol.rewrite is not None:
            path, new_host = policies.rewrite(route, pol.rewrite, path)
            if new_host:
                host = new_host.encode()
        if route.plain:
            target = self.upstream_target  # path and query as routed: encoded once per distinct target
        else:  # maybe rewritten, or its query changed by a policy (an API key taken out of it)
            target = path.encode() if not self.query else (path + "?" + self.query).encode()
        if pol.rewrite is not None and (unsafe_target(target) or unsafe_field_value(host)):
            refused_head(route, "rewritten request line or Host", target + b" " + host)
            return None
        bmod = self.backend.request_headers  # a backendRef's own filter, after the rule's
        if (pol.request_headers is not None and policies.unsafe_modifier(pol.request_headers)) or (
                bmod is not None and policies.unsafe_modifier(bmod)):
            refused_head(route, "request header modifier", b"")
            return None
        method_sp = _METHOD_SP.get(self.method)
        if method_sp is None:
            method_sp = self.method.encode() + b" "
        parts = [method_sp, target, b" HTTP/1.1\r\nhost: ", host, b"\r\n"]
        headers = self.headers
        # The client's Connection options name its own hop-by-hop fields: they
        # never remove a field the gateway adds (consumer, claims, modifiers).
        drop = connection_tokens(self.conn_value, None) - CONNECTION_OPTIONS if self.conn_value is not None else None
        strip = None
        if not route.plain or bmod is not None:
            if pol.request_headers is not None or bmod is not None:
                headers = policies.modify_request_headers(self, pol, headers, drop, bmod)
                drop = None
            elif pol.auth is not None:
                # The credentials and any client-sent consumer or claim header go in
                # the loop below; what authentication established is added after it.
                strip = pol.auth.strip_headers
        special = REQUEST_NOT_COPIED if self.trace is None else REQUEST_NOT_COPIED_TRACED
        rid_name = self.proto.request_id_header
        forwarded, rid = copy_request_fields(parts, headers, strip, special, drop, rid_name, self.proto.trusted,
                                             self.req_lines if headers is self.headers else None)
        if strip is not None:
            for name, value in self.auth_headers:
                add_field(parts, name, value)
        parts.append(self.proto.forwarding(self.host, forwarded))
        if self.trace is not None:
            # Traced: the backend's parent is this try's client span (the client's
            # tracestate is forwarded as it came).
            parts.append(self.trace.traceparent())
        elif self.proto.create_traceparent and not has_header(headers, b"traceparent"):
            parts.append(new_traceparent())  # one that came is forwarded untouched, as any end-to-end field
        if rid is None:
            rid = next_request_id()
            add_field(parts, rid_name, rid)
            self.request_id_made = True
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

    # ------------------------------------------------------------------ upstream events

    def upstream_head(self, conn, status: int, reason: bytes, headers: list, keep_alive: bool) -> None:
        route = self.route
        pol = route.policy
        if self.trace is not None:
            self.trace.try_status(status)
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
        bmod = self.backend.response_headers
        if (pol.response_headers is not None and policies.unsafe_modifier(pol.response_headers)) or (
                bmod is not None and policies.unsafe_modifier(bmod)):
            refused_head(route, "response header modifier", b"")
            self._release_try(close=True)  # the rest of this response is never read
            return self.respond(502, "the route's configuration makes an invalid response header")
        self.status = status
        self.resp_started = True
        if status == 101 and self.upgrade:
            conn.upgraded = True
            return self.proto.upgraded(self, conn, reason, headers)
        if pol.response_headers is not None:
            headers = policies.modify_headers(pol.response_headers, headers)
        if bmod is not None:
            headers = policies.modify_headers(bmod, headers)
        # Each client protocol frames the head its own way (HTTP/1.1 in gateway/http1.py,
        # HTTP/2 in gateway/h2stream.py).
        self.proto.response_head(self, status, reason, headers)

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

    def upstream_trailers(self, fields: list) -> None:
        """Trailers (an HTTP/2 backend's): an HTTP/2 client's stream sends them after the body;
        to an HTTP/1.1 client they ride in the last chunk if it accepts them."""
        if self.proto.framed:
            return None if self.finished else self.proto.send_trailers(fields)
        last = last_chunk(fields, self.header_view.get("te")) if self.resp_chunked and not self.finished else None
        if last is not None:
            self.out = (self.out or []) + [last]
            self.resp_chunked = False  # the last chunk is written: upstream_done adds none

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
        if self.trace is not None:
            self.trace.try_error(reason)
        self._release_try(close=True)
        if self.resp_started:
            if self.proto.end_cut(self, 502, _CUT_MESSAGES.get(reason) or "the backend failed"):
                # A gRPC stream ends with UNAVAILABLE in trailers (a status its client may
                # retry on) after what came before, including what the backend's last
                # read left unflushed: logged as the failure it is.
                self.flush()
                self.status = 502
                self.finish()
                return
            # Part of the response is with the client already: all we can do is cut.
            self.finished = True
            if self.trace is not None:
                self.proto.tracer.finish(self, _monotonic(), reason)
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
        delay = backoff * (0.5 + _random())  # jitter: retries of many clients off the same beat
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
                # Idle from when its response came; the clock is read again only if none came.
                pool.release(conn, self.upstream_start + self.upstream_time if self.resp_started else 0.0)
        if pool is not None:
            if self.trace is not None:
                self.trace.try_ended(_monotonic())
            pool.active -= 1
            if close and pool not in self.tried:  # only a try ended by closing is followed by another
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
            self.server.stats.upstream_error(self.route_name(), "timeout")
            if self.trace is not None:
                self.trace.try_error("timeout")
            self._release_try(close=True)
            if self.proto.end_cut(self, 504, "deadline exceeded"):
                # A gRPC stream ends with its status in trailers: logged as the timeout it is.
                self.status = 504
                self.finish()
                return
            # Part of the response is out: all we can do is cut the connection (an HTTP/2 stream).
            self.finished = True
            if self.trace is not None:
                self.proto.tracer.finish(self, _monotonic(), "timeout")
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
        if extra and unsafe_fields(extra):
            # A Location (or another field) built from configuration would split the response.
            refused_head(self.route, "response header", b"; ".join([v for _, v in extra]))
            status, message, extra, body = 500, "the route's configuration makes an invalid response header", None, None
        self.drop_upstream()
        if self.policy_task is not None and not self.policy_task.done():
            self.policy_task.cancel()
        self.status = status
        self.resp_started = True
        if self.request_id is None:
            # An answer the gateway makes itself (401, 404, 429, 503...) is logged
            # with a request id too: the client's, or a new one, as a forwarded request's.
            self.request_id = header_value(self.headers, self.proto.request_id_header)
            if not self.request_id:
                self.request_id = next_request_id()
                self.request_id_made = True
        if body is None:
            body = json_body(status, message) if status >= 400 else b""
        proto = self.proto
        rid = (proto.request_id_header, self.request_id)  # the id the access log has
        extra = [*extra, rid] if extra else (rid,)
        if close:
            self.close_after = True
        self.resp_bytes = len(body)
        proto.answer(self, status, extra, body)
        self.finish()

    def finish(self) -> None:
        if self.finished:
            return
        self.finished = True
        proto = self.proto
        now = self.ended = _monotonic()
        proto.stats.record_route(self.route, self.method, self.status, now - self.start)
        route = self.route
        if route is not None and not route.plain and route.policy.mirror is not None and self.status < 500:
            policies.mirror(self)
        if proto.access_log is not None:
            proto.access_log.write(self, now)
        if self.trace is not None:
            proto.tracer.finish(self, now)
        if self.req_done or self.close_after or proto.framed:
            proto.exchange_done(self)
        # else: the rest of the request body is read and discarded; request_complete
        # then calls exchange_done.


def new_exchange(proto: Downstream) -> Exchange:
    """``Exchange(proto)`` for the per-request path: compiled, the instance is
    allocated and set up by C calls."""
    ex = Exchange.__new__(Exchange)
    ex._setup(proto)
    return ex


_monotonic = time.monotonic
_random = random.random
