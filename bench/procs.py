"""Child processes of a run: start with logs to files, wait for a port, stop, tail stderr.

Every process the benchmark starts goes through ``Child`` so that a failure can
always be explained with the last lines the process wrote.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import time
from pathlib import Path


# Ports for the servers a run starts: below Linux's ephemeral range (32768-60999), which
# bind(0) draws from and so does every outgoing connection's source port. A port learnt by
# bind(0) and released is free only until the server binds it; in the meantime any
# connection (or another process doing the same) may take it. A random port from this
# range, checked free, is taken by nobody but another picker of this range.
PORT_RANGE = (20000, 32767)


def port_free(port: int) -> bool:
    """Whether a loopback TCP port can be bound now (one bind checks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port(lo: int = PORT_RANGE[0], hi: int = PORT_RANGE[1]) -> int:
    """A loopback TCP port in [lo, hi] that is free now."""
    for _ in range(200):
        port = random.randint(lo, hi)
        if port_free(port):
            return port
    raise RuntimeError(f"no free loopback port in {lo}-{hi}")


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


class ChildError(RuntimeError):
    pass


class Child:
    """One child process whose stdout/stderr go to ``<logdir>/<name>.log``."""

    def __init__(self, name: str, argv: list[str], logdir: Path, cwd: str | None = None, env: dict | None = None):
        self.name = name
        self.argv = argv
        self.log_path = Path(logdir) / f"{name}.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            argv, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=cwd, env=env,
            start_new_session=True,  # a Ctrl-C in the terminal reaches only the harness, which stops us in order
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self, lines: int = 20) -> str:
        try:
            data = self.log_path.read_bytes()[-8192:]
        except OSError:
            return ""
        return "\n".join(data.decode("utf-8", "replace").splitlines()[-lines:])

    def wait_port(self, port: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise ChildError(f"{self.name} exited with code {self.proc.returncode}:\n{self.tail()}")
            if port_open(port):
                return
            time.sleep(0.05)
        raise ChildError(f"{self.name} did not listen on 127.0.0.1:{port} within {timeout:.0f}s:\n{self.tail()}")

    def stop(self, timeout: float = 5.0) -> None:
        if self.alive():
            try:
                os.kill(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        self._log.close()
