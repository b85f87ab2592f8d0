"""Turns a validated ``auth`` (or an Ingress's annotations) plus the Secrets
of a Snapshot into a gateway.auth authenticator, or an error for the status.

Validation is not done here: ``controller.models.AuthSpec`` is the one
validator of ``auth``. An APIEndpoint's field arrives validated; an Ingress's
``crdgate.io/auth-*`` annotations and a namespace default's options are first
shaped into that model's input (``spec_from_annotations``) and validated by it
(``validate_auth``), so their errors come from the same place.

Called by the compiler (controller/compile/context.py) for each route; the
result goes into ``RoutePolicy.auth``. What ``build_auth`` returns, and what
the compiler does:

- ``(None, None)``: no authentication on this route.
- ``(authenticator, None)``: authenticate with it.
- ``(unavailable, (reason, message))`` with reason ``SecretNotFound``,
  ``RefNotPermitted``, ``InvalidSecret`` or ``AuthNotConfigured``: keep the route, whose
  authenticator answers 503 "auth unavailable" (fail closed, and the route
  stays visible, so a client sees an outage rather than a 404 that hides a
  typo); mark the object ``Error`` with that reason and message.
- ``(None, ("InvalidSpec", message))``: the spec itself is wrong (annotations,
  or a plain mapping handed in); leave the route out like any other invalid spec.

``authRequired: true`` without ``auth`` resolves, in order, to: the namespace
default (a Secret in the route's namespace labelled
``crdgate.io/default-auth: <APIKey|Basic|JWT>``, the oldest if several, options
from its ``crdgate.io/auth-*`` annotations), then the gateway default
(``--default-auth-secret NS/NAME`` with ``--default-auth-type``), else
``AuthNotConfigured``. An explicit ``auth`` always applies, whatever
``authRequired`` says.

A Secret in another namespace than the route's is read only when a
ReferenceGrant there permits it (controller/refgrant.py, the ``references``
the compiler passes); otherwise the route fails closed with ``RefNotPermitted``
and the Secret is not even looked up. The gateway default
(``--default-auth-secret``) is the operator's choice and needs no grant.

Authenticators are memoised by a hash of the normalised spec and the Secret's
content: recompiling with the same content hands back the same instance, so
its caches (verified passwords, tokens, JWKS) survive; a changed Secret gives
a new instance, so rotation takes effect at the next compile. One RemoteJWKS
per URL is shared by every authenticator that names it. Both memos hold their
values weakly: what no table uses any more goes away.

Messages name Secrets, fields and data keys; never a credential.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import weakref
from dataclasses import asdict, dataclass
from typing import Any, Mapping

from pydantic import ValidationError

from controller import models as m
from controller.refgrant import CORE_GROUP, REF_NOT_PERMITTED, References
from controller.store import SECRET, Snapshot
from gateway.auth import (
    SCHEME_APIKEY,
    SCHEME_BASIC,
    SCHEMES,
    APIKeyAuthenticator,
    Authenticator,
    BasicAuthenticator,
    JWTAuthenticator,
    KeySet,
    RemoteJWKS,
    UnavailableAuthenticator,
    hmac_keyset,
    parse_htpasswd,
    parse_jwks,
    parse_pem,
)
from gateway.auth.apikey import DEFAULT_HEADER
from gateway.auth.base import DEFAULT_CONSUMER_HEADER
from gateway.auth.jwks import REFRESH_FLOOR
from gateway.errors import SecretContentError, SpecError

AuthError = tuple[str, str]  # (reason, message)

SECRET_NOT_FOUND = "SecretNotFound"
INVALID_SECRET = "InvalidSecret"
INVALID_SPEC = "InvalidSpec"
AUTH_NOT_CONFIGURED = "AuthNotConfigured"

DEFAULT_AUTH_LABEL = "crdgate.io/default-auth"
GATEWAY_DEFAULT = "--default-auth-secret"  # where the gateway-wide default comes from, for messages

# Ingress annotations (and the options of a namespace-default Secret).
A_TYPE = "crdgate.io/auth-type"
A_SECRET = "crdgate.io/auth-secret"  # "name" (the object's namespace) or "namespace/name"
A_REQUIRED = "crdgate.io/auth-required"  # "true": the namespace or gateway default
A_HEADER = "crdgate.io/auth-header"  # APIKey (default X-API-Key) or JWT (default Authorization)
A_QUERY = "crdgate.io/auth-query-param"
A_CONSUMERS = "crdgate.io/auth-allowed-consumers"  # comma-separated
A_KEEP = "crdgate.io/auth-keep-credentials"  # "true" | "false"
A_CONSUMER_HEADER = "crdgate.io/auth-consumer-header"
A_JWT_ISSUER = "crdgate.io/auth-jwt-issuer"
A_JWT_AUDIENCES = "crdgate.io/auth-jwt-audiences"  # comma-separated
A_JWT_JWKS_URL = "crdgate.io/auth-jwt-jwks-url"
A_JWT_LEEWAY = "crdgate.io/auth-jwt-leeway"  # a duration, "30s"
A_JWT_REQUIRED = "crdgate.io/auth-jwt-required-claims"  # comma-separated
A_JWT_FORWARD = "crdgate.io/auth-jwt-forward-claims"  # "sub=X-User,email=X-Email"
A_JWT_ALGORITHMS = "crdgate.io/auth-jwt-algorithms"  # comma-separated
A_JWT_CONSUMER_CLAIM = "crdgate.io/auth-jwt-consumer-claim"
# spec field -> annotation, longest first (for messages about an Ingress).
_ANNOTATION_OF_FIELD = (
    ("jwt.requiredClaims", A_JWT_REQUIRED), ("jwt.forwardClaims", A_JWT_FORWARD), ("jwt.consumerClaim", A_JWT_CONSUMER_CLAIM),
    ("allowedConsumers", A_CONSUMERS), ("keepCredentials", A_KEEP), ("consumerHeader", A_CONSUMER_HEADER),
    ("jwt.algorithms", A_JWT_ALGORITHMS), ("jwt.audiences", A_JWT_AUDIENCES), ("jwt.jwksURL", A_JWT_JWKS_URL),
    ("secretRef.name", A_SECRET), ("jwt.issuer", A_JWT_ISSUER), ("jwt.leeway", A_JWT_LEEWAY), ("queryParam", A_QUERY),
    ("secretRef", A_SECRET), ("header", A_HEADER), ("type", A_TYPE),
)  # fmt: skip
# ingress-nginx's Basic-auth annotations, read when ours are absent (migration).
NGINX_TYPE = "nginx.ingress.kubernetes.io/auth-type"
NGINX_SECRET = "nginx.ingress.kubernetes.io/auth-secret"
ANNOTATIONS = (
    A_TYPE, A_SECRET, A_REQUIRED, A_HEADER, A_QUERY, A_CONSUMERS, A_KEEP, A_CONSUMER_HEADER,
    A_JWT_ISSUER, A_JWT_AUDIENCES, A_JWT_JWKS_URL, A_JWT_LEEWAY, A_JWT_REQUIRED, A_JWT_FORWARD,
    A_JWT_ALGORITHMS, A_JWT_CONSUMER_CLAIM,
)  # fmt: skip

_SCHEME_BY_LOWER = {s.lower(): s for s in SCHEMES}


@dataclass(frozen=True)
class AuthDefaults:
    """The gateway-wide auth settings (command-line flags): the default for ``authRequired``,
    and how often one ``jwksURL`` may be fetched (given to the RemoteJWKS built here)."""

    secret_namespace: str | None = None
    secret_name: str | None = None
    type: str | None = None
    jwks_refresh_floor: float = REFRESH_FLOOR

    @classmethod
    def from_flags(cls, secret: str | None, auth_type: str | None,
                   jwks_refresh_floor: float = REFRESH_FLOOR) -> "AuthDefaults":
        """``--default-auth-secret NS/NAME``, ``--default-auth-type`` and ``--jwks-refresh-floor``;
        ValueError names the flag."""
        if not jwks_refresh_floor >= 0:  # also refuses NaN
            raise ValueError(f"--jwks-refresh-floor: expected seconds >= 0, got {jwks_refresh_floor!r}")
        if not secret and not auth_type:
            return cls(jwks_refresh_floor=jwks_refresh_floor)
        if not secret or not auth_type:
            raise ValueError("--default-auth-secret and --default-auth-type go together")
        ns, sep, name = secret.partition("/")
        if not sep or not ns or not name or "/" in name:
            raise ValueError(f"--default-auth-secret: expected NAMESPACE/NAME, got {secret!r}")
        canonical = _SCHEME_BY_LOWER.get(auth_type.lower())
        if canonical is None:
            raise ValueError(f"--default-auth-type: expected one of {', '.join(SCHEMES)}, got {auth_type!r}")
        return cls(ns, name, canonical, jwks_refresh_floor)


NO_DEFAULTS = AuthDefaults()


@dataclass(frozen=True)
class AuthSettings:
    """What an authenticator is built from: a validated ``auth`` (controller/models.py
    ``AuthSpec``) with the route's namespace filled in; the memo key is made from it."""

    type: str
    secret_namespace: str | None
    secret_name: str | None
    header: str | None = None  # APIKey: X-API-Key; JWT: Authorization
    query_param: str | None = None
    allowed_consumers: tuple[str, ...] | None = None
    keep_credentials: bool = False
    consumer_header: str = DEFAULT_CONSUMER_HEADER
    issuer: str | None = None
    audiences: tuple[str, ...] = ()
    jwks_url: str | None = None
    leeway: float = 0.0
    required_claims: tuple[str, ...] = ()
    forward_claims: tuple[tuple[str, str], ...] = ()
    algorithms: tuple[str, ...] | None = None
    consumer_claim: str = "sub"

    @property
    def secret_ref(self) -> str:
        return f"{self.secret_namespace}/{self.secret_name}"


# -- entry points -----------------------------------------------------------------


def build_auth(
    spec_auth: m.AuthSpec | Mapping[str, Any] | None,
    auth_required: bool,
    namespace: str,
    snapshot: Snapshot,
    defaults: AuthDefaults = NO_DEFAULTS,
    *,
    field: str = "spec.auth",
    references: References | None = None,
) -> tuple[Authenticator | None, AuthError | None]:
    """The authenticator for one route (see the module docstring for the cases).

    ``spec_auth``: the validated model (an APIEndpoint's ``spec.auth``), or the
    same as a plain mapping, validated here with that model. ``field`` is where
    it came from, for messages ("spec.auth", or "metadata.annotations" for an
    Ingress); ``references``: which Secrets of other namespaces the route may
    read (None: any, as before grants existed).
    """
    where = f"{field}.secretRef"
    if not spec_auth:
        if not auth_required:
            return None, None
        found = resolve_default(namespace, snapshot, defaults)
        if found is None:
            msg = (
                f"authRequired is true but no authentication is configured: add {field}, label a Secret in "
                f"namespace {namespace} with {DEFAULT_AUTH_LABEL}=<APIKey|Basic|JWT>, or start the gateway "
                f"with --default-auth-secret and --default-auth-type"
            )
            return UnavailableAuthenticator("none", AUTH_NOT_CONFIGURED), (AUTH_NOT_CONFIGURED, msg)
        default_auth, where, error = found
        if error is not None:
            return UnavailableAuthenticator("none", error[0]), error
        try:
            model = validate_auth(default_auth, "auth")
        except SpecError as e:  # options from the default Secret's annotations
            return UnavailableAuthenticator("none", INVALID_SECRET), (INVALID_SECRET, f"{where}: {e}")
        # A namespace default lives in the route's own namespace; the gateway default is the operator's.
        return _build(settings(model, namespace), snapshot, where, None if where == GATEWAY_DEFAULT else references,
                      defaults.jwks_refresh_floor)
    if isinstance(spec_auth, m.AuthSpec):
        model = spec_auth
    else:
        try:
            model = validate_auth(spec_auth, field)
        except SpecError as e:
            return None, (INVALID_SPEC, str(e))
    return _build(settings(model, namespace), snapshot, where, references, defaults.jwks_refresh_floor)


def build_ingress_auth(
    annotations: Mapping[str, str] | None,
    namespace: str,
    snapshot: Snapshot,
    defaults: AuthDefaults = NO_DEFAULTS,
    references: References | None = None,
) -> tuple[Authenticator | None, AuthError | None]:
    """The authenticator for an Ingress's routes, from its annotations (shaped
    into the ``auth`` model and validated by it, as an APIEndpoint's field)."""
    try:
        spec_auth, required = spec_from_annotations(annotations or {}, namespace)
    except SpecError as e:
        return None, (INVALID_SPEC, f"metadata.annotations: {e}")
    try:
        model = validate_auth(spec_auth, "metadata.annotations") if spec_auth is not None else None
    except SpecError as e:
        return None, (INVALID_SPEC, _annotation_names(str(e)))
    auth, error = build_auth(
        model, required, namespace, snapshot, defaults, field="metadata.annotations", references=references
    )
    if error is not None:
        error = (error[0], _annotation_names(error[1]))
    return auth, error


def _annotation_names(message: str) -> str:
    """Name the annotation the user wrote, not the spec field it became."""
    for path, annotation in _ANNOTATION_OF_FIELD:
        message = message.replace(f"metadata.annotations.{path}", f"metadata.annotations[{annotation}]")
    return message


def validate_auth(raw: Mapping[str, Any], field: str) -> m.AuthSpec:
    """``raw`` validated with the one ``auth`` model; SpecError names the fields (under ``field``)."""
    if not isinstance(raw, Mapping):
        raise SpecError((field, "expected an object"))
    try:
        return m.AuthSpec.model_validate(raw)
    except ValidationError as e:
        raise SpecError(("", "; ".join(m.describe_errors(e, field)))) from None


def settings(model: m.AuthSpec, namespace: str) -> AuthSettings:
    """What the authenticator is built from: the model with the route's namespace filled in."""
    ref, jwt = model.secret_ref, model.jwt
    kw: dict[str, Any] = {
        "type": model.type,
        "secret_namespace": (ref.namespace or namespace) if ref is not None else None,
        "secret_name": ref.name if ref is not None else None,
        "header": model.header,
        "query_param": model.query_param,
        "allowed_consumers": tuple(model.allowed_consumers) if model.allowed_consumers else None,
        "keep_credentials": model.keep_credentials,
    }
    if model.consumer_header is not None:
        kw["consumer_header"] = model.consumer_header
    if jwt is not None:
        kw.update(
            issuer=jwt.issuer,
            audiences=tuple(jwt.audiences or ()),
            jwks_url=jwt.jwks_url or None,
            leeway=jwt.leeway if jwt.leeway is not None else 0.0,
            required_claims=tuple(jwt.required_claims or ()),
            forward_claims=tuple(sorted((jwt.forward_claims or {}).items())),
            algorithms=tuple(jwt.algorithms) if jwt.algorithms else None,
        )
        if jwt.consumer_claim is not None:
            kw["consumer_claim"] = jwt.consumer_claim
    return AuthSettings(**kw)


def resolve_default(
    namespace: str, snapshot: Snapshot, defaults: AuthDefaults
) -> tuple[dict, str, AuthError | None] | None:
    """The ``auth`` that ``authRequired: true`` means in ``namespace``: the
    namespace default Secret, else the gateway default, else None. Returns
    (spec_auth, where-for-messages, error-or-None)."""
    note = getattr(snapshot, "note", None)
    if note is not None:
        # The incremental compiler (controller/compile/incremental.py) recompiles this
        # route when a default-auth Secret of the namespace comes, goes or changes.
        note((NAMESPACE_DEFAULTS, namespace))
    secret = _namespace_defaults(getattr(snapshot, "untracked", snapshot)).get(namespace)
    if secret is not None:
        meta = secret.get("metadata") or {}
        ref = f"{namespace}/{meta.get('name')}"
        where = f"namespace default Secret {ref} (label {DEFAULT_AUTH_LABEL})"
        label = (meta.get("labels") or {}).get(DEFAULT_AUTH_LABEL, "")
        auth_type = _SCHEME_BY_LOWER.get(str(label).lower())
        if auth_type is None:
            msg = f"Secret {ref}: label {DEFAULT_AUTH_LABEL}={label!r} is not one of {', '.join(SCHEMES)}"
            return {}, where, (INVALID_SECRET, msg)
        try:
            options, _ = spec_from_annotations(meta.get("annotations") or {}, namespace, options_only=True)
        except SpecError as e:
            return {}, where, (INVALID_SECRET, f"Secret {ref}: annotations: {e}")
        options["type"] = auth_type
        options["secretRef"] = {"name": meta.get("name"), "namespace": namespace}
        return options, where, None
    if defaults.secret_name and defaults.type:
        spec = {"type": defaults.type, "secretRef": {"name": defaults.secret_name, "namespace": defaults.secret_namespace}}
        return spec, GATEWAY_DEFAULT, None
    return None


# -- the namespace-default index (one per snapshot) -------------------------------

# What a route that relies on its namespace's default auth depends on, as the
# compiler's dependency tracking names it: (NAMESPACE_DEFAULTS, namespace).
NAMESPACE_DEFAULTS = "Secret:namespace-default-auth"

_index_for: tuple[Any, dict[str, dict]] | None = None


def _namespace_defaults(snapshot: Snapshot) -> dict[str, dict]:
    """namespace -> its default-auth Secret (oldest, then by name). Built once
    per snapshot: the compiler asks for every route with authRequired."""
    global _index_for
    if _index_for is not None and _index_for[0]() is snapshot:
        return _index_for[1]
    best: dict[str, dict] = {}
    for obj in snapshot.of(SECRET).values():
        meta = obj.get("metadata") or {}
        if DEFAULT_AUTH_LABEL not in (meta.get("labels") or {}):
            continue
        ns = meta.get("namespace") or ""
        rank = (meta.get("creationTimestamp") or "", meta.get("name") or "")
        cur = best.get(ns)
        if cur is None or rank < ((cur["metadata"].get("creationTimestamp") or ""), cur["metadata"].get("name") or ""):
            best[ns] = obj
    _index_for = (weakref.ref(snapshot), best)
    return best


# -- annotations --------------------------------------------------------------------


def spec_from_annotations(
    annotations: Mapping[str, str], namespace: str, *, options_only: bool = False
) -> tuple[dict | None, bool]:
    """``crdgate.io/auth-*`` annotations -> (an ``auth`` object or None,
    authRequired). With ``options_only`` (a namespace-default Secret), only the
    options are read and returned as a dict (type and secret come from the
    Secret itself)."""
    a = annotations
    spec: dict[str, Any] = {}
    jwt: dict[str, Any] = {}
    if a.get(A_HEADER):
        spec["header"] = a[A_HEADER].strip()
    if a.get(A_QUERY):
        spec["queryParam"] = a[A_QUERY].strip()
    if a.get(A_CONSUMERS):
        spec["allowedConsumers"] = _csv(a[A_CONSUMERS])
    if a.get(A_KEEP):
        spec["keepCredentials"] = _bool(a[A_KEEP], A_KEEP)
    if a.get(A_CONSUMER_HEADER):
        spec["consumerHeader"] = a[A_CONSUMER_HEADER].strip()
    if a.get(A_JWT_ISSUER):
        jwt["issuer"] = a[A_JWT_ISSUER].strip()
    if a.get(A_JWT_AUDIENCES):
        jwt["audiences"] = _csv(a[A_JWT_AUDIENCES])
    if a.get(A_JWT_JWKS_URL):
        jwt["jwksURL"] = a[A_JWT_JWKS_URL].strip()
    if a.get(A_JWT_LEEWAY):
        jwt["leeway"] = a[A_JWT_LEEWAY].strip()
    if a.get(A_JWT_REQUIRED):
        jwt["requiredClaims"] = _csv(a[A_JWT_REQUIRED])
    if a.get(A_JWT_FORWARD):
        forward = {}
        for item in _csv(a[A_JWT_FORWARD]):
            claim, sep, header = item.partition("=")
            if not sep or not claim.strip() or not header.strip():
                raise SpecError((A_JWT_FORWARD, f"expected claim=Header pairs, got {item!r}"))
            forward[claim.strip()] = header.strip()
        jwt["forwardClaims"] = forward
    if a.get(A_JWT_ALGORITHMS):
        jwt["algorithms"] = _csv(a[A_JWT_ALGORITHMS])
    if a.get(A_JWT_CONSUMER_CLAIM):
        jwt["consumerClaim"] = a[A_JWT_CONSUMER_CLAIM].strip()
    if jwt:
        spec["jwt"] = jwt
    if options_only:
        return spec, False

    required = _bool(a[A_REQUIRED], A_REQUIRED) if a.get(A_REQUIRED) else False
    auth_type = a.get(A_TYPE)
    secret = a.get(A_SECRET)
    if not auth_type and a.get(NGINX_TYPE):
        if a[NGINX_TYPE].strip().lower() != "basic":
            raise SpecError((NGINX_TYPE, "only 'basic' is supported"))
        auth_type, secret = SCHEME_BASIC, secret or a.get(NGINX_SECRET)
    if not auth_type:
        if spec or secret:
            raise SpecError((A_TYPE, "required when other crdgate.io/auth-* annotations are set"))
        return None, required
    # Enums in annotations are accepted in any case (as the policy annotations'); the model wants the CRD's spelling.
    spec["type"] = _SCHEME_BY_LOWER.get(auth_type.strip().lower(), auth_type.strip())
    if secret:
        ns, sep, name = secret.strip().rpartition("/")
        spec["secretRef"] = {"name": name, "namespace": ns if sep else namespace}
    return spec, required


def _csv(value: str) -> list[str]:
    return [p.strip() for p in value.split(",") if p.strip()]


def _bool(value: str, name: str) -> bool:
    v = value.strip().lower()
    if v not in ("true", "false"):
        raise SpecError((name, f"expected 'true' or 'false', got {value!r}"))
    return v == "true"


# -- building -----------------------------------------------------------------------

_authenticators: "weakref.WeakValueDictionary[str, Authenticator]" = weakref.WeakValueDictionary()
_remote_jwks: "weakref.WeakValueDictionary[tuple[str, float], RemoteJWKS]" = weakref.WeakValueDictionary()


def _build(
    spec: AuthSettings, snapshot: Snapshot, where: str, references: References | None, jwks_refresh_floor: float
) -> tuple[Authenticator | None, AuthError | None]:
    data: dict[str, bytes] = {}
    if spec.secret_name is not None:
        ns = spec.secret_namespace or ""
        if references is not None and not references.permitted(CORE_GROUP, SECRET, ns, spec.secret_name):
            # Checked before the lookup: a refused reference learns nothing of the Secret, not even that it exists.
            msg = f"{references.refusal(SECRET, ns, spec.secret_name)} ({where})"
            return UnavailableAuthenticator(spec.type, REF_NOT_PERMITTED), (REF_NOT_PERMITTED, msg)
        secret = snapshot.get(SECRET, spec.secret_namespace or "", spec.secret_name)
        if secret is None:
            msg = f"Secret {spec.secret_ref} not found ({where})"
            return UnavailableAuthenticator(spec.type, SECRET_NOT_FOUND), (SECRET_NOT_FOUND, msg)
        try:
            data = secret_data(secret)
        except SecretContentError as e:
            return _invalid(spec, e)
    key = _memo_key(spec, data)
    if spec.jwks_url:  # the floor is part of what gets built
        key += f"/floor={jwks_refresh_floor!r}"
    found = _authenticators.get(key)
    if found is not None:
        return found, None
    try:
        auth = _construct(spec, data, jwks_refresh_floor)
    except SecretContentError as e:
        return _invalid(spec, e)
    _authenticators[key] = auth
    return auth, None


def _invalid(spec: AuthSettings, e: Exception) -> tuple[Authenticator, AuthError]:
    return UnavailableAuthenticator(spec.type, INVALID_SECRET), (INVALID_SECRET, f"Secret {spec.secret_ref}: {e}")


def secret_data(secret: Mapping[str, Any]) -> dict[str, bytes]:
    """A Secret's entries as bytes: ``data`` is base64 (as the API serves it);
    ``stringData`` (accepted for the manifests folder) is plain and wins, as
    the API server does on write."""
    out: dict[str, bytes] = {}
    data = secret.get("data") or {}
    if not isinstance(data, Mapping):
        raise SecretContentError("data: expected a map")
    for k, v in data.items():
        if not isinstance(v, str):
            raise SecretContentError(f"data.{k}: expected a base64 string")
        try:
            out[k] = base64.b64decode(v, validate=True)
        except (binascii.Error, ValueError):
            raise SecretContentError(f"data.{k} is not valid base64") from None
    string_data = secret.get("stringData") or {}
    if not isinstance(string_data, Mapping):
        raise SecretContentError("stringData: expected a map")
    for k, v in string_data.items():
        if not isinstance(v, str):
            raise SecretContentError(f"stringData.{k}: expected a string")
        out[k] = v.encode("utf-8")
    return out


def _memo_key(spec: AuthSettings, data: Mapping[str, bytes]) -> str:
    h = hashlib.sha256(json.dumps(asdict(spec), sort_keys=True).encode())
    for k in sorted(data):
        h.update(b"\0" + k.encode() + b"\0" + hashlib.sha256(data[k]).digest())
    return h.hexdigest()


def _text(data: Mapping[str, bytes], key: str) -> str:
    try:
        return data[key].decode("utf-8")
    except UnicodeDecodeError:
        raise SecretContentError(f"data.{key} is not UTF-8 text") from None


def _construct(spec: AuthSettings, data: Mapping[str, bytes], jwks_refresh_floor: float) -> Authenticator:
    common = {
        "allowed_consumers": spec.allowed_consumers,
        "keep_credentials": spec.keep_credentials,
        "consumer_header": spec.consumer_header,
    }
    if spec.type == SCHEME_APIKEY:
        keys = {consumer: _text(data, consumer) for consumer in data}
        return APIKeyAuthenticator(keys, header=spec.header or DEFAULT_HEADER, query_param=spec.query_param, **common)
    if spec.type == SCHEME_BASIC:
        for name in ("htpasswd", "auth"):
            if name in data:
                return BasicAuthenticator(parse_htpasswd(_text(data, name), f"data.{name}"), **common)
        raise SecretContentError("no data key 'htpasswd' (or 'auth', as ingress-nginx) with htpasswd lines")
    remote = None
    if spec.jwks_url:
        remote = _remote_jwks.get((spec.jwks_url, jwks_refresh_floor))
        if remote is None:
            remote = RemoteJWKS(spec.jwks_url, refresh_floor=jwks_refresh_floor)
            _remote_jwks[(spec.jwks_url, jwks_refresh_floor)] = remote
    keys = jwt_keys(data) if spec.secret_name is not None else None
    return JWTAuthenticator(
        keys,
        remote=remote,
        header=spec.header or "Authorization",
        query_param=spec.query_param,
        issuer=spec.issuer,
        audiences=spec.audiences,
        leeway=spec.leeway,
        required_claims=spec.required_claims,
        forward_claims=dict(spec.forward_claims),
        algorithms=spec.algorithms,
        consumer_claim=spec.consumer_claim,
        **common,
    )


def jwt_keys(data: Mapping[str, bytes]) -> KeySet:
    """Verification keys from a Secret: ``jwks`` (a JWKS document), else
    ``publicKey`` or ``tls.crt`` (PEM key or certificate), else ``secret``
    (an HMAC key for HS256/384/512, at least 32 bytes)."""
    if "jwks" in data:
        return parse_jwks(data["jwks"], source="data.jwks")
    for name in ("publicKey", "tls.crt"):
        if name in data:
            return parse_pem(data[name], source=f"data.{name}")
    if "secret" in data:
        return hmac_keyset(data["secret"], source="data.secret")
    raise SecretContentError("no data key 'jwks', 'publicKey', 'tls.crt' or 'secret' with verification keys")
