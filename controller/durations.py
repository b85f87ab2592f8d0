"""Duration strings of the APIEndpoint spec ("250ms", "15s", "1m", "1h", "1m30s").

Used by controller/models.py to turn ``timeouts``, ``retries.backoff`` and
``auth.jwt.leeway`` into seconds. The grammar is Gateway API's (a sequence of
number+unit parts, units ``h``, ``m``, ``s``, ``ms``); a decimal number is
accepted too ("1.5s"), since people write it and nothing is ambiguous about it.
Bare numbers are refused on purpose: ``30`` could mean seconds or milliseconds.
"""

from __future__ import annotations

import re

_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_WHOLE = re.compile(r"(?:\d+(?:\.\d+)?(?:ms|h|m|s))+")
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def parse_duration(text: str) -> float:
    """Seconds in ``text``; ValueError with a message a user can act on."""
    if not isinstance(text, str):
        raise ValueError(f"expected a duration string like '500ms', '15s' or '1m', got {text!r}")
    s = text.strip()
    if not s or _WHOLE.fullmatch(s) is None:
        raise ValueError(f"invalid duration {text!r}: use a number and a unit h, m, s or ms, e.g. '500ms', '15s', '1m30s'")
    return sum(float(n) * _UNIT_SECONDS[u] for n, u in _PART.findall(s))


def format_duration(seconds: float) -> str:
    """The short form for messages and the routes view: 0.25 -> '250ms', 90 -> '1m30s'."""
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    whole = int(seconds)
    if whole != seconds:
        return f"{seconds:g}s"
    h, rest = divmod(whole, 3600)
    m, s = divmod(rest, 60)
    out = (f"{h}h" if h else "") + (f"{m}m" if m else "") + (f"{s}s" if s else "")
    return out or "0s"
