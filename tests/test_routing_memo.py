"""Match memoisation never changes an answer: header/query-dependent answers are not memoised."""

import re

from gateway.routing import MEMO_LIMIT, Route, RouteTable, StringMatch


def r(name, path, **kw):
    return Route(name=name, kind="APIEndpoint", path=path, **kw)


def test_header_dependent_answers_are_not_memoised():
    beta = r("ns/beta", "/api", headers=(StringMatch("x-beta", "true"),))
    plain = r("ns/plain", "/api")
    t = RouteTable([beta, plain])
    assert t.match("GET", "h", "/api/x", {"x-beta": "true"}).route is beta
    assert t.match("GET", "h", "/api/x", {}).route is plain
    assert t.match("GET", "h", "/api/x", {"x-beta": "true"}).route is beta


def test_query_dependent_answers_are_not_memoised():
    v2 = r("ns/v2", "/api", query=(StringMatch("v", "2", re.compile("2")),))
    v1 = r("ns/v1", "/api")
    t = RouteTable([v2, v1])
    assert t.match("GET", "h", "/api", {}, "v=2").route is v2
    assert t.match("GET", "h", "/api", {}, "v=1").route is v1
    assert t.match("GET", "h", "/api", {}, "v=2").route is v2


def test_memo_is_bounded_and_answers_stay_right():
    a = r("ns/a", "/a", methods=frozenset({"GET"}))
    t = RouteTable([a])
    for i in range(MEMO_LIMIT + 10):
        assert t.match("GET", "h", f"/a/{i}").route is a
    assert len(t._memo) <= MEMO_LIMIT
    assert t.match("POST", "h", "/a/1").status == 405
    assert t.match("GET", "h", "/b").status == 404


def test_with_endpoints_keeps_answers():
    a = r("ns/a", "/a")
    t = RouteTable([a])
    t.match("GET", "h", "/a")
    t2 = t.with_endpoints({}, 2)
    assert t2.match("GET", "h", "/a").route is a
