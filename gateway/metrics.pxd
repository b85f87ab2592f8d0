# C declarations for gateway/metrics.py when it is compiled by Cython (see setup.py).
# RequestStats.record runs once per request: typed, it is a C method on a struct.
cimport cython


cdef class RequestStats:
    cdef public object buckets
    cdef public dict requests, durations

    @cython.locals(key=tuple, d=list, i=Py_ssize_t, r=dict)
    cpdef record(self, str route, str method, int status, double seconds)
