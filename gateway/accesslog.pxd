# C declarations for gateway/accesslog.py when it is compiled by Cython (see setup.py).
# AccessLog.write runs once per request: typed against the Exchange, its field
# reads are C struct reads, and the f-string lines compile to one C join with
# C integer formatting.
cimport cython
from gateway.exchange cimport Exchange
from gateway.routing cimport Route


cdef class AccessLog:
    cdef public object writer, _add
    cdef public str format
    cdef public double sample_2xx
    cdef double _credit
    cdef bint _json
    cdef long _second
    cdef str _stamp, _clf_stamp
    cdef dict _quoted

    cpdef write(self, Exchange ex, double now)
    cdef int _time(self, double wall)
    cdef str _q(self, object value)
    cdef str _q_agent(self, bytes ua)
    @cython.locals(route=Route, ms=int, up=double)
    cdef str _json_line(self, Exchange ex, double now)
    @cython.locals(route=Route, ms=int, up=double)
    cdef str _text_line(self, Exchange ex, double now)


@cython.locals(us=long)
cdef str _ms(double seconds)
cdef str _json_bytes(object value)
cdef str _text_str(object value)
cdef str _text_bytes(object value)
