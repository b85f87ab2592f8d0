# C declarations for gateway/http.py when it is compiled by Cython (see setup.py).
# The .py stays the one source; this file gives its classes typed fields and
# makes the calls between their hot methods C calls.
cimport cython
from gateway.metrics cimport RequestStats
from gateway.routing cimport BackendRef, EndpointSet, MatchResult, Route, RoutePolicy, RouteTable, Timeouts
from gateway.upstream cimport EndpointPool, Handler, UpstreamConnection, Upstreams


cdef class HeaderView:
    cdef object _headers
    cdef object _cache


cdef class ClientProtocol


cdef class Exchange(Handler):
    cdef public ClientProtocol proto
    cdef public object server
    cdef public str method
    cdef public bytes url, host
    cdef public bint http10, keep_alive, upgrade, expect_continue, head_complete, req_done
    # chunked is tri-state (None = a transfer-coding we refuse); lengths stay
    # Python ints because a peer may send any number of digits.
    cdef public object content_length, chunked, conn_value, req_bytes, resp_bytes
    cdef public RouteTable table
    cdef public Route route
    cdef public str path, query
    cdef public object header_view, consumer, auth_headers
    cdef public object extra_resp_headers, upstream_host, request_id, policy_task, out
    cdef public list body_buf, headers
    cdef public object replay
    cdef public Py_ssize_t body_buf_size
    cdef public bint sent_head, up_paused, connecting, up_keep_alive
    cdef public UpstreamConnection conn
    cdef public EndpointPool pool
    cdef public object tried, backend_key, upstream_ep
    cdef public int attempts, peers, status
    cdef public double deadline, try_deadline, upstream_start, upstream_time, start
    cdef public bint resp_started, resp_chunked, resp_until_close, finished, close_after

    cpdef str route_name(self)
    @cython.locals(table=RouteTable, res=MatchResult, route=Route, pol=RoutePolicy, timeouts=Timeouts,
                   proto=ClientProtocol, host=str)
    cpdef begin(self)
    @cython.locals(route=Route, pol=RoutePolicy)
    cpdef run_policies(self, int step)
    cpdef request_body(self, bytes data)
    cpdef request_complete(self)
    cpdef _write_body(self, bytes data)
    cpdef forward(self)
    @cython.locals(pool=EndpointPool, conn=UpstreamConnection, table=RouteTable, route=Route, ref=BackendRef, eset=EndpointSet)
    cpdef attempt(self, bint first=*)
    cpdef _send(self, UpstreamConnection conn)
    @cython.locals(route=Route, pol=RoutePolicy, parts=list, headers=list, name=bytes, value=bytes, lname=bytes, special=frozenset, strip=tuple)
    cpdef bytes _upstream_head(self)  # None: refused (see gateway/syntax.py)
    cpdef bytes _forwarding(self, incoming)
    @cython.locals(route=Route, pol=RoutePolicy, parts=list, kept=list, name=bytes, value=bytes, lname=bytes, chunked=bint,
                   special=frozenset, looked=tuple, n=Py_ssize_t)
    cpdef upstream_head(self, UpstreamConnection conn, int status, bytes reason, list headers, bint keep_alive)
    cpdef upstream_body(self, bytes data)
    cpdef flush(self)
    cpdef upstream_done(self, UpstreamConnection conn)
    cpdef _release_try(self, bint close)
    cpdef drop_upstream(self)
    cpdef respond(self, int status, str message, extra=*, bint close=*, body=*)
    @cython.locals(proto=ClientProtocol, route=Route)
    cpdef finish(self)


# Per-request lookups in module-level caches: typed, `.get` is a C dict lookup.
cdef dict _METHODS, _STATUS_LINES, _TARGETS
cdef Py_ssize_t _rid_count
cdef bytes _rid_high
cdef tuple _RID_LOW
@cython.locals(n=Py_ssize_t, low=Py_ssize_t)
cpdef bytes next_request_id()
cdef inline _add_field(list parts, object name, object value)


@cython.final
cdef class ClientProtocol:
    cdef public Exchange current
    cdef public Upstreams upstreams
    cdef public RequestStats stats
    cdef public object access_log, max_body_bytes, limiter
    cdef public bytes request_id_header
    cdef public bint create_traceparent, ratelimit_headers
    cdef public object server, transport, parser, pipeline, peer, peer_bytes, forwarded_for
    cdef public bint closed, trusted
    cdef public object _paused, _upgraded, fwd_key, fwd_block, scheme, scheme_bytes, sni, _host_ok, auth_memo, addr_key
    cdef public str _host_str
    cdef public list _headers
    cdef public Py_ssize_t _url_size, _header_bytes, _max_uri, _max_header_bytes, _max_headers
    cdef public double _head_deadline, _idle_since, _header_timeout
    cdef public bint _writing_paused, _eof, _upgrade_refused

    cpdef pause_reading(self, str why)
    cpdef resume_reading(self, str why)
    cpdef abort(self)
    cpdef close(self)
    cpdef _special_header(self, bytes lname, bytes value)
    @cython.locals(headers=list, size=Py_ssize_t, n=Py_ssize_t)
    cpdef on_header(self, bytes name, bytes value)
    @cython.locals(ex=Exchange, version=str)
    cpdef on_headers_complete(self)
    cpdef on_body(self, bytes body)
    @cython.locals(ex=Exchange)
    cpdef on_message_complete(self)
    cpdef exchange_done(self, Exchange ex)
