# C declarations for gateway/request.py when it is compiled by Cython (see setup.py).
# Policies (policies.pxd) take a RequestView: the fields they read are struct
# members and respond() is a vtable call into the exchange.
cimport cython
from gateway.routing cimport Route, RouteTable
from gateway.upstream cimport Handler
from gateway.wire cimport forwarding_fields


cdef class HeaderView:
    cdef object _headers
    cdef object _cache


@cython.locals(hv=HeaderView)
cpdef HeaderView header_view(list headers)


cdef class ClientConnection:
    cdef public object peer, scheme, limiter, auth_memo, addr_key, fwd_key, fwd_block
    cdef public bytes peer_bytes, forwarded_for, scheme_bytes
    cdef public bint trusted, ratelimit_headers

    cpdef bytes forwarding(self, bytes host, dict incoming)


cdef class RequestView(Handler):
    cdef public ClientConnection client
    cdef public object server
    cdef public str method, path, query
    cdef public bytes host
    cdef public list headers
    cdef public object header_view, consumer, auth_headers, extra_resp_headers, replay
    cdef public RouteTable table
    cdef public Route route
    cdef public bint req_done

    cdef _init_view(self, ClientConnection client, object server)
    cpdef respond(self, int status, str message, extra=*, bint close=*, body=*)
