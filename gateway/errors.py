"""Every exception crdgate raises, in one tree (the ground floor: imports nothing).

Both halves use it: the data plane (gateway/) and the controller (controller/)
raise these, and the front door (the command line) catches them by branch::

    CrdgateError
    ├── ConfigError                  input crdgate cannot use; the message names it
    │   ├── SpecError                a spec field (models; auth; an Ingress's auth annotations)
    │   ├── AnnotationError          an Ingress's crdgate.io/ policy annotations
    │   ├── InvalidObject            one object left out of the table: its status reason and message
    │   ├── SchemaError              an object its CRD's schema would refuse (Gateway API kinds); ``problems``
    │   ├── SecretContentError       a referenced Secret's content (reported as InvalidSecret)
    │   ├── CertificateError         a TLS bundle that cannot serve
    │   ├── RegexError               a pattern RE2 refuses
    │   ├── ManifestFolderError      the manifests folder named on the command line is missing
    │   └── KubeConfigError          the kubeconfig / in-cluster account cannot be loaded
    ├── ApiError                     a non-2xx answer of the Kubernetes API
    │   └── Gone                     410: relist
    ├── LeaseNamespaceMissing        the leader-election Lease's namespace does not exist
    ├── BadTarget                    a request target the proxy refuses (answered with ``status``)
    ├── ExplainError                 a request ``crdgate explain`` cannot route: the proxy would refuse it (400)
    ├── ExplainFailed                ``crdgate explain`` could not answer (a bad URL, an unreachable admin)
    ├── ExportFailed                 the OTLP collector could not be reached or refused the spans
    ├── ChannelError                 a table channel's peer sent something that is not a frame
    └── MalformedFields              an HTTP/2 header block breaks a rule of RFC 9113 (a client's or a backend's)

Each keeps the built-in base its callers catch it by (``ValueError`` for the
configuration errors that are about a value, ``FileNotFoundError`` for the
missing folder). Private control flow stays where it is used (the proxy's
``_Reject`` in gateway/http1.py, the file source's ``_ParseError``).
"""

from __future__ import annotations

from typing import Any


class CrdgateError(Exception):
    """The root: anything crdgate raises on purpose."""


# -- configuration -------------------------------------------------------------


class ConfigError(CrdgateError):
    """Input crdgate cannot use (a resource, a Secret, a file, a flag's target)."""


class SpecError(ConfigError, ValueError):
    """Spec errors, each naming the field it is about (relative to the model validated):
    ``problems`` are (field, message), field "" for the object itself."""

    def __init__(self, *problems: tuple[str, str]):
        self.problems = problems
        super().__init__("; ".join(f"{f}: {m}" if f else m for f, m in problems))


class AnnotationError(ConfigError, ValueError):
    """One or more annotations are invalid; ``problems`` are (annotation, message)."""

    def __init__(self, problems: tuple[tuple[str, str], ...]):
        self.problems = problems
        super().__init__("; ".join(f"metadata.annotations[{a}]: {msg}" for a, msg in problems))


class InvalidObject(ConfigError):
    """One object's problem: becomes its status (``reason``, ``message``); the object is left out."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message


class SchemaError(ConfigError, ValueError):
    """An object its CRD's schema would refuse; ``problems`` name the fields ("spec.listeners[0].port: ...")."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("; ".join(problems))


class SecretContentError(ConfigError, ValueError):
    """The referenced Secret's content cannot be used (reported as InvalidSecret).
    Messages name data keys and line numbers, never values."""


class CertificateError(ConfigError, ValueError):
    """A bundle that cannot serve: the message says why (never the key)."""


class RegexError(ConfigError, ValueError):
    """A pattern RE2 refuses; the message is RE2's reason (e.g. ``invalid perl operator: (?=``)."""


class ManifestFolderError(ConfigError, FileNotFoundError):
    """The manifests folder (or file) named on the command line does not exist."""


class KubeConfigError(ConfigError):
    """The kubeconfig (or in-cluster service account) could not be loaded."""


# -- the Kubernetes API --------------------------------------------------------


class ApiError(CrdgateError):
    """A non-2xx answer; ``status`` is the HTTP code, the rest comes from the Status body."""

    def __init__(self, status: int, reason: str = "", message: str = "", retry_after: float | None = None):
        super().__init__(f"{status} {reason}: {message}" if reason or message else str(status))
        self.status = status
        self.reason = reason
        self.message = message
        self.retry_after = retry_after

    @classmethod
    def from_status(
        cls, status_obj: Any, http_status: int | None = None, retry_after: float | None = None
    ) -> "ApiError":
        """Build from a ``Status`` object (an HTTP error body or a watch ERROR event)."""
        code = status_obj.get("code") or http_status or 500
        details = status_obj.get("details") or {}
        if retry_after is None and details.get("retryAfterSeconds") is not None:
            retry_after = float(details["retryAfterSeconds"])
        err_cls = Gone if code == 410 else ApiError
        return err_cls(int(code), str(status_obj.get("reason") or ""), str(status_obj.get("message") or ""), retry_after)


class Gone(ApiError):
    """410: the resourceVersion (or continue token) is older than the server keeps; relist."""


class LeaseNamespaceMissing(CrdgateError):
    """The Lease cannot be created: its namespace does not exist (the API answered 404)."""

    def __init__(self, namespace: str):
        super().__init__(
            f"namespace {namespace!r} of the leader-election Lease does not exist, so this gateway routes "
            f"but writes no status: create it (kubectl create namespace {namespace}), or pass "
            f"--lease-namespace with an existing namespace, or --leader-elect off for a single replica; "
            f"retrying quietly until then"
        )
        self.namespace = namespace


# -- the data plane ------------------------------------------------------------


class BadTarget(CrdgateError):
    """The request target cannot be routed safely; the proxy answers ``status``."""

    def __init__(self, reason: str, status: int = 400):
        super().__init__(reason)
        self.reason = reason
        self.status = status


class ExplainError(CrdgateError, ValueError):
    """A request that the proxy would refuse before routing (it answers 400)."""


class ExplainFailed(CrdgateError):
    """The request could not be explained (a bad URL, an unreachable admin): exit 2."""


class ExportFailed(CrdgateError):
    """The OTLP collector could not be reached, or refused the spans (gateway/otlp.py)."""


class ChannelError(CrdgateError):
    """A table channel's other end sent something that is not a frame of its protocol (gateway/tablewire.py)."""


class MalformedFields(CrdgateError, ValueError):
    """An HTTP/2 header block breaks a rule of RFC 9113 (the message says which; gateway/h2fields.py)."""


class InotifyUnavailable(CrdgateError, OSError):
    """inotify cannot be used here (not Linux, no symbol, out of watches); the manifests
    watch falls back to polling (controller/inotify.py)."""
