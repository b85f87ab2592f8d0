# C declarations for gateway/exchange.py when it is compiled by Cython (see setup.py).
# The .py stays the one source; this file gives its classes typed fields and
# makes the calls between their hot methods, and into the protocol that drives
# them (through Downstream), C calls.
cimport cython
from gateway cimport policies
from gateway.metrics cimport RequestStats
from gateway.request cimport ClientConnection, HeaderView, RequestView, header_view
from gateway.targets cimport RoutedTarget, normalized, remember, routed
from gateway.routing cimport BackendRef, EndpointSet, MatchResult, Route, RoutePolicy, RouteTable, Timeouts
from gateway.upstream cimport EndpointPool, UpstreamConnection, Upstreams
from gateway.wire cimport (add_field, connection_tokens, copy_request_fields, forwarding_fields, has_header, json_body,
                           next_request_id, unsafe_fields)


cdef class Exchange


cdef class Downstream(ClientConnection):
    cdef public object server, transport, access_log, max_body_bytes, sni
    cdef public Upstreams upstreams
    cdef public RequestStats stats
    cdef public bytes request_id_header, last_host
    cdef public str last_host_str
    # framed: an HTTP/2 stream (gateway/h2stream.py); http_version: for the access log
    cdef public bint closed, create_traceparent, framed, draining
    cdef public str http_version
    cdef public object tracer  # gateway.tracing.Tracer, or None

    cpdef pause_reading(self, str why)
    cpdef resume_reading(self, str why)
    cpdef abort(self)
    cpdef close(self)
    cpdef exchange_done(self, Exchange ex)
    cpdef response_head(self, Exchange ex, int status, bytes reason, list headers)
    cpdef answer(self, Exchange ex, int status, extra, bytes body)


cdef class Exchange(RequestView):
    cdef public Downstream proto
    cdef public bytes url
    cdef public bint http10, keep_alive, upgrade, expect_continue, head_complete
    # chunked is tri-state (None = a transfer-coding we refuse); lengths stay
    # Python ints because a peer may send any number of digits.
    cdef public object content_length, chunked, conn_value, req_bytes, resp_bytes
    cdef public object upstream_host, request_id, user_agent, policy_task, out
    cdef public object trace  # gateway.tracing.RequestTrace when sampled, else None
    cdef public bint request_id_made  # the id is the gateway's own, printable ASCII: the access log copies it unscanned
    cdef public list body_buf
    cdef public Py_ssize_t body_buf_size
    cdef public bytes req_last_chunk  # None, or the request's last chunk with its trailers
    cdef public bytes req_lines  # None, or the field lines to copy as they came: wire.whole_request
    cdef public bytes upstream_target  # path and query as routed, encoded
    cdef public bint sent_head, up_paused, connecting, up_keep_alive
    cdef public UpstreamConnection conn
    cdef public EndpointPool pool
    cdef public BackendRef backend
    cdef public object tried, backend_key, upstream_ep
    cdef public int attempts, peers, status
    cdef public double deadline, try_deadline, upstream_start, upstream_time, start, ended
    cdef public double grpc_timeout  # seconds of a gRPC request's grpc-timeout, 0.0 when none
    cdef public bint resp_started, resp_chunked, resp_until_close, finished, close_after

    cdef _setup(self, Downstream proto)
    cpdef str route_name(self)
    @cython.locals(table=RouteTable, hit=RoutedTarget, route=Route, pol=RoutePolicy, timeouts=Timeouts,
                   proto=Downstream, host=str)
    cpdef begin(self)
    @cython.locals(res=MatchResult, route=Route, proto=Downstream, host=str)
    cpdef Route route_target(self, RouteTable table)
    @cython.locals(route=Route, pol=RoutePolicy)
    cpdef run_policies(self, int step)
    cpdef request_body(self, bytes data)
    cpdef request_complete(self)
    cpdef _write_body(self, bytes data)
    cpdef forward(self)
    @cython.locals(pool=EndpointPool, conn=UpstreamConnection, table=RouteTable, route=Route, ref=BackendRef, eset=EndpointSet,
                   upstream_host=bytes)
    cpdef attempt(self, bint first=*)
    cpdef _send(self, UpstreamConnection conn)
    @cython.locals(route=Route, pol=RoutePolicy, parts=list, headers=list, name=bytes, value=bytes, lname=bytes, special=frozenset, strip=tuple,
                   method_sp=bytes)
    cpdef bytes _upstream_head(self)  # None: refused (see gateway/syntax.py)
    @cython.locals(route=Route, pol=RoutePolicy)
    cpdef upstream_head(self, UpstreamConnection conn, int status, bytes reason, list headers, bint keep_alive)
    cpdef upstream_body(self, bytes data)
    cpdef flush(self)
    cpdef upstream_done(self, UpstreamConnection conn)
    cpdef _release_try(self, bint close)
    cpdef drop_upstream(self)
    cpdef respond(self, int status, str message, extra=*, bint close=*, body=*)
    @cython.locals(proto=Downstream, route=Route)
    cpdef finish(self)


@cython.locals(ex=Exchange)
cpdef Exchange new_exchange(Downstream proto)


# Per-request lookups in module-level caches: typed, `.get` is a C dict lookup.
cdef dict _METHOD_SP, _HOST_HEADERS
