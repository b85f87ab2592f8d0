"""The table's request memo (gateway/targets.py): a target routed once is not routed
again, and a remembered answer is never given to a request it does not fit.

Each test sends the same raw target more than once, so the second request is
answered from the memo where it may be, through the socket-free harness
(tests/protoharness.py) and a real Server.
"""

from __future__ import annotations

from protoharness import Gateway
from proxyharness import route, table

from gateway.routing import PATH_EXACT, Route, StringMatch
from gateway.targets import RoutedTarget, remember, routed


def _gateway(routes, backends=("b1", "b2")):
    gw = Gateway(None)
    bs = {name: gw.backend(name) for name in backends}
    endpoints = {f"ns/{name}:80": (b.endpoint,) for name, b in bs.items()}
    gw.server.swap(table(routes, endpoints))
    return gw


async def _get(client, target: str, host: str = "a.test", method: str = "GET", extra: str = "",
               version: str = "1.1"):
    client.send(f"{method} {target} HTTP/{version}\r\nHost: {host}\r\n{extra}\r\n".encode()
                if host is not None else f"{method} {target} HTTP/{version}\r\n{extra}\r\n".encode())
    return await client.response()


def _backend(resp) -> str | None:
    return resp.headers.get("x-backend")


async def test_the_same_target_on_another_host_is_routed_for_that_host():
    gw = _gateway([route("ns/a", "/api", backends=("ns/b1:80",), hosts=("a.test",)),
                   route("ns/b", "/api", backends=("ns/b2:80",), hosts=("b.test",))])
    async with gw:
        c = gw.client()
        for _ in range(3):
            assert _backend(await _get(c, "/api/x", "a.test")) == "b1"
            assert _backend(await _get(c, "/api/x", "b.test")) == "b2"
            assert (await _get(c, "/api/x", "c.test")).status == 404
        assert gw.server.table.request_memo  # the answers were kept


async def test_the_same_target_with_another_method_is_routed_for_that_method():
    gw = _gateway([route("ns/read", "/api", backends=("ns/b1:80",), methods=frozenset({"GET"})),
                   route("ns/write", "/api", backends=("ns/b2:80",), methods=frozenset({"POST"}))])
    async with gw:
        c = gw.client()
        for _ in range(3):
            assert _backend(await _get(c, "/api/x")) == "b1"
            assert _backend(await _get(c, "/api/x", method="POST", extra="Content-Length: 0\r\n")) == "b2"
            r = await _get(c, "/api/x", method="PUT", extra="Content-Length: 0\r\n")
            assert r.status == 405 and set(r.headers["allow"].split(", ")) == {"GET", "POST"}


async def test_a_route_that_matches_on_a_header_is_never_answered_from_the_memo():
    canary = route("ns/canary", "/api", backends=("ns/b2:80",), headers=(StringMatch("x-canary", "1"),))
    gw = _gateway([canary, route("ns/main", "/api", backends=("ns/b1:80",))])
    async with gw:
        c = gw.client()
        for _ in range(3):
            assert _backend(await _get(c, "/api/x")) == "b1"
            assert _backend(await _get(c, "/api/x", extra="X-Canary: 1\r\n")) == "b2"
        assert not gw.server.table.request_memo  # the answer depended on a header: not kept


async def test_a_new_table_routes_a_remembered_target_afresh():
    gw = _gateway([route("ns/a", "/api", backends=("ns/b1:80",))])
    async with gw:
        c = gw.client()
        assert _backend(await _get(c, "/api/x")) == "b1"
        assert _backend(await _get(c, "/api/x")) == "b1"
        gw.server.swap(table([route("ns/a", "/api", backends=("ns/b2:80",))],
                             {"ns/b1:80": (gw.backend("b1").endpoint,), "ns/b2:80": (gw.backend("b2").endpoint,)},
                             generation=2))
        assert _backend(await _get(c, "/api/x")) == "b2"
        gw.server.swap(table([], {}, generation=3))
        assert (await _get(c, "/api/x")).status == 404


async def test_absolute_form_and_a_missing_host_are_checked_every_time():
    gw = _gateway([route("ns/a", "/api", backends=("ns/b1:80",), hosts=("a.test",))])
    async with gw:
        c = gw.client()
        assert _backend(await _get(c, "/api/x")) == "b1"
        # The same path in absolute form names another host: its authority routes it.
        assert (await _get(c, "http://b.test/api/x")).status == 404
        assert _backend(await _get(c, "http://a.test/api/x", host="b.test")) == "b1"
        # HTTP/1.0 may leave Host out (no route for the empty host here); HTTP/1.1 may not.
        assert (await _get(c, "/api/x", host=None, version="1.0")).status == 404
        c2 = gw.client()
        assert (await _get(c2, "/api/x", host=None)).status == 400


async def test_a_remembered_target_still_gets_421_on_a_tls_connection_for_another_name():
    gw = _gateway([route("ns/a", "/api", backends=("ns/b1:80",))])
    async with gw:
        plain = gw.client()
        assert _backend(await _get(plain, "/api/x", "a.test")) == "b1"
        assert gw.server.table.request_memo
        tls = gw.client(scheme="https")
        tls.protocol.sni = "b.test"  # the certificate was chosen for b.test
        assert (await _get(tls, "/api/x", "a.test")).status == 421
        assert _backend(await _get(tls, "/api/x", "b.test")) == "b1"


def test_the_memo_is_shared_by_an_endpoints_update_and_starts_over_with_new_routes():
    r = Route("ns/a", "APIEndpoint", "/a", PATH_EXACT)
    t = table([r], {})
    remember(t, b"/a", RoutedTarget("GET", "h", "/a", "", b"/a", r), 10)
    assert routed(t, b"/a", "GET", "h").route is r
    assert routed(t, b"/a", "POST", "h") is None and routed(t, b"/a", "GET", "other") is None
    same_routes = t.with_endpoints({}, generation=2)
    assert same_routes.request_memo is t.request_memo
    new_routes = t.updated([], [Route("ns/b", "APIEndpoint", "/b", PATH_EXACT)], endpoints={}, fallback=None,
                           generation=3)
    assert routed(new_routes, b"/a", "GET", "h") is None


def test_the_memo_starts_over_when_full():
    r = Route("ns/a", "APIEndpoint", "/a", PATH_EXACT)
    t = table([r], {})
    for i in range(5):
        remember(t, b"/a%d" % i, RoutedTarget("GET", "h", "/a", "", b"/a", r), 3)
    assert len(t.request_memo) <= 3
    assert routed(t, b"/a4", "GET", "h") is not None
