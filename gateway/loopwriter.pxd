# C declarations for gateway/loopwriter.py when it is compiled by Cython (see setup.py).
cimport cython

# LoopLogWriter.write runs once per request (the access log's line): compiled, it
# is a C method with C counters instead of a Python call of ~2,000 instructions.
cdef class LoopLogWriter:
    cdef public object target, drop_report
    cdef public str name
    cdef public Py_ssize_t max_buffer
    cdef public double interval
    cdef list _lines
    cdef Py_ssize_t _size, _waiting_size, _rest_lines, _dropped_full, _dropped_lost
    cdef object _rest, _loop, _timer
    cdef bint _waiting, _closed, _broken

    # n: a C integer (untyped, the size checks were Python int arithmetic: ~600 instructions a line)
    @cython.locals(n=Py_ssize_t)
    cpdef bint write(self, str line)
