# C declarations for gateway/loopwriter.py when it is compiled by Cython (see setup.py).
cimport cython
from libc.string cimport memcpy
from cpython.bytearray cimport PyByteArray_AS_STRING
from cpython.bytes cimport PyBytes_AS_STRING
from cpython.unicode cimport PyUnicode_DATA

cdef extern from "Python.h":
    bint PyUnicode_IS_ASCII(object text)  # a compact str of 1-byte characters below 128

cdef bint _COMPILED

# A LineBuffer takes the access log's pieces by memcpy: a C call and a copy per piece
# (joining the pieces into a str, then the batch into bytes, cost ~1,300 instructions a line).
# Its appending methods are C only: the access log and the writer call them, both compiled.
cdef class LineBuffer:
    cdef public bytearray data
    cdef public Py_ssize_t capacity, length

    # C methods (no Python dispatch check, no None returned): a piece costs a few dozen
    # instructions and its memcpy.
    @cython.locals(n=Py_ssize_t)
    cdef int put(self, str text) except -1
    @cython.locals(n=Py_ssize_t)
    cdef int put_bytes(self, bytes value) except -1
    cdef int put_char(self, unsigned char c) except -1
    @cython.locals(capacity=Py_ssize_t, grown=bytearray)
    cdef int _grow(self, Py_ssize_t n) except -1
    cdef void cut(self, Py_ssize_t length)
    cdef void clear(self)


# LoopLogWriter.write runs once per request (the access log's line): compiled, it
# is a C method with C counters instead of a Python call of ~2,000 instructions.
cdef class LoopLogWriter:
    cdef public object target, drop_report
    cdef public str name
    cdef public Py_ssize_t max_buffer
    cdef public double interval
    cdef public LineBuffer lines
    cdef LineBuffer _spare, _flight
    cdef Py_ssize_t _line_start, _waiting_lines
    cdef Py_ssize_t _size, _rest_lines, _dropped_full, _dropped_lost
    cdef object _rest, _loop, _timer
    cdef bint _waiting, _closed, _broken

    cpdef bint write(self, str line)
    cpdef LineBuffer start_line(self)
    # n: a C integer (untyped, the size checks were Python int arithmetic: ~600 instructions a line)
    @cython.locals(n=Py_ssize_t, lines=LineBuffer)
    cpdef bint end_line(self)
