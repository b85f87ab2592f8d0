"""maxBodyBytes per route overrides the gateway's limit."""

from gateway.routing import RoutePolicy
from proxyharness import RawClient, proxy_port, request, route, start_backend, start_proxy, table


async def test_route_body_limit():
    b = await start_backend("b")
    routes = [route("ns/small", path="/small", policy=RoutePolicy(max_body_bytes=10)), route("ns/big", path="/big")]
    srv = await start_proxy(table(routes, {"ns/svc:80": (b.endpoint,)}))
    port = proxy_port(srv)
    try:
        assert (await request(port, "POST", "/small", body=b"x" * 10)).status == 200
        assert (await request(port, "POST", "/small", body=b"x" * 11)).status == 413
        assert (await request(port, "POST", "/big", body=b"x" * 5000)).status == 200
        async with RawClient(port) as c:
            await c.send(b"POST /small HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n8\r\n12345678\r\n8\r\n12345678\r\n0\r\n\r\n")
            assert (await c.response()).status == 413
    finally:
        await srv.close()
        await b.runner.cleanup()
