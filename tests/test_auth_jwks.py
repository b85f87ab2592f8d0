"""JWT with a JWKS URL: fetch on first use, refresh on unknown kid with a floor,
background refresh after the TTL, failures. The JWKS server is a loopback
aiohttp app; time is a fake clock, so nothing sleeps."""

import asyncio
import inspect

import pytest
from aiohttp import web
from authkeys import bearer, ec_key, jwk, jwks, rsa_key, token

from gateway.auth import AuthResult, JWTAuthenticator, RemoteJWKS


class JWKSServer:
    def __init__(self):
        self.document = jwks(jwk(rsa_key(), "k1"))
        self.status = 200
        self.hits = 0

    async def handle(self, request):
        self.hits += 1
        return web.Response(text=self.document, status=self.status, content_type="application/json")


@pytest.fixture
async def idp(aiohttp_server):
    state = JWKSServer()
    app = web.Application()
    app.router.add_get("/jwks", state.handle)
    server = await aiohttp_server(app, host="127.0.0.1")
    state.url = str(server.make_url("/jwks"))
    return state


@pytest.fixture
def clock():
    return [1000.0]


def make(idp, clock, **kw):
    remote = RemoteJWKS(idp.url, ttl=300, refresh_floor=10, timeout=2, clock=lambda: clock[0])
    return JWTAuthenticator(remote, **kw), remote


async def decide(auth, req) -> AuthResult:
    res = auth.authenticate(req)
    return res if type(res) is AuthResult else await res


async def test_first_request_fetches_then_known_keys_are_synchronous(idp, clock):
    auth, remote = make(idp, clock)
    first = auth.authenticate(bearer(token(rsa_key(), kid="k1")))
    assert inspect.isawaitable(first)
    assert (await first).ok
    res = auth.authenticate(bearer(token(rsa_key(), kid="k1", jti="2")))
    assert type(res) is AuthResult and res.ok
    assert idp.hits == 1 and remote.fetches == 1


async def test_unknown_kid_refetches_and_succeeds(idp, clock):
    auth, _ = make(idp, clock)
    assert (await decide(auth, bearer(token(rsa_key(), kid="k1")))).ok
    idp.document = jwks(jwk(rsa_key(), "k1"), jwk(ec_key(), "k2"))  # the IdP rotates in a key
    clock[0] += 11
    res = auth.authenticate(bearer(token(ec_key(), alg="ES256", kid="k2")))
    assert inspect.isawaitable(res)
    assert (await res).ok
    assert idp.hits == 2


async def test_refresh_floor_limits_refetches_on_unknown_kids(idp, clock):
    auth, remote = make(idp, clock)
    assert (await decide(auth, bearer(token(rsa_key(), kid="k1")))).ok
    clock[0] += 11
    assert (await decide(auth, bearer(token(rsa_key(), kid="made-up-1")))).outcome == "invalid"
    assert idp.hits == 2
    clock[0] += 3  # within the floor of the last fetch
    res = auth.authenticate(bearer(token(rsa_key(), kid="made-up-2")))
    assert type(res) is AuthResult and res.outcome == "invalid"
    assert idp.hits == 2 and remote.fetches == 2


async def test_concurrent_unknown_kids_share_one_fetch(idp, clock):
    auth, _ = make(idp, clock)
    results = await asyncio.gather(*(decide(auth, bearer(token(rsa_key(), kid="k1", jti=str(i)))) for i in range(5)))
    assert all(r.ok for r in results)
    assert idp.hits == 1


async def test_ttl_refresh_runs_in_background_and_keeps_serving(idp, clock):
    auth, remote = make(idp, clock)
    assert (await decide(auth, bearer(token(rsa_key(), kid="k1")))).ok
    idp.document = jwks(jwk(ec_key(), "k2"))  # k1 retired
    clock[0] += 301
    res = auth.authenticate(bearer(token(rsa_key(), kid="k1", jti="x")))
    assert type(res) is AuthResult and res.ok  # served from the stale set at once
    assert remote._inflight is not None
    await asyncio.shield(remote._inflight)
    assert idp.hits == 2
    assert (await decide(auth, bearer(token(rsa_key(), kid="k1", jti="y")))).outcome == "invalid"
    assert (await decide(auth, bearer(token(ec_key(), alg="ES256", kid="k2")))).ok


async def test_unreachable_jwks_before_any_keys_is_503(idp, clock):
    idp.status = 500
    auth, remote = make(idp, clock)
    res = await decide(auth, bearer(token(rsa_key(), kid="k1")))
    assert (res.status, res.outcome) == (503, "error")
    assert "HTTP 500" in remote.last_error
    res = await decide(auth, bearer(token(rsa_key(), kid="k1", jti="2")))
    assert res.status == 503 and idp.hits == 1  # the floor holds for failures too
    idp.status = 200
    clock[0] += 10
    assert (await decide(auth, bearer(token(rsa_key(), kid="k1", jti="3")))).ok


async def test_failed_refresh_keeps_the_last_good_keys(idp, clock):
    auth, remote = make(idp, clock)
    assert (await decide(auth, bearer(token(rsa_key(), kid="k1")))).ok
    idp.document = "not json"
    clock[0] += 11
    assert (await decide(auth, bearer(token(rsa_key(), kid="other")))).outcome == "invalid"
    assert remote.last_error is not None
    assert (await decide(auth, bearer(token(rsa_key(), kid="k1", jti="2")))).ok


async def test_symmetric_keys_from_a_url_are_ignored(idp, clock):
    secret = b"x" * 32
    idp.document = '{"keys": [{"kty": "oct", "kid": "h1", "k": "eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHg"}]}'
    auth, _ = make(idp, clock)
    res = await decide(auth, bearer(token(secret, alg="HS256", kid="h1")))
    assert res.status == 503  # no usable key was ever fetched


async def test_secret_keys_first_then_the_url(idp, clock):
    from authkeys import public_pem

    from gateway.auth import parse_pem

    remote = RemoteJWKS(idp.url, refresh_floor=10, clock=lambda: clock[0])
    auth = JWTAuthenticator(parse_pem(public_pem(ec_key())), remote=remote)
    res = auth.authenticate(bearer(token(ec_key(), alg="ES256")))
    assert type(res) is AuthResult and res.ok and idp.hits == 0  # the Secret's key: no fetch
    assert (await decide(auth, bearer(token(rsa_key(), kid="k1")))).ok
    assert idp.hits == 1


async def test_secret_keys_do_not_wait_for_the_url_but_start_its_fetch(idp, clock):
    from authkeys import public_pem

    from gateway.auth import parse_pem

    idp.document = jwks(jwk(ec_key(1)))  # the URL's key has no kid either
    remote = RemoteJWKS(idp.url, refresh_floor=10, clock=lambda: clock[0])
    auth = JWTAuthenticator(parse_pem(public_pem(ec_key(0))), remote=remote)
    # The Secret's ES256 key is tried at once (and fails); the URL is fetched meanwhile.
    res = auth.authenticate(bearer(token(ec_key(1), alg="ES256")))
    assert type(res) is AuthResult and res.outcome == "invalid"
    assert remote._inflight is not None
    await asyncio.shield(remote._inflight)
    assert (await decide(auth, bearer(token(ec_key(1), alg="ES256", jti="2")))).ok
    assert idp.hits == 1
