"""Start the real ``crdgate`` process on loopback for end-to-end tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from proxyharness import free_port

ROOT = Path(__file__).resolve().parent.parent


class GatewayProcess:
    def __init__(self, manifests: Path | None, *extra: str, env: dict | None = None, access_log: bool = False):
        self.port = free_port()
        self.admin_port = free_port()
        self.manifests = manifests
        self.log = tempfile.NamedTemporaryFile(prefix="crdgate-", suffix=".log", delete=False)
        self.out = tempfile.NamedTemporaryFile(prefix="crdgate-", suffix=".out", delete=False)
        source = ["--manifests", str(manifests)] if manifests is not None else []
        args = [
            sys.executable, "-m", "crdgate", "run", *source,
            "--listen", f"127.0.0.1:{self.port}",
            "--admin-listen", f"127.0.0.1:{self.admin_port}",
            "--log-format", "json",
            "--access-log", "on" if access_log else "off",
            "--drain-seconds", "0.5",
            "--shutdown-timeout", "5",
            *extra,
        ]
        full_env = dict(os.environ)
        full_env.update(env or {})
        self.proc = subprocess.Popen(args, cwd=ROOT, stdout=self.out, stderr=self.log, env=full_env)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def admin(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def wait_ready(self, timeout: float = 60.0) -> None:
        # A deadline, not a wait: a start-up takes ~1 s, but far longer on a host busy with other tests.
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"crdgate exited with {self.proc.returncode}:\n{self.logs()}")
            try:
                with urllib.request.urlopen(self.admin + "/readyz", timeout=1) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            time.sleep(0.05)
        raise TimeoutError(f"crdgate not ready after {timeout}s:\n{self.logs()}")

    def logs(self) -> str:
        return Path(self.log.name).read_text(errors="replace")[-6000:]

    def wait_log(self, text: str, timeout: float = 10.0) -> str:
        """The whole log once it holds ``text``; polled, since the log is written in batches."""
        deadline = time.monotonic() + timeout
        while True:
            whole = Path(self.log.name).read_text(errors="replace")
            if text in whole:
                return whole
            if time.monotonic() >= deadline:
                raise AssertionError(f"{text!r} not logged within {timeout} s:\n{whole[-6000:]}")
            time.sleep(0.05)

    def stdout(self) -> str:
        return Path(self.out.name).read_text(errors="replace")

    def terminate(self, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode

    def close(self) -> None:
        self.terminate()
        for f in (self.log, self.out):
            f.close()
            try:
                os.unlink(f.name)
            except OSError:
                pass


def endpoint_manifests(ns: str, service: str, port: int, name: str = "", target_name: str = "http") -> str:
    """A Service and its EndpointSlice pointing at 127.0.0.1:port."""
    return f"""
apiVersion: v1
kind: Service
metadata: {{name: {service}, namespace: {ns}}}
spec:
  ports: [{{name: {target_name}, port: 80, targetPort: {port}}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: {name or service + '-abc'}
  namespace: {ns}
  labels: {{kubernetes.io/service-name: {service}}}
addressType: IPv4
endpoints:
  - addresses: ["127.0.0.1"]
    conditions: {{ready: true}}
ports: [{{name: {target_name}, port: {port}, protocol: TCP}}]
"""
