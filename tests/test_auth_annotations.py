"""Ingress annotations crdgate.io/auth-* (and ingress-nginx's Basic ones) -> authenticators."""

import bcrypt
import pytest
from authkeys import basic, ec_key, jwk, jwks, request, secret

from controller.authbuild import build_ingress_auth, spec_from_annotations
from controller.store import SECRET, Snapshot
from gateway.auth import AuthResult, BasicAuthenticator, JWTAuthenticator


def snap(*secrets) -> Snapshot:
    return Snapshot({SECRET: {f"{s['metadata']['namespace']}/{s['metadata']['name']}": s for s in secrets}})


def test_no_annotations_no_auth():
    assert build_ingress_auth({}, "shop", snap()) == (None, None)
    assert spec_from_annotations({"kubernetes.io/ingress.class": "crdgate"}, "shop") == (None, False)


def test_apikey_annotations():
    ann = {
        "crdgate.io/auth-type": "APIKey",
        "crdgate.io/auth-secret": "keys",
        "crdgate.io/auth-header": "X-Token",
        "crdgate.io/auth-query-param": "token",
        "crdgate.io/auth-allowed-consumers": "alice, bob",
        "crdgate.io/auth-keep-credentials": "true",
        "crdgate.io/auth-consumer-header": "X-Client",
    }
    spec, required = spec_from_annotations(ann, "shop")
    assert required is False
    assert spec == {
        "type": "APIKey",
        "secretRef": {"name": "keys", "namespace": "shop"},
        "header": "X-Token",
        "queryParam": "token",
        "allowedConsumers": ["alice", "bob"],
        "keepCredentials": True,
        "consumerHeader": "X-Client",
    }
    s = secret("keys", data={"alice": "alice-key-000000", "carol": "carol-key-000000"})
    auth, err = build_ingress_auth(ann, "shop", snap(s))
    assert err is None
    res = auth.authenticate(request({}, "token=alice-key-000000"))
    assert res.ok and res.consumer == "alice" and res.strip_query_param is None
    assert auth.consumer_header == b"x-client" and b"x-token" not in auth.strip_headers
    assert auth.authenticate(request({"x-token": "carol-key-000000"})).status == 403


def test_jwt_annotations():
    ann = {
        "crdgate.io/auth-type": "JWT",
        "crdgate.io/auth-secret": "security/idp",
        "crdgate.io/auth-jwt-issuer": "https://idp/",
        "crdgate.io/auth-jwt-audiences": "orders,billing",
        "crdgate.io/auth-jwt-leeway": "30s",
        "crdgate.io/auth-jwt-required-claims": "exp",
        "crdgate.io/auth-jwt-forward-claims": "sub=X-User, email=X-Email",
        "crdgate.io/auth-jwt-algorithms": "ES256",
        "crdgate.io/auth-jwt-consumer-claim": "azp",
    }
    s = secret("idp", namespace="security", data={"jwks": jwks(jwk(ec_key(), "e1"))})
    auth, err = build_ingress_auth(ann, "shop", snap(s))
    assert err is None and isinstance(auth, JWTAuthenticator)
    assert (auth.issuer, auth.audiences, auth.leeway, auth.consumer_claim) == ("https://idp/", ("orders", "billing"), 30.0, "azp")
    assert auth.forward_claims == (("email", "X-Email"), ("sub", "X-User"))


def test_missing_secret_names_the_annotation():
    _, err = build_ingress_auth({"crdgate.io/auth-type": "APIKey", "crdgate.io/auth-secret": "keys"}, "shop", snap())
    assert err == ("SecretNotFound", "Secret shop/keys not found (metadata.annotations[crdgate.io/auth-secret])")


def test_auth_required_annotation_uses_defaults():
    ann = {"crdgate.io/auth-required": "true"}
    _, err = build_ingress_auth(ann, "shop", snap())
    assert err[0] == "AuthNotConfigured"


def test_ingress_nginx_basic_annotations():
    line = "alice:" + bcrypt.hashpw(b"pw", bcrypt.gensalt(4)).decode()
    ann = {"nginx.ingress.kubernetes.io/auth-type": "basic", "nginx.ingress.kubernetes.io/auth-secret": "basic-auth"}
    auth, err = build_ingress_auth(ann, "shop", snap(secret("basic-auth", data={"auth": line})))
    assert err is None and isinstance(auth, BasicAuthenticator)


async def test_ingress_nginx_basic_authenticates():
    line = "alice:" + bcrypt.hashpw(b"pw", bcrypt.gensalt(4)).decode()
    ann = {"nginx.ingress.kubernetes.io/auth-type": "basic", "nginx.ingress.kubernetes.io/auth-secret": "basic-auth"}
    auth, _ = build_ingress_auth(ann, "shop", snap(secret("basic-auth", data={"auth": line})))
    res = auth.authenticate(basic("alice", "pw"))
    res = res if type(res) is AuthResult else await res
    assert res.ok


@pytest.mark.parametrize(
    "ann, message",
    [
        ({"crdgate.io/auth-header": "X-Key"}, "crdgate.io/auth-type: required"),
        ({"crdgate.io/auth-type": "APIKey", "crdgate.io/auth-secret": "k", "crdgate.io/auth-keep-credentials": "yes"}, "auth-keep-credentials"),
        ({"crdgate.io/auth-type": "JWT", "crdgate.io/auth-secret": "k", "crdgate.io/auth-jwt-forward-claims": "sub"}, "claim=Header"),
        ({"nginx.ingress.kubernetes.io/auth-type": "digest"}, "only 'basic'"),
        ({"crdgate.io/auth-type": "Token", "crdgate.io/auth-secret": "k"}, "metadata.annotations[crdgate.io/auth-type]"),
        (
            {"crdgate.io/auth-type": "APIKey", "crdgate.io/auth-secret": "k", "crdgate.io/auth-header": "Host"},
            "metadata.annotations[crdgate.io/auth-header]: Host is reserved",
        ),
    ],
)
def test_bad_annotations_are_invalid_spec(ann, message):
    auth, err = build_ingress_auth(ann, "shop", snap())
    assert auth is None and err[0] == "InvalidSpec" and message in err[1] and err[1].startswith("metadata.annotations")
