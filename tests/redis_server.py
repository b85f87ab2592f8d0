"""A real redis-server on loopback for the tests that need one.

tests/conftest.py turns this into the ``redis_server`` (one per session, its
URL) and ``redis_restartable`` (one per test, a ``RedisServer`` the test may
stop, start and pause) fixtures. The server runs with no persistence in a
temporary directory, bound to 127.0.0.1 on a free port; when ``redis-server``
is missing it is installed with apt-get (Debian), and when that is impossible
``RedisUnavailable`` says why.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time

from aptget import one_at_a_time

from ports import free_port


class RedisUnavailable(RuntimeError):
    """redis-server is not installed and could not be installed or started."""


def ensure_redis_server() -> str:
    """The path of redis-server, installing the Debian package if needed."""
    path = shutil.which("redis-server")
    if path:
        return path
    with one_at_a_time():  # another pytest-xdist worker may be installing it
        return _install()


def _install() -> str:
    path = shutil.which("redis-server")
    if path:
        return path
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (["apt-get", "update"], ["apt-get", "install", "-y", "--no-install-recommends", "redis-server"]):
        try:
            done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise RedisUnavailable(f"redis-server is not on PATH and `{' '.join(cmd)}` failed: {exc}") from exc
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            raise RedisUnavailable(
                f"redis-server is not on PATH and `{' '.join(cmd)}` exited {done.returncode}: {' | '.join(tail)}"
            )
    path = shutil.which("redis-server")
    if not path:
        raise RedisUnavailable("apt-get installed redis-server but it is still not on PATH")
    return path


def command(port: int, *args: str, timeout: float = 2.0) -> bytes:
    """Send one command in RESP and return the raw first reply line (no client library)."""
    parts = [b"*%d\r\n" % len(args)]
    for a in args:
        b = a.encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(b), b))
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(b"".join(parts))
        buf = b""
        while not buf.endswith(b"\r\n"):
            chunk = s.recv(4096)
            if not chunk:
                break
            buf += chunk
    return buf.rstrip(b"\r\n")


class RedisServer:
    """One redis-server process that can be stopped and started on the same port."""

    def __init__(self, binary: str, port: int | None = None):
        self.binary = binary
        self.port = port or free_port()
        self.dir = tempfile.mkdtemp(prefix="crdgate-redis-")
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def ping(self) -> bool:
        try:
            return command(self.port, "PING", timeout=0.5) == b"+PONG"
        except OSError:
            return False

    def start(self, wait: float = 10.0) -> None:
        if self.proc is not None and self.proc.poll() is None:
            return
        logf = open(os.path.join(self.dir, "redis.log"), "ab")
        self.proc = subprocess.Popen(
            [
                self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--dir", self.dir, "--daemonize", "no",
            ],
            stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
        logf.close()
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RedisUnavailable(f"redis-server exited {self.proc.returncode} on port {self.port}: {self.log_tail()}")
            if self.ping():
                return
            time.sleep(0.02)
        self.stop()
        raise RedisUnavailable(f"redis-server on port {self.port} did not answer PING within {wait}s: {self.log_tail()}")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    def pause(self, ms: int) -> None:
        """Hold every write and every script for ``ms`` milliseconds (CLIENT PAUSE ... WRITE).

        WRITE rather than ALL so that ``unpause`` (not a write) still gets through.
        """
        reply = command(self.port, "CLIENT", "PAUSE", str(ms), "WRITE")
        if reply != b"+OK":
            raise RuntimeError(f"CLIENT PAUSE failed: {reply!r}")

    def unpause(self) -> None:
        command(self.port, "CLIENT", "UNPAUSE")

    def log_tail(self) -> str:
        try:
            with open(os.path.join(self.dir, "redis.log"), "rb") as f:
                return " | ".join(f.read().decode(errors="replace").strip().splitlines()[-3:])
        except OSError:
            return "(no log)"

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def start_server(port: int | None = None) -> RedisServer:
    """A started server; retries another port if the chosen one was taken meanwhile."""
    binary = ensure_redis_server()
    last: Exception | None = None
    for _ in range(3):
        server = RedisServer(binary, port)
        try:
            server.start()
            return server
        except RedisUnavailable as exc:
            server.close()
            last = exc
            if port is not None:
                break
    raise RedisUnavailable(str(last))
