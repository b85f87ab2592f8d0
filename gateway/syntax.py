"""The syntax of what configuration may put into an HTTP/1.1 message head, defined once.

A tenant who can create routes must never inject bytes into a request line or a
header that the gateway writes: a CR/LF in a redirect path would add headers to
the client's response (response splitting), and in a rewritten path it would
start a second request down a pooled upstream connection (request smuggling).
Every piece of a head that comes from configuration has its grammar here:

- a **path** written into a request target or a ``Location`` (the rewrite and
  redirect path modifiers) is an RFC 3986 ``path-absolute``: "/" then pchar or
  "/", pchar being unreserved / pct-encoded / sub-delims / ":" / "@" (the same
  set as Gateway API's path pattern). So: no space, no control character and no
  raw non-ASCII (percent-encode them), no "?" (a modifier replaces the path; the
  request's own query is appended after it) and no "#" (fragments are never sent);
- a **host name** written into ``Host`` or ``Location`` (rewrite and redirect
  hostname) is an RFC 1123 DNS name: dot-separated labels of 1-63 lower-case
  letters, digits and "-", neither starting nor ending with "-", 253 at most;
- a **header field value** holds no CR, LF or NUL (RFC 9110 5.5: the bytes that
  end a field or the head).

controller/models.py validates configuration with these (an ``InvalidSpec``
naming the field), crds/apiendpoints.crdgate.io.yaml states the same as OpenAPI
patterns (tests/test_crd_agreement.py holds the two together), and
gateway/exchange.py checks the bytes it is about to write with ``unsafe_target`` and
``unsafe_field_value`` as a last line of defence. Imports nothing of ours.
"""

from __future__ import annotations

import re

PATH_PATTERN = r"/(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/]|%[0-9A-Fa-f]{2})*"
HOSTNAME_PATTERN = r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*"

_PATH = re.compile(PATH_PATTERN)
_PCHAR = re.compile(r"[A-Za-z0-9\-._~!$&'()*+,;=:@/]")
_HOSTNAME = re.compile(HOSTNAME_PATTERN)
_FIELD_VALUE_BAD = re.compile(r"[\r\n\x00]")
# What ends a request-target (space) or a head (CR, LF), and every other control byte.
_TARGET_BAD_BYTE = re.compile(rb"[\x00-\x20\x7f]").search
_FIELD_VALUE_BAD_BYTE = re.compile(rb"[\r\n\x00]").search


def path_problem(path: str) -> str | None:
    """Why ``path`` may not be written as a request path or a Location path; None if it may."""
    if _PATH.fullmatch(path):
        return None
    if not path.startswith("/"):
        return "must start with '/'"
    i = 0
    while i < len(path):
        c = path[i]
        if c == "%":
            if not re.fullmatch(r"[0-9A-Fa-f]{2}", path[i + 1 : i + 3]):
                return "'%' must start a %XX escape (write '%25' for a literal '%')"
            i += 3
            continue
        if not _PCHAR.fullmatch(c):
            break
        i += 1
    if i >= len(path):
        return "is not an RFC 3986 path"
    c = path[i]
    if c == "?":
        return "must not contain '?': it replaces the path only, the request's query is kept"
    if c == "#":
        return "must not contain '#': fragments are never sent"
    if c <= " " or c == "\x7f":
        return f"must not contain {c!r}: spaces and control characters are not allowed (RFC 3986)"
    return f"must not contain {c!r}: percent-encode it (RFC 3986)"


def valid_hostname(host: str) -> bool:
    """An RFC 1123 host name in lower case (no wildcard, no port)."""
    return len(host) <= 253 and _HOSTNAME.fullmatch(host) is not None


def valid_field_value(value: str) -> bool:
    """A header field value: no CR, LF or NUL."""
    return _FIELD_VALUE_BAD.search(value) is None


def unsafe_target(target: bytes) -> bool:
    """Whether a request-target about to be written holds a space or a control byte."""
    return _TARGET_BAD_BYTE(target) is not None


def unsafe_field_value(value: bytes) -> bool:
    """Whether a header value (or a host) about to be written holds CR, LF or NUL."""
    return _FIELD_VALUE_BAD_BYTE(value) is not None
