"""TLS certificates of the routed objects: Secrets -> CertBundles by host pattern, problems -> status.

Neighbours: reads the same ``controller.store.Snapshot`` and ``CompileResult``
as the publisher (controller/publish.py); builds ``gateway.tls.CertBundle``s
that crdgate/run.py hands to the proxy's ``CertificateStore``. Pure, like
controller/compile/: no I/O, no clock, inputs never mutated.

Who names a certificate, for which hosts:

- an APIEndpoint's ``spec.tls.secretName``, for its ``spec.hosts``;
- an Ingress's ``spec.tls[].secretName``, for that entry's ``hosts`` (or, when
  it lists none, the hosts of the Ingress's rules);
- a Gateway's HTTPS listener (tls mode Terminate), its first
  ``certificateRefs`` entry, for the listener's ``hostname`` (none: pattern
  ``*``, unless ``--default-certificate`` is set), once the compile found the
  reference allowed and the Secret there (controller/compile/listeners.py);
  what is wrong with it shows on that listener's conditions;
- ``--default-certificate NAMESPACE/NAME``, for every other name (pattern ``*``).

Only objects in the table count (one left out serves nothing). Two objects
naming different Secrets for one host: the older (creationTimestamp, then
namespace/name) keeps it, the other is told ``Conflicted``.

A Secret must hold PEM ``tls.crt`` (the server certificate first, then its
chain) and an unencrypted PEM ``tls.key`` that matches it, base64 in ``data``
as the API serves them. A missing Secret is ``SecretNotFound`` and its hosts
lose the certificate; an invalid one is ``InvalidCertificate``, and its bundle
is still handed on: the proxy fails to load it and keeps serving the previous
certificate of those hosts. Either way the owning object's status says so
(``ResolvedRefs`` False, state ``Error``; its routes keep serving).

``CertificateCompiler`` wraps an incremental ``Compiler`` (controller/compile/incremental.py)
for the Publisher's ``compiler``/``refresh`` seams, so certificates and their
statuses follow every publish without changing the compiler itself.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import NamedTuple

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from controller import models as m
from controller.compile import (
    CONFLICTED,
    ERROR,
    INVALID_SPEC,
    SECRET_NOT_FOUND,
    CompileOptions,
    CompileResult,
    Compiler,
    Condition,
    ObjectStatus,
)
from controller.compile.listeners import INVALID_CERTIFICATE_REF, ListenerStatus
from controller.store import APIENDPOINT, GATEWAY, INGRESS, SECRET, Snapshot
from gateway.tls import DEFAULT_PATTERN, CertBundle

INVALID_CERTIFICATE = "InvalidCertificate"
# The key of the default certificate's problems (it has no owning object: they are logged).
DEFAULT_OWNER = "--default-certificate"

Problems = Mapping[str, tuple[tuple[str, str], ...]]  # status key -> ((reason, message), ...)


@dataclass(frozen=True)
class CertificateOptions:
    default_certificate: tuple[str, str] | None = None  # (namespace, name) of --default-certificate


@dataclass(frozen=True)
class TLSCompileResult(CompileResult):
    """A CompileResult that also carries the certificates to serve."""

    certificates: Mapping[str, CertBundle] = field(default_factory=dict, compare=False, repr=False)
    certificate_problems: Problems = field(default_factory=dict, compare=False)


class _Claim(NamedTuple):
    created: str
    owner: str  # "namespace/name"
    status_key: str  # "Kind:namespace/name"
    where: str  # the field naming the Secret, for messages
    secret: tuple[str, str]
    hosts: tuple[str, ...]
    listener: str | None = None  # a Gateway's listener: its problems go on its conditions


# -- Secrets -> bundles ----------------------------------------------------------------


def _decode(value: object, key: str) -> tuple[bytes, str | None]:
    if not isinstance(value, str) or not value:
        return b"", f"data[{key}] is missing (a kubernetes.io/tls Secret holds tls.crt and tls.key)"
    try:
        return base64.b64decode(value, validate=True), None
    except (binascii.Error, ValueError):
        return b"", f"data[{key}] is not base64"


def _spki(key) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _pair_error(cert_pem: bytes, key_pem: bytes) -> str | None:
    """Why this certificate and key cannot serve together (None: they can)."""
    try:
        chain = x509.load_pem_x509_certificates(cert_pem)
    except ValueError:
        return "tls.crt holds no PEM certificate"
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except TypeError:
        return "tls.key is encrypted (a password-protected key cannot be used)"
    except ValueError:
        return "tls.key holds no PEM private key"
    except Exception as e:  # e.g. an algorithm this cryptography build does not know
        return f"tls.key cannot be read ({type(e).__name__})"
    if _spki(chain[0].public_key()) != _spki(key.public_key()):
        return "tls.key does not match the certificate in tls.crt (the server's certificate must come first)"
    return None


@lru_cache(maxsize=1024)
def _bundle(namespace: str, name: str, crt: str | None, key: str | None) -> tuple[CertBundle, str | None]:
    """One Secret's bundle and what is wrong with it; cached, so an unchanged Secret is checked once
    and yields the very same bundle (the proxy then reuses its context without comparing bytes)."""
    cert_pem, err_crt = _decode(crt, "tls.crt")
    key_pem, err_key = _decode(key, "tls.key")
    error = err_crt or err_key or _pair_error(cert_pem, key_pem)
    return CertBundle(cert_pem, key_pem, source=f"Secret {namespace}/{name}"), error


def secret_bundle(snapshot: Snapshot, namespace: str, name: str) -> tuple[CertBundle | None, tuple[str, str] | None]:
    """The bundle of Secret ``namespace/name`` and its problem ``(reason, message)``, if any."""
    secret = snapshot.get(SECRET, namespace, name)
    if secret is None:
        return None, (SECRET_NOT_FOUND, f"Secret {namespace}/{name} not found")
    data = secret.get("data")
    data = data if isinstance(data, Mapping) else {}
    crt, key = data.get("tls.crt"), data.get("tls.key")
    crt, key = (crt if isinstance(crt, str) else None), (key if isinstance(key, str) else None)
    bundle, error = _bundle(namespace, name, crt, key)
    return bundle, (None if error is None else (INVALID_CERTIFICATE, f"Secret {namespace}/{name}: {error}"))


# -- who names which Secret ----------------------------------------------------------------


def _created(obj: Mapping) -> str:
    created = (obj.get("metadata") or {}).get("creationTimestamp") or ""
    return created if isinstance(created, str) else str(created)


def _hosts(values: object) -> tuple[str, ...]:
    if not isinstance(values, list):
        return ()
    return tuple(dict.fromkeys(h.lower().rstrip(".") for h in values if isinstance(h, str) and h))


def _claims(snapshot: Snapshot, status_key: str, problems: dict[str, list]) -> list[_Claim]:
    kind, _, key = status_key.partition(":")
    namespace, _, name = key.partition("/")
    obj = snapshot.get(kind, namespace, name)
    spec = obj.get("spec") if obj is not None else None
    if not isinstance(spec, Mapping):
        return []
    owner, created = f"{namespace}/{name}", _created(obj)
    out: list[_Claim] = []
    if kind == APIENDPOINT:
        tls = spec.get("tls")
        secret = tls.get("secretName") if isinstance(tls, Mapping) else None
        if isinstance(secret, str) and secret:
            hosts = _hosts(spec.get("hosts"))
            if not hosts:
                problems.setdefault(status_key, []).append(
                    (INVALID_SPEC, "spec.tls: the APIEndpoint has no spec.hosts, so its certificate would serve no "
                                   "name (a catch-all certificate is --default-certificate)")
                )
            else:
                out.append(_Claim(created, owner, status_key, "spec.tls.secretName", (namespace, secret), hosts))
    elif kind == INGRESS:
        entries = spec.get("tls")
        rule_hosts = _hosts([r.get("host") for r in spec.get("rules") or () if isinstance(r, Mapping)])
        for i, entry in enumerate(entries if isinstance(entries, list) else ()):
            if not isinstance(entry, Mapping):
                continue
            secret = entry.get("secretName")
            if not isinstance(secret, str) or not secret:
                continue  # no Secret: nothing to serve (Ingress allows this for a controller default)
            hosts = _hosts(entry.get("hosts")) or rule_hosts
            bad = [h for h in hosts if not m.valid_hostname(h)]
            if bad:
                problems.setdefault(status_key, []).append(
                    (INVALID_SPEC, f"spec.tls[{i}].hosts: {bad[0]!r} is not a host name")
                )
                hosts = tuple(h for h in hosts if h not in bad)
            if not hosts:
                if not bad:
                    problems.setdefault(status_key, []).append(
                        (INVALID_SPEC, f"spec.tls[{i}]: no hosts and no rule names a host, so the certificate "
                                       "would serve no name (a catch-all certificate is --default-certificate)")
                    )
                continue
            out.append(_Claim(created, owner, status_key, f"spec.tls[{i}].secretName", (namespace, secret), hosts))
    return out


def _gateway_claims(snapshot: Snapshot, result: CompileResult) -> list[_Claim]:
    """The certificates of our Gateways' HTTPS listeners whose references the compile resolved."""
    out: list[_Claim] = []
    for key, obj in snapshot.of(GATEWAY).items():
        status_key = f"{GATEWAY}:{key}"
        status = result.statuses.get(status_key)
        if status is None or not status.listeners:
            continue  # not ours, or invalid
        resolved = {ls.name for ls in status.listeners if _listener_resolved(ls)}
        namespace = key.partition("/")[0]
        listeners = (obj.get("spec") or {}).get("listeners") or ()
        for i, ls in enumerate(listeners):
            if not isinstance(ls, Mapping) or ls.get("protocol") != "HTTPS" or ls.get("name") not in resolved:
                continue
            ref = ((ls.get("tls") or {}).get("certificateRefs") or [{}])[0]
            host = ls.get("hostname")
            hosts = (host.lower(),) if isinstance(host, str) and host else (DEFAULT_PATTERN,)
            out.append(_Claim(_created(obj), key, status_key, f"spec.listeners[{i}].tls.certificateRefs[0]",
                              (ref.get("namespace") or namespace, ref["name"]), hosts, ls["name"]))
    return out


def _listener_resolved(ls: ListenerStatus) -> bool:
    return all(c.status == "True" for c in ls.conditions if c.type in ("Accepted", "ResolvedRefs"))


def compile_certificates(
    snapshot: Snapshot, result: CompileResult, options: CertificateOptions = CertificateOptions()
) -> tuple[dict[str, CertBundle], dict[str, tuple[tuple[str, str], ...]]]:
    """Host pattern -> bundle (``*`` = the default certificate), and problems per status key.

    The default certificate's problems are under ``DEFAULT_OWNER``; a Gateway
    listener's under ``Gateway:ns/name#listener``.
    """
    problems: dict[str, list[tuple[str, str]]] = {}
    claims: list[_Claim] = []
    for status_key in result.routed:
        claims += _claims(snapshot, status_key, problems)
    claims += _gateway_claims(snapshot, result)
    claims.sort()
    certs: dict[str, CertBundle] = {}
    holder: dict[str, _Claim] = {}
    for claim in claims:
        owner = claim.status_key if claim.listener is None else f"{claim.status_key}#{claim.listener}"
        bundle, problem = secret_bundle(snapshot, *claim.secret)
        if problem is not None:
            problems.setdefault(owner, []).append((problem[0], f"{claim.where}: {problem[1]}"))
        if bundle is None:
            continue
        for host in claim.hosts:
            first = holder.get(host)
            if first is None:
                holder[host] = claim
                certs[host] = bundle
            elif first.secret != claim.secret:
                problems.setdefault(owner, []).append((
                    CONFLICTED,
                    f"{claim.where}: host {host} is served with Secret {'/'.join(first.secret)} of {first.owner} "
                    f"(older)",
                ))
    if options.default_certificate is not None:
        ns, name = options.default_certificate
        bundle, problem = secret_bundle(snapshot, ns, name)
        if problem is not None:
            problems.setdefault(DEFAULT_OWNER, []).append(problem)
        if bundle is not None:
            certs[DEFAULT_PATTERN] = bundle
    return certs, {k: tuple(dict.fromkeys(v)) for k, v in sorted(problems.items())}


# -- problems -> statuses --------------------------------------------------------------------


def with_certificate_problems(statuses: Mapping[str, ObjectStatus], problems: Problems) -> dict[str, ObjectStatus]:
    """``statuses`` with each object's certificate problems: ``ResolvedRefs`` False, state Error.

    The object's routes still serve (over plain HTTP, and over TLS with the
    previous or default certificate), so ``Accepted`` and ``Ready`` are kept.
    """
    out = dict(statuses)
    for key, probs in problems.items():
        if "#" in key:
            status_key, _, listener = key.partition("#")
            if status_key in out and probs:
                out[status_key] = _with_listener_problems(out[status_key], listener, probs)
            continue
        st = out.get(key)
        if st is None or not probs:
            continue
        reason = probs[0][0]
        text = "; ".join(msg for _, msg in probs)
        conditions = []
        for c in st.conditions:
            if c.type == "ResolvedRefs":
                c = (Condition(c.type, "False", c.reason, f"{c.message}; {text}") if c.status == "False"
                     else Condition(c.type, "False", reason, text))
            conditions.append(c)
        if st.state == ERROR:
            out[key] = replace(st, message=f"{st.message}; {text}", conditions=tuple(conditions))
        else:
            out[key] = replace(st, state=ERROR, reason=reason, message=f"{text}; {st.message}",
                               conditions=tuple(conditions))
    return out


def _with_listener_problems(st: ObjectStatus, listener: str, probs) -> ObjectStatus:
    """A Gateway's status with one HTTPS listener's certificate problems on that listener:
    ``ResolvedRefs`` False (``InvalidCertificateRef``; ``OverlappingTLSConfig`` for a host
    another object's certificate serves), the listener no longer programmed."""
    text = "; ".join(msg for _, msg in probs)
    invalid = [msg for reason, msg in probs if reason != CONFLICTED]
    overlapping = [msg for reason, msg in probs if reason == CONFLICTED]
    listeners = []
    for ls in st.listeners:
        if ls.name == listener:
            conds = []
            for c in ls.conditions:
                if invalid and c.type == "ResolvedRefs":
                    c = Condition(c.type, "False", INVALID_CERTIFICATE_REF, "; ".join(invalid))
                elif invalid and c.type == "Programmed":
                    c = Condition(c.type, "False", "Invalid", "; ".join(invalid))
                conds.append(c)
            if overlapping:
                overlap = "; ".join(overlapping)
                conds.append(Condition("OverlappingTLSConfig", "True", "OverlappingCertificates", overlap))
            ls = replace(ls, conditions=tuple(conds))
        listeners.append(ls)
    message = f"listener {listener}: {text}" if st.state != ERROR else f"{st.message}; listener {listener}: {text}"
    return replace(st, state=ERROR, reason=probs[0][0], message=message, listeners=tuple(listeners))


class CertificateCompiler:
    """``compile``/``refresh`` for the Publisher: the compiler's, plus certificates and their statuses.

    Routes are compiled incrementally (an own ``Compiler``); certificates are
    worked out again from every routed object on each compile (a pass over the
    objects, no parsing unless a Secret changed: bundles are cached)."""

    def __init__(self, options: CertificateOptions = CertificateOptions()):
        self.options = options
        self._routes = Compiler()

    def compile(self, snapshot: Snapshot, options: CompileOptions, generation: int) -> TLSCompileResult:
        base = self._routes.compile(snapshot, options, generation)
        certs, problems = compile_certificates(snapshot, base, self.options)
        return self._with(base, certs, problems)

    def adopt(self, snapshot: Snapshot, keys) -> None:
        # Status-only changes: no certificate reads a status either.
        self._routes.adopt(snapshot, keys)

    def refresh(self, previous: CompileResult, snapshot: Snapshot, generation: int) -> TLSCompileResult:
        # Only EndpointSlices moved: certificates are unchanged, statuses are redone.
        base = self._routes.refresh(previous, snapshot, generation)
        certs = getattr(previous, "certificates", {})
        problems = getattr(previous, "certificate_problems", {})
        return self._with(base, certs, problems)

    @staticmethod
    def _with(base: CompileResult, certs: Mapping[str, CertBundle], problems: Problems) -> TLSCompileResult:
        return TLSCompileResult(
            table=base.table,
            statuses=with_certificate_problems(base.statuses, problems),
            backend_keys=base.backend_keys,
            routed=base.routed,
            certificates=certs,
            certificate_problems=problems,
            incremental=base.incremental,
        )
