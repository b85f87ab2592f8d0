"""controller/authbuild.py: spec + Secrets -> authenticator or status error; memoisation."""

import gc
import hashlib

import bcrypt
import pytest
from authkeys import b64, ec_key, jwk, jwks, public_pem, request, rsa_key, secret

from controller.authbuild import AuthDefaults, build_auth
from controller.store import SECRET, Snapshot
from gateway.auth import APIKeyAuthenticator, BasicAuthenticator, JWTAuthenticator, UnavailableAuthenticator
from gateway.auth.jwks import REFRESH_FLOOR


def snap(*secrets) -> Snapshot:
    return Snapshot({SECRET: {f"{s['metadata']['namespace']}/{s['metadata']['name']}": s for s in secrets}})


def apikey_spec(**kw):
    return {"type": "APIKey", "secretRef": {"name": "keys"}, **kw}


KEYS = secret("keys", data={"alice": "alice-key-0123456789", "bob": "sha256:" + hashlib.sha256(b"b").hexdigest()})


def test_no_auth():
    assert build_auth(None, False, "shop", snap()) == (None, None)


def test_apikey_from_secret():
    auth, err = build_auth(apikey_spec(header="X-Key", allowedConsumers=["alice"]), False, "shop", snap(KEYS))
    assert err is None and isinstance(auth, APIKeyAuthenticator)
    assert auth.authenticate(request({"x-key": "alice-key-0123456789"})).ok
    assert auth.authenticate(request({"x-key": "b"})).status == 403


def test_unset_fields_may_be_spelled_none():
    spec = apikey_spec(header=None, queryParam=None, allowedConsumers=None, jwt=None)
    auth, err = build_auth(spec, False, "shop", snap(KEYS))
    assert err is None and auth.header == "X-API-Key" and auth.query_param is None


def test_string_data_is_accepted_and_wins():
    s = secret("keys", data={"alice": "old-key-000000"}, string_data={"alice": "new-key-111111"})
    auth, err = build_auth(apikey_spec(), False, "shop", snap(s))
    assert err is None
    assert auth.authenticate(request({"x-api-key": "new-key-111111"})).ok
    assert not auth.authenticate(request({"x-api-key": "old-key-000000"})).ok


def test_secret_in_another_namespace():
    s = secret("keys", namespace="security", data={"svc": "svc-key-000000"})
    auth, err = build_auth(apikey_spec(secretRef={"name": "keys", "namespace": "security"}), False, "shop", snap(s))
    assert err is None and auth.authenticate(request({"x-api-key": "svc-key-000000"})).ok


def test_missing_secret_fails_closed_with_503_and_names_it():
    auth, err = build_auth(apikey_spec(), False, "shop", snap())
    assert err == ("SecretNotFound", "Secret shop/keys not found (spec.auth.secretRef)")
    assert isinstance(auth, UnavailableAuthenticator)
    res = auth.authenticate(request({"x-api-key": "anything"}))
    assert (res.ok, res.status, res.outcome, res.message) == (False, 503, "error", "auth unavailable")


def test_bad_base64_is_invalid_secret():
    s = secret("keys")
    s["data"] = {"alice": "%%%not-base64"}
    auth, err = build_auth(apikey_spec(), False, "shop", snap(s))
    assert err == ("InvalidSecret", "Secret shop/keys: data.alice is not valid base64")
    assert auth.authenticate(request({})).status == 503


def test_basic_without_htpasswd_key_is_invalid_secret():
    s = secret("users", data={"passwords": "x"})
    auth, err = build_auth({"type": "Basic", "secretRef": {"name": "users"}}, False, "shop", snap(s))
    assert err[0] == "InvalidSecret" and "shop/users" in err[1] and "'htpasswd'" in err[1]
    assert isinstance(auth, UnavailableAuthenticator)


def test_basic_from_auth_key_like_ingress_nginx():
    line = "alice:" + bcrypt.hashpw(b"pw", bcrypt.gensalt(4)).decode()
    auth, err = build_auth({"type": "Basic", "secretRef": {"name": "users"}}, False, "shop", snap(secret("users", data={"auth": line})))
    assert err is None and isinstance(auth, BasicAuthenticator) and "alice" in auth.users


def test_bad_jwks_json_is_invalid_secret():
    s = secret("idp", data={"jwks": "{not json"})
    auth, err = build_auth({"type": "JWT", "secretRef": {"name": "idp"}}, False, "shop", snap(s))
    assert err[0] == "InvalidSecret" and err[1].startswith("Secret shop/idp: data.jwks: not valid JSON")
    assert auth.authenticate(request({})).status == 503


@pytest.mark.parametrize(
    "data, kind",
    [
        ({"jwks": jwks(jwk(ec_key(), "e1"))}, "jwks"),
        ({"publicKey": public_pem(rsa_key())}, "pem"),
        ({"secret": "h" * 32}, "hmac"),
    ],
)
def test_jwt_key_sources(data, kind):
    auth, err = build_auth({"type": "JWT", "secretRef": {"name": "idp"}, "jwt": {"leeway": "30s"}}, False, "shop", snap(secret("idp", data=data)))
    assert err is None and isinstance(auth, JWTAuthenticator) and auth.leeway == 30


def test_jwt_secret_and_jwks_url_together():
    spec = {"type": "JWT", "secretRef": {"name": "idp"}, "jwt": {"jwksURL": "https://idp/jwks"}, "header": "X-Token"}
    auth, err = build_auth(spec, False, "shop", snap(secret("idp", data={"publicKey": public_pem(rsa_key())})))
    assert err is None and auth.static is not None and auth.remote is not None
    assert auth.header == "X-Token"


def test_jwt_secret_without_keys_is_invalid_secret():
    _, err = build_auth({"type": "JWT", "secretRef": {"name": "idp"}}, False, "shop", snap(secret("idp", data={"other": "x"})))
    assert err[0] == "InvalidSecret" and "'jwks'" in err[1]


def test_the_jwks_refresh_floor_comes_from_the_auth_settings():
    # --jwks-refresh-floor travels in AuthDefaults (CompileOptions), not in a module global set at start.
    spec = {"type": "JWT", "jwt": {"jwksURL": "https://idp/floor-jwks"}}
    default, err = build_auth(spec, False, "shop", snap())
    assert err is None and default.remote.refresh_floor == REFRESH_FLOOR
    quick, err = build_auth(spec, False, "shop", snap(), AuthDefaults(jwks_refresh_floor=2.5))
    assert err is None and quick.remote.refresh_floor == 2.5
    assert quick is not default and quick.remote is not default.remote


def test_jwks_url_needs_no_secret_and_shares_the_key_set():
    a, err = build_auth({"type": "JWT", "jwt": {"jwksURL": "https://idp/jwks", "issuer": "a"}}, False, "shop", snap())
    b, _ = build_auth({"type": "JWT", "jwt": {"jwksURL": "https://idp/jwks", "issuer": "b"}}, False, "other", snap())
    assert err is None and a is not b and a.remote is b.remote


@pytest.mark.parametrize(
    "spec, field",
    [
        ({"type": "Digest", "secretRef": {"name": "k"}}, "spec.auth.type"),
        ({"type": "APIKey"}, "spec.auth.secretRef"),
        ({"type": "APIKey", "secretRef": {"name": "k"}, "header": "bad header"}, "spec.auth.header"),
        ({"type": "APIKey", "secretRef": {"name": "k"}, "header": "Host"}, "spec.auth.header"),
        ({"type": "APIKey", "secretRef": {"name": "k"}, "consumerHeader": "Authorization"}, "spec.auth.consumerHeader"),
        ({"type": "Basic", "secretRef": {"name": "k"}, "jwt": {}}, "spec.auth.jwt"),
        ({"type": "JWT", "secretRef": {"name": "k"}, "jwt": {"leeway": "soon"}}, "spec.auth.jwt.leeway"),
        ({"type": "JWT", "secretRef": {"name": "k"}, "jwt": {"algorithms": ["none"]}}, "spec.auth.jwt.algorithms"),
        ({"type": "JWT", "secretRef": {"name": "k"}, "jwt": {"forwardClaims": {"sub": "Content-Length"}}}, "spec.auth.jwt.forwardClaims.sub"),
        ({"type": "JWT", "jwt": {"jwksURL": "ftp://x/jwks"}}, "spec.auth.jwt.jwksURL"),
        ({"type": "APIKey", "secretRef": {"name": "k"}, "keepCredentials": "yes"}, "spec.auth.keepCredentials"),
        ({"type": "APIKey", "secretRef": {"name": "k"}, "colour": "red"}, "colour"),
        ({"type": "Basic", "secretRef": {"name": "k"}, "header": "X-Pass"}, "spec.auth.header"),
        ({"type": "Basic", "secretRef": {"name": "k"}, "queryParam": "pw"}, "spec.auth.queryParam"),
    ],
)
def test_invalid_spec_leaves_the_route_out_and_names_the_field(spec, field):
    auth, err = build_auth(spec, False, "shop", snap())
    assert auth is None and err[0] == "InvalidSpec" and field in err[1]


def test_same_content_gives_the_same_instance():
    a, _ = build_auth(apikey_spec(), False, "shop", snap(KEYS))
    b, _ = build_auth(apikey_spec(), False, "shop", snap(secret("keys", data={"alice": "alice-key-0123456789", "bob": "sha256:" + hashlib.sha256(b"b").hexdigest()})))
    assert a is b


def test_changed_secret_or_spec_gives_a_new_instance():
    a, _ = build_auth(apikey_spec(), False, "shop", snap(KEYS))
    rotated = secret("keys", data={"alice": "alice-key-ROTATED-01"})
    b, _ = build_auth(apikey_spec(), False, "shop", snap(rotated))
    assert b is not a
    assert b.authenticate(request({"x-api-key": "alice-key-ROTATED-01"})).ok
    assert not b.authenticate(request({"x-api-key": "alice-key-0123456789"})).ok
    c, _ = build_auth(apikey_spec(header="X-Other"), False, "shop", snap(KEYS))
    assert c is not a


def test_unused_authenticators_are_not_kept_alive():
    import weakref

    from controller import authbuild

    a, _ = build_auth(apikey_spec(), False, "shop", snap(secret("keys", data={"zed": "zed-key-00000000"})))
    ref = weakref.ref(a)
    del a
    gc.collect()
    assert ref() is None
    assert all(v is not None for v in authbuild._authenticators.values())


def test_errors_never_carry_secret_values():
    s = secret("keys", data={"alice": "same-secret-value", "bob": "same-secret-value"})
    _, err = build_auth(apikey_spec(), False, "shop", snap(s))
    assert err[0] == "InvalidSecret" and "same-secret-value" not in err[1]
    assert b64("same-secret-value") not in err[1]
