"""Finding the external programs the benchmark drives, and naming what is missing.

The benchmark installs nothing. Each tool maps to the Debian package that
provides it, so a missing tool turns into one exact `apt-get install` line and
the scenarios that need it are skipped with that line as the reason.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field

# program -> Debian package that ships it
PACKAGES = {
    "wrk": "wrk",
    "nginx": "nginx-light",
    "redis-server": "redis-server",
    "taskset": "util-linux",
    "h2load": "nghttp2-client",  # HTTP/2 and gRPC scenarios (bench/http2.py)
}


@dataclass(frozen=True)
class Tools:
    """Absolute paths of the programs found (None when missing)."""

    paths: dict[str, str | None] = field(default_factory=dict)

    def has(self, name: str) -> bool:
        return self.paths.get(name) is not None

    def path(self, name: str) -> str:
        found = self.paths.get(name)
        if found is None:
            raise LookupError(f"{name} is not installed ({install_hint([name])})")
        return found

    @property
    def missing(self) -> list[str]:
        return [name for name, p in self.paths.items() if p is None]


def find_tools(names: tuple[str, ...] = tuple(PACKAGES)) -> Tools:
    # nginx and redis-server live in /usr/sbin, which is not on every user's PATH.
    search = None
    path = os.environ.get("PATH", "")
    extra = [d for d in ("/usr/sbin", "/sbin", "/usr/local/sbin") if d not in path.split(os.pathsep)]
    if extra:
        search = os.pathsep.join([path, *extra])
    return Tools({name: shutil.which(name, path=search) for name in names})


def install_hint(names: list[str] | tuple[str, ...]) -> str:
    """The exact command that installs ``names`` (program names), e.g. 'apt-get install wrk nginx-light'."""
    pkgs = sorted({PACKAGES.get(n, n) for n in names})
    return "apt-get install " + " ".join(pkgs) if pkgs else ""
