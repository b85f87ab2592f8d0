"""JWT with keys from a Secret: algorithms, claims, time, consumers, forwarded claims."""

import base64
import datetime
import hashlib
import hmac
import json
import time

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from authkeys import bearer, ec_key, ed_key, jwk, jwks, public_pem, request, rsa_key, token

from gateway.auth import AuthResult, JWTAuthenticator, SecretContentError, hmac_keyset, parse_jwks, parse_pem

ISS = "https://idp.example.com/"


def rsa_auth(**kw) -> JWTAuthenticator:
    return JWTAuthenticator(parse_pem(public_pem(rsa_key())), **kw)


def decide(auth, req) -> AuthResult:
    res = auth.authenticate(req)
    assert type(res) is AuthResult  # known keys: always synchronous
    return res


def test_valid_rs256_token():
    res = decide(rsa_auth(), bearer(token(rsa_key())))
    assert res.ok and res.consumer == "alice" and res.forward_headers == ()


def test_missing_token_challenge():
    res = decide(rsa_auth(), request({}))
    assert (res.status, res.outcome, res.www_authenticate) == (401, "missing", 'Bearer realm="crdgate"')
    assert decide(rsa_auth(), request({"authorization": "Basic abc"})).outcome == "missing"


# The last token differs at each collection (a new key, the time): a fixed id, the same in every
# pytest-xdist worker.
@pytest.mark.parametrize("bad", ["garbage", "a.b.c", "e30.e30.", pytest.param(token(rsa_key())[:-4] + "AAAA", id="bad signature")])
def test_bad_token_is_invalid_token(bad):
    res = decide(rsa_auth(), bearer(bad))
    assert (res.status, res.outcome) == (401, "invalid")
    assert res.www_authenticate == 'Bearer realm="crdgate", error="invalid_token"'


def test_token_signed_by_another_key_is_rejected():
    other = rsa.generate_private_key(65537, 2048)
    assert decide(rsa_auth(), bearer(token(other))).outcome == "invalid"


def test_expired_and_not_yet_valid():
    now = int(time.time())
    assert decide(rsa_auth(), bearer(token(rsa_key(), exp=now - 5))).outcome == "invalid"
    assert decide(rsa_auth(), bearer(token(rsa_key(), nbf=now + 60))).outcome == "invalid"


def test_leeway_accepts_small_clock_skew_only():
    now = int(time.time())
    auth = rsa_auth(leeway=30)
    assert decide(auth, bearer(token(rsa_key(), exp=now - 10))).ok
    assert decide(auth, bearer(token(rsa_key(), nbf=now + 10))).ok
    assert not decide(auth, bearer(token(rsa_key(), exp=now - 60))).ok


def test_issuer_and_audiences():
    auth = rsa_auth(issuer=ISS, audiences=["orders", "billing"])
    assert decide(auth, bearer(token(rsa_key(), iss=ISS, aud="billing"))).ok
    assert decide(auth, bearer(token(rsa_key(), iss=ISS, aud=["x", "orders"]))).ok
    assert not decide(auth, bearer(token(rsa_key(), iss="https://evil/", aud="orders"))).ok
    assert not decide(auth, bearer(token(rsa_key(), iss=ISS, aud="shipping"))).ok
    assert not decide(auth, bearer(token(rsa_key(), iss=ISS))).ok  # no aud at all


def test_audience_not_checked_when_none_configured():
    assert decide(rsa_auth(), bearer(token(rsa_key(), aud="anything"))).ok


def test_required_claims():
    auth = rsa_auth(required_claims=["exp", "tenant"])
    assert decide(auth, bearer(token(rsa_key(), tenant="t1"))).ok
    assert not decide(auth, bearer(token(rsa_key()))).ok
    assert not decide(auth, bearer(token(rsa_key(), tenant="t1", exp=None))).ok


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_alg_confusion_hs256_with_the_public_key_as_secret_is_rejected():
    # Signed by hand: PyJWT itself refuses a PEM as an HMAC key when signing.
    pem = public_pem(rsa_key())
    header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = _b64url(json.dumps({"sub": "mallory", "exp": int(time.time()) + 300}).encode())
    signing_input = f"{header}.{payload}"
    sig = _b64url(hmac.new(pem, signing_input.encode(), hashlib.sha256).digest())
    res = decide(rsa_auth(), bearer(f"{signing_input}.{sig}"))
    assert (res.status, res.outcome) == (401, "invalid")
    # the same through a JWKS whose RSA key declares no alg
    res = decide(JWTAuthenticator(parse_jwks(jwks(jwk(rsa_key())))), bearer(f"{signing_input}.{sig}"))
    assert res.outcome == "invalid"


def test_alg_none_is_rejected():
    unsigned = jwt.encode({"sub": "mallory", "exp": int(time.time()) + 300}, None, algorithm="none")
    assert decide(rsa_auth(), bearer(unsigned)).outcome == "invalid"
    assert decide(JWTAuthenticator(hmac_keyset(b"k" * 32)), bearer(unsigned)).outcome == "invalid"


def test_es256_and_eddsa_accepted():
    es = JWTAuthenticator(parse_pem(public_pem(ec_key())))
    assert decide(es, bearer(token(ec_key(), alg="ES256"))).ok
    ed = JWTAuthenticator(parse_pem(public_pem(ed_key())))
    assert decide(ed, bearer(token(ed_key(), alg="EdDSA"))).ok
    # and an RS256 token means nothing to an EC key
    assert not decide(es, bearer(token(rsa_key()))).ok


def test_hs256_with_a_secret():
    secret = b"s" * 40
    auth = JWTAuthenticator(hmac_keyset(secret))
    assert decide(auth, bearer(token(secret, alg="HS256"))).ok
    assert not decide(auth, bearer(token(b"t" * 40, alg="HS256"))).ok
    with pytest.raises(SecretContentError, match="32 bytes"):
        hmac_keyset(b"short")


def test_jwks_secret_picks_key_by_kid():
    keys = parse_jwks(jwks(jwk(rsa_key(), "r1"), jwk(ec_key(), "e1"), jwk(ed_key(), "d1")))
    auth = JWTAuthenticator(keys)
    assert decide(auth, bearer(token(ec_key(), alg="ES256", kid="e1"))).ok
    assert decide(auth, bearer(token(ed_key(), alg="EdDSA", kid="d1"))).ok
    assert not decide(auth, bearer(token(ec_key(), alg="ES256", kid="r1"))).ok  # kid of an RSA key
    assert not decide(auth, bearer(token(rsa_key(), kid="nope"))).ok
    assert decide(auth, bearer(token(rsa_key()))).ok  # no kid: every key that allows RS256


def test_jwk_alg_narrows_the_key():
    auth = JWTAuthenticator(parse_jwks(jwks(jwk(rsa_key(), "r1", alg="PS256"))))
    assert not decide(auth, bearer(token(rsa_key(), kid="r1"))).ok
    assert decide(auth, bearer(token(rsa_key(), alg="PS256", kid="r1"))).ok


def test_configured_algorithms_narrow_further():
    auth = rsa_auth(algorithms=["PS256"])
    assert not decide(auth, bearer(token(rsa_key()))).ok
    assert decide(auth, bearer(token(rsa_key(), alg="PS256"))).ok
    with pytest.raises(SecretContentError, match="no key fits"):
        rsa_auth(algorithms=["ES256"])


def test_allowed_consumers_and_consumer_claim():
    auth = rsa_auth(allowed_consumers=["bob"])
    res = decide(auth, bearer(token(rsa_key())))
    assert (res.status, res.outcome) == (403, "forbidden")
    assert res.www_authenticate == 'Bearer realm="crdgate", error="insufficient_scope"'
    assert decide(auth, bearer(token(rsa_key(), sub="bob"))).ok
    by_client = rsa_auth(consumer_claim="client_id")
    assert decide(by_client, bearer(token(rsa_key(), client_id="svc-a"))).consumer == "svc-a"


def test_forward_claims_are_sanitised_headers():
    auth = rsa_auth(forward_claims={"email": "X-Email", "groups": "X-Groups", "realm.role": "X-Role", "absent": "X-Absent"})
    tok = token(rsa_key(), email="a@x.io\r\nX-Admin: yes", groups=["a", "b"], realm={"role": "ops"})
    res = decide(auth, bearer(tok))
    assert res.ok
    fwd = dict(res.forward_headers)
    assert fwd["X-Email"] == "a@x.io  X-Admin: yes"
    assert "\r" not in fwd["X-Email"] and "\n" not in fwd["X-Email"]
    assert fwd["X-Groups"] == "a,b" and fwd["X-Role"] == "ops" and "X-Absent" not in fwd
    assert set(auth.strip_headers) == {b"x-consumer", b"x-email", b"x-groups", b"x-role", b"x-absent", b"authorization"}


def test_verified_tokens_are_cached_until_expiry():
    auth = rsa_auth()
    tok = token(rsa_key())
    assert decide(auth, bearer(tok)).ok
    assert len(auth.cache) == 1
    assert decide(auth, bearer(tok)) is decide(auth, bearer(tok))
    assert not decide(auth, bearer("x.y.z")).ok
    assert len(auth.cache) == 1  # refusals are not cached


def test_pem_certificate_gives_its_public_key():
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "idp")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(ec_key().public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(ec_key(), hashes.SHA256())
    )
    auth = JWTAuthenticator(parse_pem(cert.public_bytes(Encoding.PEM), "tls.crt"))
    assert decide(auth, bearer(token(ec_key(), alg="ES256"))).ok


def test_weak_or_unreadable_pem_is_refused():
    weak = rsa.generate_private_key(65537, 1024)
    with pytest.raises(SecretContentError, match="not accepted"):
        parse_pem(public_pem(weak))
    with pytest.raises(SecretContentError, match="not a PEM"):
        parse_pem(b"hello")


def test_token_from_another_header_or_the_query():
    auth = rsa_auth(header="X-Access-Token", query_param="access_token")
    tok = token(rsa_key())
    assert decide(auth, request({"x-access-token": tok})).ok
    assert decide(auth, request({"x-access-token": f"Bearer {tok}"})).ok
    assert decide(auth, request({"authorization": f"Bearer {tok}"})).outcome == "missing"
    res = decide(auth, request({}, f"a=1&access_token={tok}"))
    assert res.ok and res.strip_query_param == "access_token"
    # from the header too: the backend sees neither, whichever carried the token
    assert decide(auth, request({"x-access-token": tok})).strip_query_param == "access_token"
    assert b"x-access-token" in auth.strip_headers and b"authorization" not in auth.strip_headers
    kept = rsa_auth(query_param="access_token", keep_credentials=True)
    assert decide(kept, request({}, f"access_token={tok}")).strip_query_param is None
    assert kept.strip_headers == (b"x-consumer",)
