"""Endpoint choice: round robin in O(1) per request, even around ejected endpoints, least request,
and the per-endpoint-set pool cache (socket-free)."""

import time
from collections import Counter

from gateway.routing import Endpoint, EndpointSet
from gateway.upstream import Upstreams

EPS = tuple(Endpoint("127.0.0.1", 9000 + i) for i in range(4))


def names(picks) -> Counter:
    return Counter(p.endpoint.port for p in picks)


def test_round_robin_rotates_exactly():
    up = Upstreams()
    eset = EndpointSet("ns/svc:80", EPS[:3])
    picks = [up.pick(eset, "RoundRobin") for _ in range(9)]
    assert [p.endpoint.port for p in picks] == [9000, 9001, 9002] * 3


def test_an_ejected_endpoint_is_skipped_and_the_others_share_evenly():
    up = Upstreams()
    eset = EndpointSet("ns/svc:80", EPS[:3])
    up.pool(EPS[1]).ejected_until = time.monotonic() + 100
    assert names(up.pick(eset, "RoundRobin") for _ in range(100)) == {9000: 50, 9002: 50}


def test_tried_endpoints_are_avoided_while_others_exist():
    up = Upstreams()
    eset = EndpointSet("ns/svc:80", EPS[:3])
    tried = (up.pool(EPS[0]), up.pool(EPS[2]))
    assert {up.pick(eset, "RoundRobin", tried).endpoint.port for _ in range(10)} == {9001}
    everything = tuple(up.pool(e) for e in EPS[:3])
    assert up.pick(eset, "RoundRobin", everything) is not None  # nothing left untried: still an answer


def test_all_ejected_still_answers():
    up = Upstreams()
    eset = EndpointSet("ns/svc:80", EPS[:2])
    for e in EPS[:2]:
        up.pool(e).ejected_until = time.monotonic() + 100
    assert up.pick(eset, "RoundRobin") is not None
    assert up.pick(EndpointSet("ns/none:80", ()), "RoundRobin") is None


def test_least_request_compares_two_different_endpoints():
    up = Upstreams()
    eset = EndpointSet("ns/svc:80", EPS[:2])
    up.pool(EPS[0]).active = 5
    # With two endpoints the two candidates are always both of them: the idle one wins every time.
    assert names(up.pick(eset, "LeastRequest") for _ in range(50)) == {9001: 50}


def test_pools_are_built_once_per_endpoint_set():
    up = Upstreams()
    eset = EndpointSet("ns/svc:80", EPS[:3])
    first = up.pools_of(eset)
    assert up.pools_of(eset) is first
    assert [p.endpoint for p in first] == list(EPS[:3])
    moved = EndpointSet("ns/svc:80", EPS[1:])  # the Service's endpoints changed: a new set
    again = up.pools_of(moved)
    assert [p.endpoint for p in again] == list(EPS[1:])
    assert again[0] is first[1], "pools outlive endpoint sets: warm connections are kept"
    up.sweep(time.monotonic(), live=set(EPS[1:]))
    assert up.pools_of(moved) is not again and up.pools_of(moved)[0] is first[1]
    assert EPS[0] not in up.pools
