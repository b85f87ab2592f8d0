"""authRequired: true without auth -> namespace default, gateway default, or AuthNotConfigured."""

import pytest
from authkeys import request, secret

from controller.authbuild import AuthDefaults, build_auth
from controller.store import SECRET, Snapshot
from gateway.auth import APIKeyAuthenticator, UnavailableAuthenticator

LABEL = "crdgate.io/default-auth"


def snap(*secrets) -> Snapshot:
    return Snapshot({SECRET: {f"{s['metadata']['namespace']}/{s['metadata']['name']}": s for s in secrets}})


GATEWAY = AuthDefaults.from_flags("crdgate-system/gateway-keys", "APIKey")
GATEWAY_KEYS = secret("gateway-keys", namespace="crdgate-system", data={"ops": "ops-key-000000"})
NS_KEYS = secret(
    "team-keys", namespace="shop", data={"shop-app": "shop-key-000000"}, labels={LABEL: "APIKey"}, creationTimestamp="2024-01-01T00:00:00Z"
)


def test_no_default_anywhere_is_auth_not_configured_and_fails_closed():
    auth, err = build_auth(None, True, "shop", snap())
    assert err[0] == "AuthNotConfigured" and "crdgate.io/default-auth" in err[1] and "--default-auth-secret" in err[1]
    assert isinstance(auth, UnavailableAuthenticator)
    assert auth.authenticate(request({"x-api-key": "x"})).status == 503


def test_gateway_default():
    auth, err = build_auth(None, True, "shop", snap(GATEWAY_KEYS), GATEWAY)
    assert err is None and isinstance(auth, APIKeyAuthenticator)
    assert auth.authenticate(request({"x-api-key": "ops-key-000000"})).consumer == "ops"


def test_namespace_default_beats_gateway_default():
    auth, err = build_auth(None, True, "shop", snap(GATEWAY_KEYS, NS_KEYS), GATEWAY)
    assert err is None
    assert auth.authenticate(request({"x-api-key": "shop-key-000000"})).ok
    assert not auth.authenticate(request({"x-api-key": "ops-key-000000"})).ok


def test_namespace_default_applies_only_in_its_namespace():
    auth, err = build_auth(None, True, "billing", snap(GATEWAY_KEYS, NS_KEYS), GATEWAY)
    assert err is None and auth.authenticate(request({"x-api-key": "ops-key-000000"})).ok
    _, err = build_auth(None, True, "billing", snap(NS_KEYS))
    assert err[0] == "AuthNotConfigured"


def test_oldest_labelled_secret_wins():
    newer = secret("newer", data={"n": "newer-key-0000"}, labels={LABEL: "APIKey"}, creationTimestamp="2025-01-01T00:00:00Z")
    auth, _ = build_auth(None, True, "shop", snap(newer, NS_KEYS))
    assert auth.authenticate(request({"x-api-key": "shop-key-000000"})).ok
    assert not auth.authenticate(request({"x-api-key": "newer-key-0000"})).ok


def test_namespace_default_options_from_its_annotations():
    s = secret(
        "team-keys",
        data={"shop-app": "shop-key-000000"},
        labels={LABEL: "apikey"},
        annotations={"crdgate.io/auth-header": "X-Team-Key"},
    )
    auth, err = build_auth(None, True, "shop", snap(s))
    assert err is None and auth.authenticate(request({"x-team-key": "shop-key-000000"})).ok


def test_bad_label_value_is_invalid_secret():
    s = secret("team-keys", data={"a": "a-key-00000000"}, labels={LABEL: "Kerberos"})
    auth, err = build_auth(None, True, "shop", snap(s))
    assert err[0] == "InvalidSecret" and "shop/team-keys" in err[1] and "Kerberos" in err[1]
    assert auth.authenticate(request({})).status == 503


def test_missing_gateway_default_secret_names_the_flag():
    _, err = build_auth(None, True, "shop", snap(), GATEWAY)
    assert err == ("SecretNotFound", "Secret crdgate-system/gateway-keys not found (--default-auth-secret)")


def test_explicit_auth_wins_over_defaults_and_authrequired_false():
    own = secret("own", data={"me": "own-key-0000000"})
    spec = {"type": "APIKey", "secretRef": {"name": "own"}}
    for required in (True, False):
        auth, err = build_auth(spec, required, "shop", snap(own, NS_KEYS), GATEWAY)
        assert err is None and auth.authenticate(request({"x-api-key": "own-key-0000000"})).ok


def test_authrequired_false_without_auth_ignores_defaults():
    assert build_auth(None, False, "shop", snap(NS_KEYS), GATEWAY) == (None, None)


@pytest.mark.parametrize(
    "secret_flag, type_flag, message",
    [
        ("gateway-keys", "APIKey", "NAMESPACE/NAME"),
        ("ns/name", "OAuth", "--default-auth-type"),
        ("ns/name", None, "go together"),
    ],
)
def test_flag_errors(secret_flag, type_flag, message):
    with pytest.raises(ValueError, match=message):
        AuthDefaults.from_flags(secret_flag, type_flag)
    assert AuthDefaults.from_flags(None, None) == AuthDefaults()
