"""W3C trace context: an incoming traceparent is forwarded untouched; one is created only when enabled."""

import re

from proxyharness import proxy_port, request, route, start_backend, start_proxy, table

TRACEPARENT = re.compile(r"00-[0-9a-f]{32}-[0-9a-f]{16}-01")


async def test_traceparent_forwarded_and_optionally_created():
    b = await start_backend("b")
    routes = table([route(path="/")], {"ns/svc:80": (b.endpoint,)})
    srv = await start_proxy(routes)
    creating = await start_proxy(routes, create_traceparent=True)  # GatewayConfig's switch
    port = proxy_port(srv)
    try:
        incoming = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        seen = (await request(port, headers={"traceparent": incoming, "tracestate": "a=1"})).json()["headers"]
        assert seen["traceparent"] == incoming and seen["tracestate"] == "a=1"
        assert "traceparent" not in (await request(port)).json()["headers"]
        port = proxy_port(creating)
        created = (await request(port)).json()["headers"]["traceparent"]
        assert TRACEPARENT.fullmatch(created)
        assert (await request(port, headers={"traceparent": incoming})).json()["headers"]["traceparent"] == incoming
    finally:
        await srv.close()
        await creating.close()
        await b.runner.cleanup()
