# C declarations for gateway/upstream.py when it is compiled by Cython (see setup.py).
# The .py stays the one source; this file only gives its classes typed fields.
cimport cython
from gateway.routing cimport EndpointSet
from gateway.wire cimport whole_response


cdef class Upstreams
cdef class UpstreamConnection


cdef class Handler:
    # The callbacks of every response: C methods (the rarer ones stay Python methods).
    cpdef upstream_head(self, UpstreamConnection conn, int status, bytes reason, list headers, bint keep_alive)
    cpdef upstream_body(self, bytes data)
    cpdef flush(self)
    cpdef upstream_done(self, UpstreamConnection conn)


# Not final: an HTTP/2 stream (gateway/h2upstream.py) is one, to the exchange.
cdef class UpstreamConnection:
    cdef public object pool, transport, parser, _headers, _reason
    cdef public tuple whole, last_head
    cdef public Handler handler
    cdef public bint reused, got_bytes, head_only, may_upgrade, _closed, upgraded, at_boundary, keep_fields
    cdef public double idle_since
    cdef public Py_ssize_t _header_bytes, _max_header_bytes
    cdef public int _status

    cpdef send(self, handler, bytes data, bint head_only, bint may_upgrade=*)
    cpdef on_header(self, bytes name, bytes value)
    cpdef close(self)
    cpdef bint is_usable(self)
    cpdef _finish(self)
    cpdef _whole(self, Handler h, tuple whole)


@cython.final
cdef class EndpointPool:
    cdef public object endpoint, idle, ssl, h2
    cdef public Upstreams upstreams
    cdef public int active, failures, ejections
    cdef public double ejected_until

    @cython.locals(conn=UpstreamConnection)
    cpdef UpstreamConnection take_idle(self)
    cpdef release(self, UpstreamConnection conn, double now=*)
    cpdef succeeded(self)
    cpdef failed(self, str backend_key, int peers)
    cpdef bint ejected(self, double now)


cdef class Upstreams:
    cdef public dict pools, rr, _sets
    cdef public Py_ssize_t max_idle, max_header_bytes
    cdef public object idle_timeout, client_ssl, _rand, http2_pool, client_ssl_h2

    cpdef tuple pools_of(self, EndpointSet eset)
    cpdef EndpointPool pick(self, EndpointSet eset, lb, tuple exclude=*)


cpdef Py_ssize_t _usable_offset(tuple pools, Py_ssize_t start, tuple exclude, double now) except -1
