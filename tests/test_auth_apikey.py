"""API keys: header and query parameter, hashed keys, consumers, challenges."""

import hashlib

import pytest
from authkeys import request

from gateway.auth import APIKeyAuthenticator, AuthResult, SecretContentError
from gateway.auth import apikey
from gateway.auth.base import AuthMemo

KEYS = {
    "alice": "alice-key-0123456789",
    "bob": "sha256:" + hashlib.sha256(b"bob-key-9876543210").hexdigest(),
}


def test_valid_key_in_header_names_the_consumer():
    auth = APIKeyAuthenticator(KEYS)
    res = auth.authenticate(request({"X-API-Key": "alice-key-0123456789"}))
    assert type(res) is AuthResult
    assert res.ok and res.outcome == "allowed" and res.consumer == "alice"
    assert res.forward_headers == () and auth.consumer_header == b"x-consumer"
    assert res.strip_query_param is None


def test_hashed_key_matches_its_preimage_only():
    auth = APIKeyAuthenticator(KEYS)
    assert auth.authenticate(request({"x-api-key": "bob-key-9876543210"})).consumer == "bob"
    digest_itself = KEYS["bob"]
    res = auth.authenticate(request({"x-api-key": digest_itself}))
    assert not res.ok and res.status == 401


def test_missing_key_is_401_with_challenge():
    auth = APIKeyAuthenticator(KEYS)
    res = auth.authenticate(request({}))
    assert (res.ok, res.status, res.outcome) == (False, 401, "missing")
    assert res.www_authenticate == 'APIKey realm="crdgate", header="X-API-Key"'


def test_wrong_key_is_401_invalid_and_says_nothing_specific():
    auth = APIKeyAuthenticator(KEYS)
    res = auth.authenticate(request({"x-api-key": "alice-key-012345678X"}))
    assert (res.status, res.outcome, res.consumer) == (401, "invalid", None)
    assert res.message == "unauthorized"


def test_custom_header():
    auth = APIKeyAuthenticator(KEYS, header="X-Token")
    assert auth.authenticate(request({"x-token": "alice-key-0123456789"})).ok
    assert auth.authenticate(request({"x-api-key": "alice-key-0123456789"})).outcome == "missing"
    assert auth.strip_headers == (b"x-consumer", b"x-token")


def test_query_param_only_when_configured_and_stripped():
    plain = APIKeyAuthenticator(KEYS)
    assert plain.authenticate(request({}, "api_key=alice-key-0123456789")).outcome == "missing"
    auth = APIKeyAuthenticator(KEYS, query_param="api_key")
    res = auth.authenticate(request({}, "a=1&api_key=alice-key-0123456789&b=2"))
    assert res.ok and res.consumer == "alice" and res.strip_query_param == "api_key"
    # the header wins, and the query parameter is removed all the same: the backend sees neither
    res = auth.authenticate(request({"x-api-key": "bob-key-9876543210"}, "api_key=alice-key-0123456789"))
    assert res.consumer == "bob" and res.strip_query_param == "api_key"
    assert 'query="api_key"' in auth.authenticate(request({})).www_authenticate


def test_query_value_is_percent_decoded():
    auth = APIKeyAuthenticator({"carol": "k+y/="}, query_param="key")
    assert auth.authenticate(request({}, "key=k%2By%2F%3D")).consumer == "carol"


def test_keep_credentials_keeps_header_and_query():
    auth = APIKeyAuthenticator(KEYS, query_param="api_key", keep_credentials=True)
    assert auth.strip_headers == (b"x-consumer",)
    assert auth.authenticate(request({}, "api_key=alice-key-0123456789")).strip_query_param is None


def test_consumer_not_allowed_is_403():
    auth = APIKeyAuthenticator(KEYS, allowed_consumers=["bob"])
    res = auth.authenticate(request({"x-api-key": "alice-key-0123456789"}))
    assert (res.ok, res.status, res.outcome) == (False, 403, "forbidden")
    assert auth.authenticate(request({"x-api-key": "bob-key-9876543210"})).ok


def test_custom_consumer_header_is_set_and_stripped():
    auth = APIKeyAuthenticator(KEYS, consumer_header="X-User")
    assert auth.consumer_header == b"x-user"
    assert b"x-user" in auth.strip_headers


def test_trailing_newline_in_secret_value_is_ignored():
    auth = APIKeyAuthenticator({"dave": "dave-key\n"})
    assert auth.authenticate(request({"x-api-key": "dave-key"})).ok


@pytest.mark.parametrize(
    "keys, why",
    [
        ({}, "no keys"),
        ({"a": "  "}, "empty"),
        ({"a": "sha256:abcd"}, "64 hex"),
        ({"a": "same", "b": "same"}, "same key"),
    ],
)
def test_bad_key_sets_are_refused_without_echoing_keys(keys, why):
    with pytest.raises(SecretContentError, match=why) as exc:
        APIKeyAuthenticator(keys)
    assert "same" not in str(exc.value).replace("same key", "")


def raw(key: bytes) -> list[tuple[bytes, bytes]]:
    return [(b"Host", b"x"), (b"X-Api-Key", key)]


def test_connection_memo_answers_only_for_the_same_key_and_authenticator(monkeypatch):
    hashed = []
    real = apikey._sha256
    monkeypatch.setattr(apikey, "_sha256", lambda data: hashed.append(data) or real(data))
    auth = APIKeyAuthenticator(KEYS)
    memo = AuthMemo()
    assert auth.authenticate_raw(raw(b"alice-key-0123456789"), memo=memo).consumer == "alice"
    assert auth.authenticate_raw(raw(b"alice-key-0123456789"), memo=memo).consumer == "alice"
    assert len(hashed) == 1, "the same key again on the connection is not hashed again"
    # Anything else is verified: a near miss, a prefix, a longer key, another consumer's key.
    for wrong in (b"alice-key-012345678X", b"alice-key-012345678", b"alice-key-0123456789X"):
        assert auth.authenticate_raw(raw(wrong), memo=memo).outcome == "invalid"
    assert len(hashed) == 4
    assert auth.authenticate_raw(raw(b"bob-key-9876543210"), memo=memo).consumer == "bob"
    assert auth.authenticate_raw(raw(b"alice-key-0123456789"), memo=memo).consumer == "alice"
    assert len(hashed) == 6, "a wrong key never replaces the memo; a right one does"
    # A rotated Secret builds a new authenticator: the old memo never answers for it.
    rotated = APIKeyAuthenticator({"alice": "alice-key-NEW"})
    assert rotated.authenticate_raw(raw(b"alice-key-0123456789"), memo=memo).outcome == "invalid"
    assert memo.authenticator is auth


def test_connection_memo_keeps_forbidden_consumers_forbidden():
    auth = APIKeyAuthenticator(KEYS, allowed_consumers=["bob"])
    memo = AuthMemo()
    for _ in range(2):
        res = auth.authenticate_raw(raw(b"alice-key-0123456789"), memo=memo)
        assert (res.status, res.outcome) == (403, "forbidden")
