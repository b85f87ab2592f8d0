# C declarations for gateway/targets.py when it is compiled by Cython (see setup.py).
# Called once per request by gateway/exchange.py: C calls, and struct reads of a hit.
cimport cython
from gateway.routing cimport Route, RouteTable


cdef dict _TARGETS

cpdef tuple normalized(bytes url, Py_ssize_t limit)


@cython.final
cdef class RoutedTarget:
    cdef public str method, host, path, query
    cdef public bytes upstream_target
    cdef public Route route


@cython.locals(hit=RoutedTarget)
cpdef RoutedTarget routed(RouteTable table, bytes url, str method, str host)
@cython.locals(memo=dict)
cpdef remember(RouteTable table, bytes url, RoutedTarget hit, Py_ssize_t limit)
