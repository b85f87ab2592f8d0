"""Authentication policies of the data plane (APIEndpoint ``auth``, issue 5).

One module per scheme — apikey.py, basic.py, bearer.py (JWT) with jwks.py for
its keys — over base.py, which defines what the proxy sees: ``AuthRequest``,
``AuthResult`` and the ``Authenticator`` interface. The controller builds
authenticators (controller/authbuild.py) and puts them in ``RoutePolicy.auth``;
gateway/policies.py calls ``authenticate_raw`` for the exchange and applies the result. Nothing here
imports the controller or the Kubernetes client.
"""

from .apikey import APIKeyAuthenticator
from .base import (
    ALLOWED,
    ERROR,
    FORBIDDEN,
    INVALID,
    MISSING,
    SCHEME_APIKEY,
    SCHEME_BASIC,
    SCHEME_JWT,
    SCHEMES,
    AuthRequest,
    AuthResult,
    Authenticator,
    SecretContentError,
    UnavailableAuthenticator,
)
from .basic import BasicAuthenticator, parse_htpasswd
from .bearer import JWTAuthenticator
from .jwks import KeySet, RemoteJWKS, hmac_keyset, parse_jwks, parse_pem

__all__ = [
    "ALLOWED",
    "ERROR",
    "FORBIDDEN",
    "INVALID",
    "MISSING",
    "SCHEME_APIKEY",
    "SCHEME_BASIC",
    "SCHEME_JWT",
    "SCHEMES",
    "APIKeyAuthenticator",
    "AuthRequest",
    "AuthResult",
    "Authenticator",
    "BasicAuthenticator",
    "JWTAuthenticator",
    "KeySet",
    "RemoteJWKS",
    "SecretContentError",
    "UnavailableAuthenticator",
    "hmac_keyset",
    "parse_htpasswd",
    "parse_jwks",
    "parse_pem",
]
