# C declarations for gateway/wire.py when it is compiled by Cython (see setup.py).
# The exchange cimports these: its calls are C calls through the module's
# exported function pointers, as fast as they were inside one module.
cimport cython

cpdef bytes json_body(int status, str message)
cpdef bytes status_line(int status, reason=*)
cdef dict _UPSTREAM_LINES
cpdef bytes upstream_status_line(int status, bytes reason)
cpdef add_field(list parts, object name, object value)
@cython.locals(parts=list)
cpdef bytes answer_bytes(int status, bytes body, extra, extra_resp, bint close, bint head)
@cython.locals(forwarded=dict)
cpdef tuple copy_request_fields(list parts, object headers, object strip, object special, object drop,
                                bytes rid_name, bint trusted, bytes lines=*)
# whole_response: the bytes and the byte classes through C pointers; positions and bytes as C integers.
cdef bytes _FIELD_BYTE
@cython.locals(n=Py_ssize_t, pos=Py_ssize_t, start=Py_ssize_t, name_end=Py_ssize_t, value_start=Py_ssize_t,
               value_end=Py_ssize_t, size=Py_ssize_t, length=Py_ssize_t, name_len=Py_ssize_t, d0=int, d1=int,
               d2=int, digit=int, status=int, last=cython.uchar, raw=cython.p_uchar, table=cython.p_uchar,
               headers=list, name=bytes, value=bytes, reason=bytes, hop=bint, runs=list, copy_from=Py_ssize_t,
               copy_to=Py_ssize_t, fields=bytes, looked=bint, i=Py_ssize_t)
cpdef tuple whole_response(bytes data, Py_ssize_t max_head, bint keep_fields=*)
# whole_request: as whole_response.
cdef bytes _TARGET_BYTE
cdef dict _PLAIN_METHODS
cdef bytes _VERSION_CRLF
cdef frozenset _BODY_OR_PARSER_FIELDS
cdef bytes _REQUEST_LOOKED
@cython.locals(n=Py_ssize_t, pos=Py_ssize_t, start=Py_ssize_t, name_end=Py_ssize_t, value_start=Py_ssize_t,
               size=Py_ssize_t, name_len=Py_ssize_t, last=cython.uchar, raw=cython.p_uchar, table=cython.p_uchar,
               target_table=cython.p_uchar, looked=cython.p_uchar, rid_len=Py_ssize_t, headers=list, name=bytes,
               value=bytes, lname=bytes, url=bytes, method=str, host=bytes, user_agent=bytes, connection=bytes,
               runs=list, copy_from=Py_ssize_t, copy_to=Py_ssize_t, as_written=bint, copied=bint, lines=bytes)
cpdef tuple whole_request(bytes data, Py_ssize_t max_uri, Py_ssize_t max_head, Py_ssize_t max_headers,
                          bytes rid_name)
cpdef bint has_header(object headers, bytes lname) except -1
cpdef bint unsafe_fields(object fields) except -1
cpdef set connection_tokens(bytes value, set into)
cpdef bytes forwarding_fields(bytes peer, bytes forwarded_for, bytes scheme, bytes host, dict incoming)
cpdef bint websocket_upgrade(object headers) except -1

# The request-id counter and the formatted high part: C variables (see wire.py).
cdef Py_ssize_t _rid_count
cdef bytes _rid_high
cdef tuple _RID_LOW
@cython.locals(n=Py_ssize_t, low=Py_ssize_t)
cpdef bytes next_request_id()
cpdef bytes new_traceparent()
