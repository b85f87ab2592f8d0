# C declarations for gateway/loopwriter.py when it is compiled by Cython (see setup.py).
# LoopLogWriter.write runs once per request (the access log's line): compiled, it
# is a C method with C counters instead of a Python call of ~2,000 instructions.
cdef class LoopLogWriter:
    cdef public object target, on_drops
    cdef public str name
    cdef public Py_ssize_t max_buffer
    cdef public double interval, warning_interval
    cdef list _lines
    cdef Py_ssize_t _size, _rest_lines, _dropped_full, _dropped_lost, _reported
    cdef object _rest, _loop, _timer
    cdef bint _waiting, _closed, _broken
    cdef double _last_warning

    cpdef bint write(self, str line)
