"""The plain settings of a route's policies that the proxy reads as Python objects.

Split from gateway/routing.py, which re-exports them: unlike the classes
routing.pxd declares, these are not compiled, and pickle by name when a table
travels to a proxy worker (gateway/tablewire.py).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Rewrite:
    """Gateway API URLRewrite: ReplacePrefixMatch / ReplaceFullPath and hostname."""

    path_type: str | None = None  # "ReplacePrefixMatch" | "ReplaceFullPath" | None
    replace_prefix_match: str | None = None
    replace_full_path: str | None = None
    hostname: str | None = None


@dataclass(frozen=True, slots=True)
class HeaderModifier:
    """Applied in this order: set, add, remove. Names in ``remove`` are lower-case."""

    set: tuple[tuple[str, str], ...] = ()
    add: tuple[tuple[str, str], ...] = ()
    remove: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Redirect:
    scheme: str | None = None
    hostname: str | None = None
    port: int | None = None
    path_type: str | None = None  # "ReplacePrefixMatch" | "ReplaceFullPath" | None
    replace_prefix_match: str | None = None
    replace_full_path: str | None = None
    status_code: int = 302


@dataclass(frozen=True, slots=True)
class CorsPolicy:
    allow_origins: tuple[str, ...] = ()  # "*" or exact origins or "https://*.example.com"
    allow_methods: tuple[str, ...] = ()
    allow_headers: tuple[str, ...] = ()
    expose_headers: tuple[str, ...] = ()
    allow_credentials: bool = False
    max_age: int | None = None
