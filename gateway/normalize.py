"""Request-target normalisation: done once, before matching.

The path a route matches is the path the upstream receives, so a trick that
changes meaning between the two (``/admin/../public``, ``/%61dmin``,
``//admin``, ``/%2e%2e/``) can never reach a protected route under another
route's policies. Steps (RFC 3986 6.2.2): decode percent-encoded *unreserved*
characters, upper-case the hex of the remaining escapes, merge repeated
slashes, remove dot segments. A path that climbs above the root, a bad escape,
path parameters (``;``), and the escapes that would let an upstream re-split
the path differently from us (``%2F``, ``%5C``, ``%00``, ``%3B``) are rejected
as 400 rather than guessed at.

``valid_host`` checks a Host header or an absolute-form authority the same way.

Imports nothing of ours but the exception tree (gateway/errors.py); used by gateway/exchange.py.
"""

from __future__ import annotations

from gateway.errors import BadTarget

_HEX = b"0123456789ABCDEFabcdef"
_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
# Escapes we refuse: an encoded slash or backslash lets an upstream that decodes
# them see a different path structure than the one we matched; NUL truncates;
# an encoded ";" is refused for the same reason as a raw one.
_REFUSED = frozenset((0x2F, 0x5C, 0x00, 0x3B))
# Bytes allowed raw in a path (RFC 3986 pchar plus "/"), besides escapes.
# ";" is left out on purpose: servers disagree on path parameters (some strip
# ";x=1" from a segment, so "/admin;x=1" reaches "/admin" behind another route).
_PATH_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,=:@/%")


def _marking(allowed: bytes | frozenset) -> bytes:
    """A bytes.translate table mapping ``allowed`` to "." and every other byte to NUL: one
    translate and one find check a whole value, where a loop would run Python code per byte
    (and deletechars would rebuild its table on each call)."""
    return bytes(46 if c in allowed else 0 for c in range(256))


def _has_other(value: bytes, marking: bytes) -> bool:
    return value.translate(marking).find(b"\0") != -1


# Checked for every target the memo in exchange.py misses (paths with ids in them miss it).
_PATH_MARK = _marking(_PATH_SAFE)
# RFC 3986 reg-name and IPv4address characters, plus ':' before a port.
_HOST_MARK = _marking(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+,;=%:")
_IP_LITERAL_MARK = _marking(b"0123456789abcdefABCDEF:.")


def split_target(target: bytes) -> tuple[bytes, bytes, bytes | None]:
    """Split origin-form or absolute-form into (path, query, authority or None)."""
    authority = None
    if not target.startswith(b"/"):
        lower = target[:8].lower()
        if lower.startswith(b"http://") or lower.startswith(b"https://"):
            rest = target[target.index(b"//") + 2 :]
            slash = rest.find(b"/")
            qmark = rest.find(b"?")
            end = min(i for i in (slash, qmark, len(rest)) if i != -1)
            authority = rest[:end]
            target = rest[end:] or b"/"
            if target.startswith(b"?"):
                target = b"/" + target
        elif target == b"*":
            return b"*", b"", None
        else:
            raise BadTarget("request target must be a path")
    # bytes.find, not "in": in CPython 3.11 "b'x' in data" first tries the
    # argument as an int and builds (then drops) a TypeError on every call.
    if target.find(b"#") != -1:
        raise BadTarget("fragment in request target")
    q = target.find(b"?")
    if q == -1:
        return target, b"", authority
    return target[:q], target[q + 1 :], authority


def normalize_path(path: bytes) -> str:
    """Return the normalised path as ``str``; raise BadTarget when unsafe."""
    # Fast path: most paths need no work at all.
    if _has_other(path, _PATH_MARK):
        raise BadTarget("invalid character in path")
    if path.find(b"%") == -1 and path.find(b"//") == -1 and path.find(b"/.") == -1:
        return path.decode("ascii")
    if path.find(b"%") != -1:
        path = _decode_unreserved(path)
    segments: list[bytes] = []
    parts = path.split(b"/")
    # parts[0] is "" (path starts with "/"); a trailing "" keeps a trailing slash.
    last = len(parts) - 1
    for i, seg in enumerate(parts[1:], start=1):
        if seg == b"" and i != last:
            continue  # merge repeated slashes
        if seg == b".":
            if i == last:
                segments.append(b"")
            continue
        if seg == b"..":
            if not segments or segments == [b""]:
                raise BadTarget("path escapes the root")
            segments.pop()
            if i == last:
                segments.append(b"")
            continue
        segments.append(seg)
    out = b"/" + b"/".join(segments)
    return out.decode("ascii")


def _decode_unreserved(path: bytes) -> bytes:
    # Work per escape, not per byte: every piece after a "%" starts with its two hex digits.
    pieces = path.split(b"%")
    out = [pieces[0]]
    last = len(pieces) - 1
    for i in range(1, last + 1):
        piece = pieces[i]
        if len(piece) < 2:
            # Another "%" comes where a digit should: truncated if the path ends within two bytes.
            rest = sum(len(p) for p in pieces[i:]) + last - i
            raise BadTarget("truncated percent-escape" if rest < 2 else "invalid percent-escape")
        h1, h2 = piece[0], piece[1]
        if h1 not in _HEX or h2 not in _HEX:
            raise BadTarget("invalid percent-escape")
        value = int(piece[:2], 16)
        if value in _REFUSED:
            raise BadTarget("encoded slash, backslash or NUL in path")
        if value in _UNRESERVED:
            out.append(bytes((value,)))
        else:
            out.append(b"%" + piece[:2].upper())
        out.append(piece[2:])
    return b"".join(out)


def valid_host(value: bytes) -> bool:
    """RFC 9112 3.2: Host (or an absolute-form authority) is uri-host [":" port].

    Anything else gets 400, as nginx does: a host with spaces, '/', '@'
    (userinfo) or a stray bracket would otherwise reach the backend, whose
    links and redirects are often built from it.
    """
    if value[:1] == b"[":  # IP-literal: [v6address], then an optional port
        end = value.find(b"]")
        if end < 2 or _has_other(value[1:end], _IP_LITERAL_MARK):
            return False
        port = value[end + 1:]
        return not port or (port[:1] == b":" and _valid_port(port[1:]))
    if _has_other(value, _HOST_MARK):
        return False
    colon = value.find(b":")
    if colon < 0:
        return True
    return colon > 0 and _valid_port(value[colon + 1:])


def _valid_port(port: bytes) -> bool:
    """Empty (the scheme's default) or a number up to 65535."""
    return not port or (port.isdigit() and len(port) <= 5 and int(port) <= 65535)


def normalize_target(target: bytes) -> tuple[str, str, bytes | None]:
    """(normalised path, raw query, authority from an absolute-form target)."""
    if not target:
        raise BadTarget("empty request target")
    path, query, authority = split_target(target)
    if path == b"*":
        return "*", "", None
    try:
        q = query.decode("ascii")
    except UnicodeDecodeError:
        raise BadTarget("invalid character in query") from None
    return normalize_path(path), q, authority
