# C declarations for gateway/accesslog.py when it is compiled by Cython (see setup.py).
# AccessLog.write runs once per request: typed against the Exchange, its field
# reads are C struct reads; a JSON line's pieces go to a LineBuffer by C calls, the
# text line's f-string compiles to one C join (durations and byte counts are C integers).
cimport cython
from gateway.exchange cimport Exchange
from gateway.loopwriter cimport LineBuffer, LoopLogWriter
from gateway.routing cimport Route


cdef class AccessLog:
    cdef public object writer, _add
    cdef LoopLogWriter _loop_writer
    cdef LineBuffer _scratch
    cdef public str format
    cdef public double sample_2xx
    cdef double _credit
    cdef bint _json
    cdef long _second
    cdef double _next_second, _wall_offset
    cdef str _time_head, _clf_stamp, _t
    cdef int _t_ms
    # the repeated runs of a JSON line and the values each was made of
    cdef str _a, _b, _c, _a_method, _b_proto
    cdef bytes _a_host
    cdef int _b_status
    cdef object _a_route, _c_consumer
    cdef str _c_peer  # typed, as is _c_agent: compared as str and bytes, equal values come as new objects
    cdef bytes _c_agent
    cdef dict _quoted, _upstreams
    cdef object _last_ep
    cdef str _last_ep_q

    @cython.locals(line=str, buf=LineBuffer)
    cpdef write(self, Exchange ex, double now)
    @cython.locals(wall=double, second=long, ms=long)
    cdef int _ms(self, double now)
    cdef str _q(self, object value)
    cdef str _upstream(self, object ep)
    cdef str _q_agent(self, bytes ua)
    @cython.locals(route=Route, ms=int, method=str, host=bytes, protocol=str, status=int, path=str, rid=bytes,
                   peer=str, agent=bytes, up=double, total=long, up_us=long, bytes_in="long long",
                   bytes_out="long long")
    cdef _json_line(self, Exchange ex, double now, LineBuffer buf)
    @cython.locals(route=Route, ms=int, method=str, host=bytes, protocol=str, status=int, up=double, total=long,
                   up_us=long, up_int=str, up_frac=str, bytes_in="long long", bytes_out="long long")
    cdef str _text_line(self, Exchange ex, double now)


@cython.locals(ch=Py_UCS4)
cdef bint _plain(str value)
cdef str _int(long long n)
cdef str _field_int(tuple table, long long n)
cdef str _json(str value)
cdef str _json_inner(str value)
cdef str _json_bytes(bytes value)
@cython.locals(c="unsigned char")
cdef bint _plain_bytes(bytes value)
@cython.locals(c="unsigned char")
cdef str _json_bytes_inner(bytes value)
cdef str _text_str(object value)
@cython.locals(c="unsigned char")
cdef str _text_bytes(bytes value)
