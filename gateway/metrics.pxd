# C declarations for gateway/metrics.py when it is compiled by Cython (see setup.py).
# RequestStats.record runs once per request: typed, it is a C method on a struct.
cimport cython
from gateway.routing cimport Route


@cython.final
cdef class RouteCounters:
    # In the order a request reads them (fields are laid out as declared): a request
    # spread over a large table finds them cold, in as few cache lines as they fit.
    cdef public RequestStats stats
    cdef public str method
    cdef public int status
    cdef public Py_ssize_t pending
    cdef double[::1] cells  # durations, as C doubles
    cdef public str name
    cdef public object durations


cdef class RequestStats:
    cdef public tuple buckets
    cdef public dict _counts, durations, _routes
    cdef public RouteCounters _last

    cpdef _add_pending(self, RouteCounters c)
    cpdef RouteCounters counters(self, str route)
    cpdef record(self, str route, str method, int status, double seconds)
    @cython.locals(c=RouteCounters)
    cpdef record_route(self, Route route, str method, int status, double seconds)
    @cython.locals(d="double[::1]", buckets=tuple, lo=Py_ssize_t, hi=Py_ssize_t, mid=Py_ssize_t, bound=double)
    cdef _count(self, RouteCounters c, str method, int status, double seconds)
