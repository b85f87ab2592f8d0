"""The backend every configuration proxies to: nginx ``return 200``, or a uvloop fallback.

``Backend.ports[i]`` answers ``backend-<i> <request_uri>``; ``ports[0]`` is the
one the throughput scenarios use. The backend runs pinned to the backend CPU.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from . import nginx
from .procs import Child, free_port

REPO_ROOT = str(Path(__file__).resolve().parent.parent)


@dataclass
class Backend:
    kind: str  # "nginx" | "python"
    ports: list[int]
    child: Child

    @property
    def port(self) -> int:
        return self.ports[0]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url_of(self, ident: int) -> str:
        return f"http://127.0.0.1:{self.ports[ident]}"

    def stop(self) -> None:
        self.child.stop()


def start_backend(workdir: Path, identities: int, nginx_path: str | None, pin: list[str]) -> Backend:
    ports = [free_port() for _ in range(identities)]
    if nginx_path is not None:
        prefix = workdir / "nginx-backend"
        child = nginx.start(nginx_path, nginx.backend_conf(prefix, ports), prefix, "backend", ports[-1], pin)
        return Backend("nginx", ports, child)
    child = Child(
        "echo-backend", [*pin, sys.executable, "-m", "bench.echo_backend", *map(str, ports)], workdir, cwd=REPO_ROOT
    )
    child.wait_port(ports[-1], timeout=10)
    return Backend("python", ports, child)


def start_nginx_proxy(workdir: Path, nginx_path: str, backend_port: int, pin: list[str],
                      name: str = "proxy", access_log: Path | None = None) -> tuple[Child, int]:
    port = free_port()
    prefix = workdir / f"nginx-{name}"
    conf = nginx.proxy_conf(prefix, port, backend_port, name=name, access_log=access_log)
    child = nginx.start(nginx_path, conf, prefix, name, port, pin)
    return child, port
