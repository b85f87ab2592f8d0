# C declarations for gateway/ratelimit.py when it is compiled by Cython (see setup.py).
# The Local check runs on every request of a limited route: with typed plans and
# decisions its arithmetic is on C doubles and its fields are struct members.
cimport cython


@cython.final
cdef class _Tat:
    cdef public double tat


@cython.final
cdef class Decision:
    cdef public bint allowed
    cdef public object limit, remaining
    cdef public double reset_after, retry_after
    cdef public str outcome


@cython.final
cdef class _Plan:
    cdef public object policy, policy_header, interval_us, window_us, fail_open, fail_closed
    cdef public double interval, window
    cdef public Py_ssize_t limit, lease_max
    cdef public bint is_global


# A Global key's leased requests: read and updated on every leased admission.
@cython.final
cdef class _Lease:
    cdef public Py_ssize_t tokens, size
    cdef public double expires, tat
    cdef public bint fetching


cdef class RateLimiter:
    cdef public object _clock, _store, _plans_by_value, _redis, _batch, _errors, _where, _warned_no_redis, _leases
    cdef public dict _plans
    cdef public Py_ssize_t _max_keys, evictions, _lease_max
    cdef public double _timeout
    cdef public bint _fail_open
    cdef object __weakref__

    cpdef object admit(self, str route_name, object policy, str key, bint with_headers=*)
    @cython.locals(now=cython.double, cell=_Tat, tat=cython.double, ahead=cython.double, window=cython.double)
    cdef tuple _local(self, _Plan plan, tuple k)
    @cython.locals(tokens=Py_ssize_t, interval=cython.double, ahead=cython.double, size=Py_ssize_t)
    cdef tuple _take(self, _Plan plan, _Lease lease, str route_name, str key, double now)


cdef Decision _denied(_Plan plan, double ahead)
@cython.locals(r=cython.longlong, t=cython.longlong, x=cython.double)
cdef tuple _ratelimit_field(_Plan plan, object remaining, double ahead)
