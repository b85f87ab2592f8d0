"""The proxy never writes configuration bytes that would split a head (last line of defence).

The compiler refuses CR, LF, spaces and control characters in every value that goes into a
request line or a header (tests/test_crd_agreement.py); these tables are built by hand to
get past it, as a compiler bug would. The gateway must answer 500/502 with its JSON body and
log it, and the bytes must reach neither the client nor the upstream.
"""

import logging

from gateway.routing import PATH_EXACT, HeaderModifier, Redirect, Rewrite, RoutePolicy
from proxyharness import proxy_port, request, route, start_backend, start_proxy, table

SMUGGLE = "/admin HTTP/1.1\r\nHost: internal\r\n\r\nGET /smuggled"


async def _through_proxy(policy, path="/a", backend_handler=None, **route_kw):
    b = await start_backend("b", backend_handler)
    srv = await start_proxy(table([route(path="/a", policy=policy, **route_kw)], {"ns/svc:80": (b.endpoint,)}))
    try:
        return await request(proxy_port(srv), path=path, host="shop.test"), b
    finally:
        await srv.close()
        await b.runner.cleanup()


async def test_redirect_path_with_crlf_is_not_written_into_location(caplog):
    pol = RoutePolicy(redirect=Redirect(path_type="ReplaceFullPath", replace_full_path="/x\r\nSet-Cookie: session=evil"))
    with caplog.at_level(logging.ERROR, logger="crdgate.proxy"):
        r, _ = await _through_proxy(pol, backends=())
    assert r.status == 500
    assert "set-cookie" not in r.headers and "location" not in r.headers
    assert r.json()["status"] == 500
    assert any("refused to write" in rec.getMessage() and "ns/r" in rec.getMessage() for rec in caplog.records)


async def test_redirect_hostname_with_crlf_is_not_written_into_location():
    r, _ = await _through_proxy(RoutePolicy(redirect=Redirect(hostname="b.test\r\nSet-Cookie: x=1")), backends=())
    assert r.status == 500
    assert "set-cookie" not in r.headers and "location" not in r.headers


async def test_rewritten_path_cannot_smuggle_a_request_upstream(caplog):
    pol = RoutePolicy(rewrite=Rewrite(path_type="ReplaceFullPath", replace_full_path=SMUGGLE))
    with caplog.at_level(logging.ERROR, logger="crdgate.proxy"):
        r, backend = await _through_proxy(pol, path_type=PATH_EXACT)
    assert r.status == 502
    assert r.json()["status"] == 502
    assert backend.seen == []  # not one byte of it went upstream
    assert any("refused to write" in rec.getMessage() for rec in caplog.records)


async def test_rewritten_host_with_crlf_is_not_sent_upstream():
    r, backend = await _through_proxy(RoutePolicy(rewrite=Rewrite(hostname="internal\r\nX-Evil: 1")))
    assert r.status == 502
    assert backend.seen == []


async def test_request_header_modifier_with_crlf_is_not_sent_upstream():
    r, backend = await _through_proxy(RoutePolicy(request_headers=HeaderModifier(set=(("X-A", "1\r\nX-Evil: 1"),))))
    assert r.status == 502
    assert backend.seen == []


async def test_response_header_modifier_with_crlf_is_not_sent_to_the_client():
    r, _ = await _through_proxy(RoutePolicy(response_headers=HeaderModifier(add=(("X-A", "1\r\nSet-Cookie: x=1"),))))
    assert r.status == 502
    assert "set-cookie" not in r.headers and "x-a" not in r.headers


async def test_a_clean_rewrite_still_goes_through():
    pol = RoutePolicy(rewrite=Rewrite(path_type="ReplaceFullPath", replace_full_path="/v2/%7Eadmin", hostname="internal"))
    r, backend = await _through_proxy(pol, path="/a?x=1", path_type=PATH_EXACT)
    assert r.status == 200
    assert r.json()["path"] == "/v2/%7Eadmin?x=1"
    assert r.json()["headers"]["host"] == "internal"
