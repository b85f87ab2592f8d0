# C declarations for gateway/policies.py when it is compiled by Cython (see setup.py).
# Only the auth and rate-limit glue, which runs on every request of a protected or
# limited route, is typed: it reads the request view, its client connection, its
# route and the policy as structs. The exchange cimports this module: its calls
# into these functions are C calls.
cimport cython
from gateway.ratelimit cimport RateLimiter
from gateway.request cimport ClientConnection, RequestView
from gateway.routing cimport RateLimitPolicy, Route

# The decision counters' dicts (metrics.DecisionCounter.counts), bumped per request.
cdef dict _AUTH_COUNTS, _RL_COUNTS


@cython.locals(client=ClientConnection, route=Route, name=str, key=str, limiter=RateLimiter)
cpdef rate_limit(RequestView ex, RateLimitPolicy rl)


@cython.locals(client=ClientConnection)
cpdef authenticate(RequestView ex, object auth)
@cython.locals(route=Route)
cpdef bint apply_auth(RequestView ex, object auth, object result) except -1
