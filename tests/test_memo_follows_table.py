"""The per-request memos (match answers, normalised targets) hold a big table's worth of paths.

Both memos start over when full. With a fixed bound, clients spread over a
table with more routes than the bound would never hit (each pass over the
paths clears the memo before coming back to a path) and every request would
pay the whole target normalisation and table walk: the 10,000-route benchmark
did exactly that. The bound follows the table instead (gateway/routing.py
``memo_limit``).
"""

from protoharness import Gateway
from proxyharness import route, table

from gateway.targets import TARGETS_MEMO_LIMIT
from gateway.routing import MEMO_CAP, MEMO_LIMIT, PATH_EXACT, Route, RouteTable, memo_limit

N = 20_000  # more than the old fixed bound (8192) of the match memo


def _routes(n: int) -> list[Route]:
    return [Route(f"bench/r-{i}", "APIEndpoint", f"/r/{i}", PATH_EXACT) for i in range(n)]


def test_memo_limit_follows_the_table_within_bounds():
    assert memo_limit(0) == MEMO_LIMIT
    assert memo_limit(10) == MEMO_LIMIT
    assert memo_limit(N) >= N
    assert memo_limit(10 * MEMO_CAP) == MEMO_CAP


def test_a_pass_over_every_route_of_a_big_table_is_answered_from_the_memo_the_second_time():
    t = RouteTable(_routes(N))
    first = [t.match("GET", "h", f"/r/{i}") for i in range(N)]
    assert all(res.route is not None and res.route.path == f"/r/{i}" for i, res in enumerate(first))
    second = [t.match("GET", "h", f"/r/{i}") for i in range(N)]
    # The very same answer objects: memo hits, not new walks of the table.
    assert all(a is b for a, b in zip(first, second))


def test_an_updated_table_sizes_its_memo_by_its_own_routes():
    small = RouteTable(_routes(10))
    big = small.updated([], _routes(N)[10:], endpoints={}, fallback=None, generation=2)
    first = [big.match("GET", "h", f"/r/{i}") for i in range(N)]
    assert all(a is big.match("GET", "h", f"/r/{i}") for i, a in enumerate(first))


def test_server_sizes_the_target_memo_by_the_table_it_serves():
    gw = Gateway(None)
    assert gw.server.targets_memo_limit == TARGETS_MEMO_LIMIT
    gw.server.swap(table([route(path="/api")], {}))
    assert gw.server.targets_memo_limit == TARGETS_MEMO_LIMIT
    gw.server.swap(RouteTable(_routes(N)))
    assert gw.server.targets_memo_limit >= N
    gw.server.swap(table([route(path="/api")], {}))
    assert gw.server.targets_memo_limit == TARGETS_MEMO_LIMIT
