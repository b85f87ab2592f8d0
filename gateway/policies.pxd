# C declarations for gateway/policies.py when it is compiled by Cython (see setup.py).
# Only the rate-limit glue, which runs on every request of a limited route, is
# typed: it reads the exchange, its connection, its route and the policy as
# structs. (gateway/http.py imports this module at its own init; the types
# cimported from it exist by then: Cython creates them before running the body.)
cimport cython
from gateway.http cimport ClientProtocol, Exchange
from gateway.routing cimport RateLimitPolicy, Route


@cython.locals(proto=ClientProtocol, route=Route, name=str, key=str)
cpdef rate_limit(Exchange ex, RateLimitPolicy rl)
