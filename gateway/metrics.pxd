# C declarations for gateway/metrics.py when it is compiled by Cython (see setup.py).
# RequestStats.record runs once per request: typed, it is a C method on a struct.
cimport cython


cdef class RequestStats:
    cdef public tuple buckets
    cdef public dict _counts, durations
    cdef public str _last_route, _last_method
    cdef public int _last_status
    cdef public list _last_durations
    cdef public Py_ssize_t _pending

    cpdef _add_pending(self)
    @cython.locals(d=list, buckets=tuple, lo=Py_ssize_t, hi=Py_ssize_t, mid=Py_ssize_t, bound=double)
    cpdef record(self, str route, str method, int status, double seconds)
