"""Starting crdgate for one scenario and waiting until its table is published.

The contract with the CLI (crdgate/cli.py):
``crdgate run --manifests DIR --listen 127.0.0.1:PORT --admin-listen 127.0.0.1:PORT2
--access-log off --log-format text [--redis-url URL]``; ``GET /readyz`` on the
admin port answers 200 once the first table is published. Every failure to
start becomes a ``GatewayError`` carrying the tail of crdgate's output, so the
scenario is reported FAILED with a reason instead of stopping the run.
"""

from __future__ import annotations

import os
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .backends import REPO_ROOT
from .client import Client
from .procs import Child, free_port

DEFAULT_COMMAND = f"{sys.executable} -m crdgate"


class GatewayError(RuntimeError):
    pass


@dataclass
class Gateway:
    child: Child
    port: int
    admin_port: int
    ready_after_s: float

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.child.stop()

    def check_alive(self) -> None:
        if not self.child.alive():
            raise GatewayError(f"crdgate exited with code {self.child.proc.returncode}:\n{self.child.tail()}")


def start_gateway(
    command: str,
    manifests: Path,
    workdir: Path,
    pin: list[str],
    redis_url: str | None = None,
    ready_timeout: float = 60.0,
    name: str = "crdgate",
    extra_args: list[str] | tuple[str, ...] = (),
) -> Gateway:
    port, admin_port = free_port(), free_port()
    argv = [
        *pin, *shlex.split(command), "run",
        "--manifests", str(manifests),
        "--listen", f"127.0.0.1:{port}",
        "--admin-listen", f"127.0.0.1:{admin_port}",
        "--access-log", "off",
        "--log-format", "text",
    ]
    if redis_url:
        argv += ["--redis-url", redis_url]
    argv += list(extra_args)
    started = time.monotonic()
    try:
        # No drain period on stop: the scenario is over and nobody is load-balancing to us.
        env = {**os.environ, "CRDGATE_DRAIN_SECONDS": "0"}
        child = Child(name, argv, workdir, cwd=REPO_ROOT, env=env)
    except OSError as exc:
        raise GatewayError(f"cannot start crdgate ({command!r}): {exc}") from None
    admin = Client(admin_port, timeout=1.0)
    deadline = started + ready_timeout
    last = ""
    try:
        while True:
            if not child.alive():
                raise GatewayError(
                    f"crdgate exited with code {child.proc.returncode} before /readyz answered 200; "
                    f"its last output:\n{child.tail()}"
                )
            status, body = admin.get("/readyz")
            if status == 200:
                break
            last = f"{status} {body[:200]}" if status else body[:200]
            if time.monotonic() > deadline:
                raise GatewayError(
                    f"crdgate not ready after {ready_timeout:.0f}s (last /readyz: {last}); "
                    f"its last output:\n{child.tail()}"
                )
            time.sleep(0.05)
    except GatewayError:
        child.stop()
        raise
    finally:
        admin.close()
    return Gateway(child, port, admin_port, time.monotonic() - started)
