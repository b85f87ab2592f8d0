# C declarations for gateway/http1.py when it is compiled by Cython (see setup.py).
# The .py stays the one source; this file gives the protocol typed fields and
# makes its calls into the exchange (exchange.pxd) C calls.
cimport cython
from gateway.exchange cimport Downstream, Exchange, new_exchange
from gateway.routing cimport RoutePolicy
from gateway.wire cimport add_field, connection_tokens, upstream_status_line, websocket_upgrade, whole_request


# Per-request lookups in module-level caches: typed, `.get` is a C dict lookup.
cdef dict _METHODS


@cython.final
cdef class ClientProtocol(Downstream):
    cdef public Exchange current
    cdef public object parser, pipeline
    cdef public object _paused, _upgraded
    cdef public list _headers
    cdef public Py_ssize_t _url_size, _header_bytes, _max_uri, _max_header_bytes, _max_headers
    cdef public double _head_deadline, _idle_since, _header_timeout
    cdef public bint _writing_paused, _eof, _upgrade_refused, _sniffing
    cdef public bytes _sniffed

    # pause_reading, resume_reading, abort, close and exchange_done are Downstream's
    # C methods (exchange.pxd), overridden here: a final class may not declare them again.
    @cython.locals(ex=Exchange, method=str, url=bytes, headers=list, host=bytes, user_agent=bytes,
                   connection=bytes, size=Py_ssize_t, lines=bytes)
    cdef bint _whole_request(self, tuple head) except -1
    cpdef _special_header(self, bytes lname, bytes value)
    @cython.locals(headers=list, size=Py_ssize_t, n=Py_ssize_t)
    cpdef on_header(self, bytes name, bytes value)
    @cython.locals(ex=Exchange, version=str, method=bytes)
    cpdef on_headers_complete(self)
    cpdef on_body(self, bytes body)
    @cython.locals(ex=Exchange)
    cpdef on_message_complete(self)


@cython.locals(pol=RoutePolicy, parts=list, kept=list, name=bytes, value=bytes, lname=bytes, chunked=bint,
               special=frozenset, looked=tuple, n=Py_ssize_t, whole=tuple)
cpdef http1_response_head(Exchange ex, int status, bytes reason, list headers)
