# C declarations for gateway/metrics.py when it is compiled by Cython (see setup.py).
# RequestStats.record runs once per request: typed, it is a C method on a struct.
cimport cython


@cython.final
cdef class RouteCounters:
    cdef public str name, method
    cdef public int status
    cdef public list durations
    cdef public Py_ssize_t pending


cdef class RequestStats:
    cdef public tuple buckets
    cdef public dict _counts, durations, _routes
    cdef public RouteCounters _last

    cpdef _add_pending(self, RouteCounters c)
    @cython.locals(c=RouteCounters, d=list, buckets=tuple, lo=Py_ssize_t, hi=Py_ssize_t, mid=Py_ssize_t, bound=double)
    cpdef record(self, str route, str method, int status, double seconds)
