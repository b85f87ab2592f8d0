"""Hop-by-hop headers are dropped; X-Forwarded-*/Forwarded are ours unless the peer is trusted."""

import ipaddress

from proxyharness import proxy_port, request, route, start_backend, start_proxy, table


async def _gw(trusted=()):
    b = await start_backend("b1")
    srv = await start_proxy(table([route(path="/")], {"ns/svc:80": (b.endpoint,)}),
                            trusted_proxies=tuple(ipaddress.ip_network(t) for t in trusted))
    return b, srv, proxy_port(srv)


async def test_hop_by_hop_and_connection_listed_headers_are_stripped():
    b, srv, port = await _gw()
    try:
        r = await request(port, headers={
            "Connection": "close, X-Secret-Hop", "X-Secret-Hop": "1", "Keep-Alive": "timeout=5",
            "TE": "trailers", "Proxy-Authorization": "Basic abc", "Upgrade-Insecure-Requests": "1", "Trailer": "X",
        })
        seen = r.json()["headers"]
        for name in ("x-secret-hop", "keep-alive", "te", "proxy-authorization", "trailer"):
            assert name not in seen, name
        assert seen["upgrade-insecure-requests"] == "1"  # an end-to-end header that merely looks similar
    finally:
        await srv.close()
        await b.runner.cleanup()


async def test_spoofed_forwarding_headers_from_untrusted_peers_are_replaced():
    b, srv, port = await _gw()
    try:
        r = await request(port, headers={
            "X-Forwarded-For": "6.6.6.6", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "evil",
            "Forwarded": "for=6.6.6.6", "X-Real-IP": "6.6.6.6",
        })
        seen = r.json()["headers"]
        assert seen["x-forwarded-for"] == "127.0.0.1"
        assert seen["x-forwarded-proto"] == "http"
        assert seen["x-forwarded-host"] == "example.test"
        assert seen["forwarded"] == 'for=127.0.0.1;host="example.test";proto=http'
        assert "x-real-ip" not in seen
    finally:
        await srv.close()
        await b.runner.cleanup()


async def test_trusted_peer_forwarding_headers_are_extended():
    b, srv, port = await _gw(trusted=["127.0.0.0/8"])
    try:
        r = await request(port, headers={"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https",
                                          "Forwarded": "for=203.0.113.9;proto=https"})
        seen = r.json()["headers"]
        assert seen["x-forwarded-for"] == "203.0.113.9, 127.0.0.1"
        assert seen["x-forwarded-proto"] == "https"
        assert seen["forwarded"].startswith("for=203.0.113.9;proto=https, for=127.0.0.1")
    finally:
        await srv.close()
        await b.runner.cleanup()


async def test_request_id_is_generated_or_kept():
    b, srv, port = await _gw()
    try:
        generated = (await request(port)).json()["headers"]["x-request-id"]
        assert len(generated) == 24
        kept = (await request(port, headers={"X-Request-Id": "abc-123"})).json()["headers"]["x-request-id"]
        assert kept == "abc-123"
    finally:
        await srv.close()
        await b.runner.cleanup()


async def test_response_hop_by_hop_headers_are_stripped():
    from aiohttp import web

    async def hop(request, body):
        return web.Response(text="ok", headers={"Connection": "X-Internal", "X-Internal": "1", "Keep-Alive": "timeout=9"})

    b = await start_backend("b1", hop)
    srv = await start_proxy(table([route(path="/")], {"ns/svc:80": (b.endpoint,)}))
    try:
        r = await request(proxy_port(srv))
        assert "x-internal" not in r.headers
        assert "keep-alive" not in r.headers
        assert r.body == b"ok"
    finally:
        await srv.close()
        await b.runner.cleanup()


def test_generated_request_ids_are_distinct_and_fixed_width_across_the_table_boundary():
    # The low 3 hex digits come from a table, the rest are formatted every 4,096 ids.
    from gateway import wire

    ids = [wire.next_request_id() for _ in range(2 * 4096 + 10)]
    assert len(set(ids)) == len(ids)
    assert {len(i) for i in ids} == {24}
    assert all(i.startswith(wire.RID_PREFIX) for i in ids)
    counters = [int(i[12:], 16) for i in ids]
    assert counters == list(range(counters[0], counters[0] + len(ids)))
