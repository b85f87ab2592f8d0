"""Credentials never reach the backend: the configured query parameter and the
credentials header are both removed, whichever of them authenticated."""

import pytest

from authkeys import public_pem, rsa_key, token
from gateway.auth import APIKeyAuthenticator, JWTAuthenticator, parse_pem
from gateway.routing import HeaderModifier, RoutePolicy
from polling import eventually
from proxyharness import RawClient, proxy_port, route, start_backend, start_proxy, table

KEY = "alice-key-0123456789"
TOKEN = token(rsa_key(), iss="https://issuer.test", sub="alice")


def apikey(**kw) -> APIKeyAuthenticator:
    return APIKeyAuthenticator({"alice": KEY}, query_param="api_key", **kw)


def jwt_auth(**kw) -> JWTAuthenticator:
    return JWTAuthenticator(parse_pem(public_pem(rsa_key())), query_param="access_token", **kw)


@pytest.fixture
async def gw():
    b = await start_backend("b")
    modifiers = HeaderModifier(set=(("X-Gateway", "crdgate"),))
    routes = [
        route("ns/key", path="/key", policy=RoutePolicy(auth=apikey())),
        # The other way to the upstream head: request header modifiers on top of auth.
        route("ns/key-mod", path="/key-mod", policy=RoutePolicy(auth=apikey(), request_headers=modifiers)),
        route("ns/key-kept", path="/key-kept", policy=RoutePolicy(auth=apikey(keep_credentials=True))),
        route("ns/jwt", path="/jwt", policy=RoutePolicy(auth=jwt_auth())),
    ]
    srv = await start_proxy(table(routes, {"ns/svc:80": (b.endpoint,)}))
    yield b, proxy_port(srv)
    await srv.close()
    await b.runner.cleanup()


async def get(port: int, target: str, headers: dict[str, str], times: int = 1):
    """``times`` requests on one keep-alive connection (the second is answered from the connection's memo)."""
    head = f"GET {target} HTTP/1.1\r\nHost: a\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    out = []
    async with RawClient(port) as c:
        for _ in range(times):
            await c.send(head.encode())
            out.append(await c.response())
    return out


@pytest.mark.parametrize("path", ["/key", "/key-mod"])
@pytest.mark.parametrize("query", ["api_key=" + KEY, "api%5Fkey=" + KEY, "a=1&api_key=wrong&b=2", "api_key"])
async def test_api_key_in_header_and_query_reaches_the_backend_in_neither(gw, path, query):
    b, port = gw
    for r in await get(port, f"{path}?{query}", {"X-API-Key": KEY}, times=2):
        assert r.status == 200, r.body
    for _, path_qs, headers, _ in b.seen:
        assert "api_key" not in path_qs and "api%5Fkey" not in path_qs, path_qs
        assert KEY not in path_qs and "wrong" not in path_qs
        headers = {k.lower(): v for k, v in headers.items()}
        assert "x-api-key" not in headers and headers["x-consumer"] == "alice"
    if query.startswith("a=1"):
        assert b.seen[0][1] == f"{path}?a=1&b=2", "other parameters are kept, in order"


async def test_api_key_in_query_alone_is_removed_however_its_name_is_spelled(gw):
    b, port = gw
    (r,) = await get(port, f"/key?x=1&api%5Fkey={KEY}&y=%41", {})
    assert r.status == 200
    assert b.seen[-1][1] == "/key?x=1&y=%41"
    # keepCredentials keeps both, as configured
    (r,) = await get(port, f"/key-kept?api_key={KEY}", {"X-API-Key": KEY})
    assert r.status == 200
    _, path_qs, headers, _ = b.seen[-1]
    assert path_qs == f"/key-kept?api_key={KEY}" and {k.lower(): v for k, v in headers.items()}["x-api-key"] == KEY


@pytest.mark.parametrize("query", ["access_token=" + TOKEN, "access_token=not-a-token", "access%5Ftoken=x&y=2"],
                         ids=["same-token", "other-value", "encoded-name"])
async def test_jwt_in_header_and_query_reaches_the_backend_in_neither(gw, query):
    b, port = gw
    for r in await get(port, f"/jwt?{query}", {"Authorization": "Bearer " + TOKEN}, times=2):
        assert r.status == 200, r.body
    for _, path_qs, headers, _ in b.seen:
        assert "token" not in path_qs and TOKEN not in path_qs, path_qs
        assert "authorization" not in {k.lower() for k in headers}


async def test_the_mirror_sees_no_credentials_either():
    from gateway.routing import BackendRef, Mirror

    main, shadow = await start_backend("main"), await start_backend("shadow")
    pol = RoutePolicy(auth=apikey(), mirror=Mirror(BackendRef("ns/shadow:80"), 100.0))
    srv = await start_proxy(table([route(path="/", policy=pol)],
                                  {"ns/svc:80": (main.endpoint,), "ns/shadow:80": (shadow.endpoint,)}))
    try:
        (r,) = await get(proxy_port(srv), f"/m?api_key={KEY}&x=1", {"X-API-Key": KEY, "X-Consumer": "mallory"})
        assert r.status == 200
        await eventually(lambda: shadow.seen, 5, "the mirrored request")
        for seen in (main.seen, shadow.seen):
            (_, path_qs, headers, _), = seen
            headers = {k.lower(): v for k, v in headers.items()}
            assert path_qs == "/m?x=1"
            assert "x-api-key" not in headers and headers["x-consumer"] == "alice"
    finally:
        await srv.close()
        await main.runner.cleanup()
        await shadow.runner.cleanup()
