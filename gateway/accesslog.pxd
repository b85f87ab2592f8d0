# C declarations for gateway/accesslog.py when it is compiled by Cython (see setup.py).
# AccessLog.write runs once per request: typed against the Exchange, its field
# reads are C struct reads, and the f-string lines compile to one C join with
# C integer formatting (durations and byte counts are C integers here).
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
    cdef str _time_head, _clf_stamp
    cdef dict _quoted, _upstreams
    cdef object _last_ep
    cdef str _last_ep_q

    cpdef write(self, Exchange ex, double now)
    @cython.locals(wall=double, second=long)
    cdef str _ms(self)
    cdef str _q(self, object value)
    cdef str _upstream(self, object ep)
    cdef str _q_agent(self, bytes ua)
    @cython.locals(route=Route, ms=str, up=double, total=long, up_us=long, bytes_in="long long", bytes_out="long long",
                   upstream_ms=str)
    cdef str _json_line(self, Exchange ex, double now)
    @cython.locals(route=Route, ms=str, up=double, total=long, up_us=long, bytes_in="long long", bytes_out="long long",
                   upstream_ms=str)
    cdef str _text_line(self, Exchange ex, double now)


@cython.locals(ch=Py_UCS4)
cdef bint _plain(str value)
cdef str _json(str value)
@cython.locals(text=str)
cdef str _json_bytes(bytes value)
cdef str _text_str(object value)
cdef str _text_bytes(bytes value)
