"""Authentication end to end through the real process: APIKey, Basic, JWT (+JWKS), rotation, path tricks."""

from __future__ import annotations

import asyncio
import base64
import http.client
import json
import time

import aiohttp
import bcrypt
import jwt as pyjwt
import pytest
from aiohttp import web

from authkeys import jwk, public_pem, rsa_key, token
from gatewayproc import GatewayProcess, endpoint_manifests
from polling import eventually
from proxyharness import free_port, start_backend


def b64(s: str | bytes) -> str:
    return base64.b64encode(s.encode() if isinstance(s, str) else s).decode()


def secret(name: str, data: dict[str, str]) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": "shop"},
                       "data": {k: b64(v) for k, v in data.items()}})


def endpoint(name: str, path: str, auth: dict | None, **spec) -> str:
    body = {"path": path, "backendService": "app"}
    if auth is not None:
        body["auth"] = auth
    body.update(spec)
    return json.dumps({"apiVersion": "crdgate.io/v1", "kind": "APIEndpoint",
                       "metadata": {"name": name, "namespace": "shop"}, "spec": body})


@pytest.fixture
async def world(tmp_path):
    app = await start_backend("app")
    jwks_port = free_port()
    jwks_doc = {"keys": [jwk(rsa_key(1), kid="k1")]}
    jwks_hits = {"n": 0}

    async def serve_jwks(request):
        jwks_hits["n"] += 1
        return web.json_response(jwks_doc)

    jwks_app = web.Application()
    jwks_app.router.add_get("/jwks.json", serve_jwks)
    jwks_runner = web.AppRunner(jwks_app, handle_signals=False)
    await jwks_runner.setup()
    await web.TCPSite(jwks_runner, "127.0.0.1", jwks_port).start()

    htpasswd = "carol:" + bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=4)).decode() + "\n"
    (tmp_path / "svc.yaml").write_text(endpoint_manifests("shop", "app", app.port))
    (tmp_path / "secrets.json").write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": [
        json.loads(secret("api-keys", {"alice": "key-alice-123", "bob": "key-bob-456"})),
        json.loads(secret("users", {"htpasswd": htpasswd})),
        json.loads(secret("jwt-pub", {"publicKey": public_pem(rsa_key(0)).decode()})),
    ]}))
    (tmp_path / "routes.json").write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": [json.loads(x) for x in (
        endpoint("open", "/", None),
        endpoint("admin", "/admin", {"type": "APIKey", "secretRef": {"name": "api-keys"}}),
        endpoint("alice-only", "/alice", {"type": "APIKey", "secretRef": {"name": "api-keys"}, "allowedConsumers": ["alice"]}),
        endpoint("basic", "/basic", {"type": "Basic", "secretRef": {"name": "users"}}),
        endpoint("jwt", "/jwt", {"type": "JWT", "secretRef": {"name": "jwt-pub"},
                                 "jwt": {"issuer": "https://issuer.test", "audiences": ["shop"], "forwardClaims": {"tier": "X-Tier"}}}),
        endpoint("jwks", "/jwks", {"type": "JWT", "jwt": {"jwksURL": f"http://127.0.0.1:{jwks_port}/jwks.json"}}),
        endpoint("missing-secret", "/broken", {"type": "APIKey", "secretRef": {"name": "nope"}}),
    )]}))
    gw = GatewayProcess(tmp_path, "--jwks-refresh-floor", "0.2")
    try:
        await asyncio.get_running_loop().run_in_executor(None, gw.wait_ready)
        yield gw, tmp_path, app, jwks_doc, jwks_hits
    finally:
        gw.close()
        await app.runner.cleanup()
        await jwks_runner.cleanup()


async def call(gw, path, headers=None, method="GET"):
    async with aiohttp.ClientSession() as s:
        async with s.request(method, gw.base + path, headers=headers or {}, allow_redirects=False) as r:
            return r.status, await r.read(), r.headers


async def test_api_key(world):
    gw, _, app, _, _ = world
    status, body, h = await call(gw, "/admin/x")
    assert status == 401 and "WWW-Authenticate" in h
    assert (await call(gw, "/admin/x", {"X-API-Key": "wrong"}))[0] == 401
    status, body, _ = await call(gw, "/admin/x", {"X-API-Key": "key-alice-123", "X-Consumer": "mallory"})
    assert status == 200, body
    seen = json.loads(body)["headers"]
    assert seen["x-consumer"] == "alice", "the consumer header is ours, never the client's"
    assert "x-api-key" not in seen, "credentials are stripped before forwarding"
    assert (await call(gw, "/alice", {"X-API-Key": "key-bob-456"}))[0] == 403
    assert (await call(gw, "/alice", {"X-API-Key": "key-alice-123"}))[0] == 200


async def test_basic(world):
    gw, _, _, _, _ = world
    status, _, h = await call(gw, "/basic")
    assert status == 401 and h["WWW-Authenticate"].startswith("Basic")
    assert (await call(gw, "/basic", {"Authorization": "Basic " + b64("carol:wrong")}))[0] == 401
    assert (await call(gw, "/basic", {"Authorization": "Basic " + b64("nobody:s3cret")}))[0] == 401
    status, body, _ = await call(gw, "/basic", {"Authorization": "Basic " + b64("carol:s3cret")})
    assert status == 200
    assert json.loads(body)["headers"]["x-consumer"] == "carol"
    assert "authorization" not in json.loads(body)["headers"]


async def test_jwt_from_secret(world):
    gw, _, _, _, _ = world
    good = token(rsa_key(0), iss="https://issuer.test", aud="shop", tier="gold")
    status, body, _ = await call(gw, "/jwt", {"Authorization": "Bearer " + good})
    assert status == 200, body
    seen = json.loads(body)["headers"]
    assert seen["x-tier"] == "gold" and seen["x-consumer"] == "alice"
    now = int(time.time())
    for bad in (
        token(rsa_key(0), iss="https://issuer.test", aud="shop", exp=now - 3600),   # expired
        token(rsa_key(0), iss="https://issuer.test", aud="shop", nbf=now + 3600),   # not yet valid
        token(rsa_key(0), iss="https://evil.test", aud="shop"),                     # wrong issuer
        token(rsa_key(0), iss="https://issuer.test", aud="other"),                  # wrong audience
        token(rsa_key(5), iss="https://issuer.test", aud="shop"),                   # wrong key
        pyjwt.encode({"sub": "x", "iss": "https://issuer.test", "aud": "shop"}, None, algorithm="none"),
    ):
        status, _, h = await call(gw, "/jwt", {"Authorization": "Bearer " + bad})
        assert status == 401, bad
        assert h["WWW-Authenticate"].startswith("Bearer")
    # Algorithm confusion: HS256 signed with the RSA public key as the HMAC secret.
    import hmac, hashlib
    header = base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT"}').rstrip(b"=")
    payload = base64.urlsafe_b64encode(json.dumps({"sub": "x", "iss": "https://issuer.test", "aud": "shop",
                                                   "exp": now + 300}).encode()).rstrip(b"=")
    sig = base64.urlsafe_b64encode(hmac.new(public_pem(rsa_key(0)), header + b"." + payload, hashlib.sha256).digest()).rstrip(b"=")
    forged = (header + b"." + payload + b"." + sig).decode()
    assert (await call(gw, "/jwt", {"Authorization": "Bearer " + forged}))[0] == 401


async def test_jwks_unknown_kid_triggers_refresh(world):
    gw, _, _, jwks_doc, hits = world
    assert (await call(gw, "/jwks", {"Authorization": "Bearer " + token(rsa_key(1), kid="k1")}))[0] == 200
    # The issuer rotates: a token signed by a new key with a new kid.
    jwks_doc["keys"].append(jwk(rsa_key(2), kid="k2"))
    before = hits["n"]
    await asyncio.sleep(0.3)  # past the refresh floor
    status, body, _ = await call(gw, "/jwks", {"Authorization": "Bearer " + token(rsa_key(2), kid="k2")})
    assert status == 200, body
    assert hits["n"] == before + 1


async def test_secret_rotation_takes_effect_without_restart(world):
    gw, root, _, _, _ = world
    assert (await call(gw, "/admin", {"X-API-Key": "key-alice-123"}))[0] == 200
    doc = json.loads((root / "secrets.json").read_text())
    doc["items"][0] = json.loads(secret("api-keys", {"alice": "key-alice-NEW"}))
    (root / "secrets.json").write_text(json.dumps(doc))

    async def rotated():
        return (await call(gw, "/admin", {"X-API-Key": "key-alice-NEW"}))[0] == 200

    await eventually(rotated, 5, "the new key to be accepted")
    assert (await call(gw, "/admin", {"X-API-Key": "key-alice-123"}))[0] == 401


def keep_alive_get(conn: http.client.HTTPConnection, path: str, headers: dict) -> tuple[int, bytes]:
    conn.request("GET", path, headers=headers)
    r = conn.getresponse()
    return r.status, r.read()


async def test_keep_alive_connection_is_checked_again_on_every_key_and_after_rotation(world):
    gw, root, _, _, _ = world
    host, port = gw.base.rsplit("/", 1)[1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    run = asyncio.get_running_loop().run_in_executor

    async def get(key: str) -> tuple[int, str | None]:
        status, body = await run(None, keep_alive_get, conn, "/admin", {"X-API-Key": key})
        return status, json.loads(body)["headers"].get("x-consumer") if status == 200 else None

    try:
        assert await get("key-alice-123") == (200, "alice")
        sock = conn.sock
        assert await get("key-alice-123") == (200, "alice")
        for wrong in ("key-alice-12", "key-alice-1234", "key-alice-124", ""):
            assert (await get(wrong))[0] == 401
        assert await get("key-bob-456") == (200, "bob")
        assert await get("key-alice-123") == (200, "alice")
        doc = json.loads((root / "secrets.json").read_text())
        doc["items"][0] = json.loads(secret("api-keys", {"alice": "key-alice-NEW"}))
        (root / "secrets.json").write_text(json.dumps(doc))

        async def rotated():
            return (await get("key-alice-NEW"))[0] == 200

        await eventually(rotated, 5, "the new key to be accepted")
        assert await get("key-alice-NEW") == (200, "alice")
        assert (await get("key-alice-123"))[0] == 401, "a revoked key is refused on a connection that used it"
        assert (await get("key-bob-456"))[0] == 401
        assert conn.sock is sock, "all on one keep-alive connection"
    finally:
        conn.close()


async def test_consumer_header_survives_a_client_connection_option_naming_it(world):
    gw, _, _, _, _ = world
    host, port = gw.base.rsplit("/", 1)[1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    try:
        status, body = await asyncio.get_running_loop().run_in_executor(
            None, keep_alive_get, conn, "/admin",
            {"X-API-Key": "key-alice-123", "X-Consumer": "mallory", "Connection": "keep-alive, X-Consumer"})
    finally:
        conn.close()
    assert status == 200
    seen = json.loads(body)["headers"]
    # Connection options name the client's own hop-by-hop fields; the consumer
    # header is the gateway's and goes upstream whatever the client lists.
    assert seen["x-consumer"] == "alice"
    assert "x-api-key" not in seen


async def test_missing_secret_fails_closed(world):
    gw, _, app, _, _ = world
    n = len(app.seen)
    status, body, _ = await call(gw, "/broken", {"X-API-Key": "anything"})
    assert status == 503
    assert len(app.seen) == n
    gw.wait_log("nope")


TRICKS = ["//admin", "/./admin", "/%61dmin", "/x/../admin", "/x/%2e%2e/admin", "/x/%2E%2E/admin", "/admin/",
          "/admin/./", "/%61%64%6d%69%6e/x", "/admin%2f", "/admin;x=1", "/admin/%2e"]


async def test_path_tricks_never_reach_a_protected_route_without_auth(world):
    gw, _, app, _, _ = world
    n = len(app.seen)
    for path in TRICKS:
        # aiohttp would normalise the path itself; send the bytes as they are.
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
        writer.write(f"GET {path} HTTP/1.1\r\nHost: shop.test\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        status_line = await reader.readline()
        writer.close()
        assert status_line.split()[1] in (b"401", b"400"), (path, status_line)
    assert len(app.seen) == n
