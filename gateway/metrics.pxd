# C declarations for gateway/metrics.py when it is compiled by Cython (see setup.py).
# RequestStats.record runs once per request: typed, it is a C method on a struct.
cimport cython


cdef class RequestStats:
    cdef public tuple buckets
    cdef public dict requests, durations

    @cython.locals(key=tuple, d=list, r=dict, buckets=tuple, lo=Py_ssize_t, hi=Py_ssize_t, mid=Py_ssize_t, bound=double)
    cpdef record(self, str route, str method, int status, double seconds)
