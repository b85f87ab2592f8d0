"""Basic auth: htpasswd hashes, the verify pool, the result cache, unknown users."""

import asyncio
import base64
import hashlib
import inspect

import bcrypt
import pytest
from authkeys import b64, basic, request
from passlib.hash import apr_md5_crypt, sha256_crypt, sha512_crypt

from gateway.auth import AuthResult, BasicAuthenticator, SecretContentError, parse_htpasswd
from gateway.auth import basic as basic_mod


def bcrypt_line(user, pw, prefix=b"$2y$"):
    h = bcrypt.hashpw(pw.encode(), bcrypt.gensalt(rounds=4)).replace(b"$2b$", prefix)
    return f"{user}:{h.decode()}"


HTPASSWD = "\n".join(
    [
        "# team",
        bcrypt_line("alice", "wonderland"),
        f"bob:{sha512_crypt.using(rounds=5000).hash('builder')}",
        f"carol:{sha256_crypt.using(rounds=5000).hash('singer')}",
        f"dave:{apr_md5_crypt.hash('diver')}",
        "erin:{SHA}" + base64.b64encode(hashlib.sha1(b"engineer").digest()).decode(),
        "",
    ]
)


async def decide(auth, req) -> AuthResult:
    res = auth.authenticate(req)
    if type(res) is not AuthResult:
        res = await res
    return res


@pytest.fixture
def auth():
    return BasicAuthenticator(parse_htpasswd(HTPASSWD))


@pytest.mark.parametrize(
    "user, pw", [("alice", "wonderland"), ("bob", "builder"), ("carol", "singer"), ("dave", "diver"), ("erin", "engineer")]
)
async def test_each_hash_kind_verifies(auth, user, pw):
    res = await decide(auth, basic(user, pw))
    assert res.ok and res.consumer == user and res.forward_headers == ()
    wrong = await decide(auth, basic(user, pw + "x"))
    assert (wrong.status, wrong.outcome) == (401, "invalid")


async def test_bcrypt_2b_and_2a_prefixes(auth):
    for prefix in (b"$2b$", b"$2a$"):
        a = BasicAuthenticator(parse_htpasswd(bcrypt_line("zed", "pw", prefix)))
        assert (await decide(a, basic("zed", "pw"))).ok


async def test_missing_and_other_scheme_get_the_basic_challenge(auth):
    for req in (request({}), request({"authorization": "Bearer abc"})):
        res = await decide(auth, req)
        assert (res.status, res.outcome) == (401, "missing")
        assert res.www_authenticate == 'Basic realm="crdgate", charset="UTF-8"'


@pytest.mark.parametrize("value", ["Basic !!!notbase64", "Basic " + b64("no-colon")])
async def test_malformed_credentials_are_invalid(auth, value):
    res = await decide(auth, request({"authorization": value}))
    assert (res.status, res.outcome) == (401, "invalid")


async def test_slow_hash_goes_to_the_pool_then_the_cache(auth):
    first = auth.authenticate(basic("alice", "wonderland"))
    assert inspect.isawaitable(first)  # bcrypt never runs on the event loop
    assert (await first).ok
    second = auth.authenticate(basic("alice", "wonderland"))
    assert type(second) is AuthResult and second.ok  # served from the cache, synchronously
    # the cache key is a digest of user:password, not the password
    assert all(isinstance(k, bytes) and len(k) == 32 for k in auth.cache._data)
    assert b"wonderland" not in b"".join(auth.cache._data)


async def test_cache_expires():
    now = [1000.0]
    a = BasicAuthenticator(parse_htpasswd(HTPASSWD), cache_ttl=60, clock=lambda: now[0])
    assert (await decide(a, basic("alice", "wonderland"))).ok
    assert type(a.authenticate(basic("alice", "wonderland"))) is AuthResult
    now[0] += 61
    assert inspect.isawaitable(pending := a.authenticate(basic("alice", "wonderland")))
    await pending


async def test_unknown_user_costs_a_real_verify(auth, monkeypatch):
    calls = []
    real = basic_mod.PasswordHash.verify

    def counting(self, password):
        calls.append(self.kind)
        return real(self, password)

    monkeypatch.setattr(basic_mod.PasswordHash, "verify", counting)
    res = await decide(auth, basic("mallory", "wonderland"))
    assert (res.status, res.outcome) == (401, "invalid")
    assert calls == ["bcrypt"]  # checked against alice's hash, answer thrown away
    # the same wrong pair is then answered from the cache
    assert type(auth.authenticate(basic("mallory", "wonderland"))) is AuthResult


async def test_concurrent_identical_logins_share_one_verify(auth, monkeypatch):
    calls = []
    real = basic_mod.PasswordHash.verify
    monkeypatch.setattr(basic_mod.PasswordHash, "verify", lambda self, pw: calls.append(1) or real(self, pw))
    results = await asyncio.gather(*(decide(auth, basic("alice", "wonderland")) for _ in range(5)))
    assert all(r.ok for r in results) and len(calls) == 1


async def test_consumer_not_allowed_is_403():
    a = BasicAuthenticator(parse_htpasswd(HTPASSWD), allowed_consumers=["bob"])
    res = await decide(a, basic("erin", "engineer"))
    assert (res.status, res.outcome) == (403, "forbidden")
    assert (await decide(a, basic("bob", "builder"))).ok


def test_strip_headers():
    users = parse_htpasswd(HTPASSWD)
    assert BasicAuthenticator(users).strip_headers == (b"x-consumer", b"authorization")
    assert BasicAuthenticator(users, keep_credentials=True).strip_headers == (b"x-consumer",)


@pytest.mark.parametrize(
    "text, why",
    [
        ("", "no users"),
        ("alice", "line 1: expected user:hash"),
        ("alice:plaintext", "line 1: unsupported"),
        ("alice:$2y$04$short", "line 1: malformed bcrypt"),
        ("#c\nalice:{SHA}xx", "line 2: malformed {SHA}"),
        # Salted hashes differ at each collection: a fixed id, the same in every pytest-xdist worker.
        pytest.param(bcrypt_line("a", "x") + "\n" + bcrypt_line("a", "y"), "line 2: user 'a' appears twice",
                     id="a user twice"),
    ],
)
def test_bad_htpasswd_names_the_line(text, why):
    with pytest.raises(SecretContentError) as exc:
        parse_htpasswd(text)
    assert why in str(exc.value)
    assert "plaintext" not in str(exc.value)
