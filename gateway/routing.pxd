# C declarations for gateway/routing.py when it is compiled by Cython (see setup.py).
# The proxy reads a route, its policy and its endpoints on every request: as
# extension types those reads are struct members, not attribute lookups, and
# RouteTable.match is a C call. The dataclasses stay dataclasses (frozen, with
# the same fields, equality and hashing); derived fields are set once in
# __post_init__, hence public. Fields are declared in the dataclass's order: it
# is the order of the generated __init__'s positional arguments.
cimport cython


cdef class Endpoint:
    cdef readonly str host
    cdef readonly object port, tls, http2


cdef class EndpointSet:
    cdef readonly str key
    cdef readonly object endpoints
    cdef readonly str state
    cdef readonly object host_header


cdef class BackendRef:
    cdef readonly str key
    cdef readonly object weight
    cdef readonly object request_headers, response_headers


cdef class Timeouts:
    cdef readonly object request, backend_request, connect


cdef class RetryPolicy:
    cdef readonly object attempts, status_codes, on_connect_failure, backoff, non_idempotent


cdef class RateLimitPolicy:
    cdef readonly object requests_per_minute, burst
    cdef readonly str key
    cdef readonly object key_header
    cdef readonly str scope


cdef class RoutePolicy:
    cdef readonly object auth
    cdef readonly RateLimitPolicy rate_limit
    cdef readonly object rewrite, request_headers, response_headers, redirect
    cdef readonly Timeouts timeouts
    cdef readonly RetryPolicy retries
    cdef readonly object cors, max_body_bytes, load_balancer, mirror, https_redirect
    cdef public bint answers_early


cdef class Route:
    cdef readonly str name, kind, path, path_type
    cdef readonly object hosts, methods, headers, query, backends
    cdef readonly RoutePolicy policy
    cdef readonly object created, wildcard_single_label, regex, rule, order
    cdef public bint plain
    cdef public object counters  # gateway.metrics.RouteCounters: written once, by the metrics


@cython.final
cdef class MatchResult:
    cdef readonly Route route
    cdef readonly int status
    cdef readonly object allow


cdef class RouteTable:
    # public: ``updated`` fills in a new table through Python attribute writes.
    cdef public object generation, fallback
    cdef public dict endpoints
    cdef public object _exact, _wild, _any, _wild_lens, _wild_labels, _count, _order, _change
    cdef public dict _memo, request_memo
    cdef public Py_ssize_t _memo_limit

    cpdef MatchResult match(self, method, host, path, headers=*, query=*)
    cpdef tuple lookup(self, method, host, path, headers=*, query=*)
