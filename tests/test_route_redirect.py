"""Redirects answered by the gateway: scheme, host, port, path, status."""

import pytest

from gateway.routing import Redirect, RoutePolicy
from proxyharness import proxy_port, request, route, start_proxy, table


@pytest.mark.parametrize("redirect,path,location,status", [
    (Redirect(scheme="https", status_code=301), "/old/x?a=1", "https://shop.test/old/x?a=1", 301),
    (Redirect(hostname="new.test", status_code=302), "/old/x", "http://new.test:8080/old/x", 302),
    (Redirect(hostname="new.test", port=9000, status_code=307), "/old", "http://new.test:9000/old", 307),
    (Redirect(path_type="ReplacePrefixMatch", replace_prefix_match="/new", status_code=308), "/old/x", "http://shop.test:8080/new/x", 308),
    (Redirect(path_type="ReplaceFullPath", replace_full_path="/landing", status_code=303), "/old/x", "http://shop.test:8080/landing", 303),
    # Gateway API: only the status code set: the same scheme, host, port, path and query.
    (Redirect(status_code=303), "/old/x?a=1&b=2", "http://shop.test:8080/old/x?a=1&b=2", 303),
])
async def test_redirect(redirect, path, location, status):
    srv = await start_proxy(table([route(path="/old", backends=(), policy=RoutePolicy(redirect=redirect))], {}))
    try:
        r = await request(proxy_port(srv), path=path, host="shop.test:8080")
        assert r.status == status
        assert r.headers["location"] == location
        assert r.body == b""
    finally:
        await srv.close()
