# C declarations for gateway/policies.py when it is compiled by Cython (see setup.py).
# Only the auth and rate-limit glue, which runs on every request of a protected or
# limited route, is typed: it reads the exchange, its connection, its route and the policy as
# structs. (gateway/http.py imports this module at its own init; the types
# cimported from it exist by then: Cython creates them before running the body.)
cimport cython
from gateway.http cimport ClientProtocol, Exchange
from gateway.ratelimit cimport RateLimiter
from gateway.routing cimport RateLimitPolicy, Route

# The decision counters' dicts (metrics.DecisionCounter.counts), bumped per request.
cdef dict _AUTH_COUNTS, _RL_COUNTS


@cython.locals(proto=ClientProtocol, route=Route, name=str, key=str, limiter=RateLimiter)
cpdef rate_limit(Exchange ex, RateLimitPolicy rl)


@cython.locals(proto=ClientProtocol)
cpdef authenticate(Exchange ex, object auth)
@cython.locals(route=Route)
cpdef bint apply_auth(Exchange ex, object auth, object result) except -1
