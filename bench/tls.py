"""HTTPS benchmark (`python -m bench.tls`): crdgate vs nginx terminating TLS, same certificate, same run.

Both proxies terminate TLS with one self-signed certificate made for the run
and forward to the same nginx backend (`return 200`). Two measurements each,
with wrk over https:
- keep-alive: requests/s and latency percentiles on reused connections (the
  handshake does not dominate);
- new connections: every request sends `Connection: close`, so requests/s is
  handshakes/s (plus one small request each).
crdgate and the nginx proxy are pinned to CPU 0, wrk and the backend to CPU 1
when `taskset` exists. Needs wrk and nginx (`apt-get install wrk nginx-light`).
"""

from __future__ import annotations

import argparse
import base64
import datetime
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from .procs import free_port

ROOT = Path(__file__).resolve().parent.parent




def _certificate(folder: Path) -> tuple[Path, Path, bytes, bytes]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench.local")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("bench.local")]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    (folder / "tls.crt").write_bytes(cert_pem)
    (folder / "tls.key").write_bytes(key_pem)
    os.chmod(folder / "tls.key", 0o600)
    return folder / "tls.crt", folder / "tls.key", cert_pem, key_pem


def _pin(cpu: int) -> list[str]:
    if shutil.which("taskset") and (os.cpu_count() or 1) > 1:
        return ["taskset", "-c", str(cpu)]
    return []


def _nginx(folder: Path, name: str, body: str) -> subprocess.Popen:
    conf = folder / f"{name}.conf"
    conf.write_text(f"""worker_processes 1;
daemon off;
pid {folder}/{name}.pid;
error_log {folder}/{name}.error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path {folder}/{name}-body;
  proxy_temp_path {folder}/{name}-proxy;
  {body}
}}
""")
    return subprocess.Popen([shutil.which("nginx"), "-c", str(conf), "-p", str(folder)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _wait_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def _wrk(url: str, seconds: int, connections: int, close: bool) -> dict:
    lua = 'done = function(summary, latency, requests)\n' \
          '  io.write(string.format("JSON {\\"requests\\":%d,\\"seconds\\":%f,\\"errors\\":%d,\\"p50\\":%d,\\"p99\\":%d}\\n",' \
          ' summary.requests, summary.duration / 1e6, summary.errors.connect + summary.errors.read + summary.errors.write' \
          ' + summary.errors.status + summary.errors.timeout, latency:percentile(50), latency:percentile(99)))\nend\n'
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(lua)
    cmd = _pin(1) + ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "-s", f.name]
    if close:
        cmd += ["-H", "Connection: close"]
    out = subprocess.run(cmd + [url], capture_output=True, text=True, timeout=seconds + 60).stdout
    os.unlink(f.name)
    line = next(line for line in out.splitlines() if line.startswith("JSON "))
    d = json.loads(line[5:])
    return {"rps": round(d["requests"] / d["seconds"], 1), "p50_ms": d["p50"] / 1000, "p99_ms": d["p99"] / 1000,
            "errors": d["errors"]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.tls", description=__doc__.splitlines()[0])
    p.add_argument("--duration", type=int, default=5, help="seconds per measurement (default 5)")
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--json", help="write the results here")
    args = p.parse_args(argv)
    missing = [t for t in ("wrk", "nginx") if not shutil.which(t)]
    if missing:
        print(f"bench.tls needs {', '.join(missing)}: apt-get install wrk nginx-light", file=sys.stderr)
        return 2
    procs: list[subprocess.Popen] = []
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="crdgate-bench-tls-") as tmp:
        folder = Path(tmp)
        crt, key, cert_pem, key_pem = _certificate(folder)
        backend_port, nginx_port, gw_port, gw_tls, admin = (free_port() for _ in range(5))
        try:
            procs.append(_nginx(folder, "backend", f'server {{ listen 127.0.0.1:{backend_port}; location / {{ return 200 "ok\\n"; }} }}'))
            proxy = _nginx(folder, "proxy", f"""
  upstream be {{ server 127.0.0.1:{backend_port}; keepalive 256; }}
  server {{
    listen 127.0.0.1:{nginx_port} ssl;
    ssl_certificate {crt}; ssl_certificate_key {key};
    ssl_protocols TLSv1.2 TLSv1.3;
    location / {{ proxy_pass http://be; proxy_http_version 1.1; proxy_set_header Connection ""; }}
  }}""")
            procs.append(proxy)
            manifests = folder / "manifests"
            manifests.mkdir()
            (manifests / "route.json").write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": [
                {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
                 "metadata": {"namespace": "bench", "name": "cert"},
                 "data": {"tls.crt": base64.b64encode(cert_pem).decode(), "tls.key": base64.b64encode(key_pem).decode()}},
                {"apiVersion": "crdgate.io/v1", "kind": "APIEndpoint", "metadata": {"namespace": "bench", "name": "plain"},
                 "spec": {"path": "/", "backends": [{"url": f"http://127.0.0.1:{backend_port}"}]}},
            ]}))
            gw = subprocess.Popen(_pin(0) + [sys.executable, "-m", "crdgate", "run", "--manifests", str(manifests),
                                             "--listen", f"127.0.0.1:{gw_port}", "--listen-tls", f"127.0.0.1:{gw_tls}",
                                             "--default-certificate", "bench/cert", "--admin-listen", f"127.0.0.1:{admin}",
                                             "--access-log", "off", "--log-level", "warning"],
                                  cwd=ROOT, stdout=subprocess.DEVNULL, stderr=open(folder / "gw.log", "w"),
                                  env={**os.environ, "CRDGATE_DRAIN_SECONDS": "0"})
            procs.append(gw)
            for port in (backend_port, nginx_port, gw_tls):
                _wait_port(port)
            deadline = time.monotonic() + 30
            while True:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{admin}/readyz", timeout=1) as r:
                        if r.status == 200:
                            break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("crdgate not ready: " + (folder / "gw.log").read_text()[-2000:])
                time.sleep(0.05)
            if shutil.which("taskset"):
                subprocess.run(["taskset", "-pc", "0", str(proxy.pid)], capture_output=True)
                pid_file = folder / "proxy.pid"
                if pid_file.exists():
                    for child in subprocess.run(["pgrep", "-P", pid_file.read_text().strip()], capture_output=True,
                                                text=True).stdout.split():
                        subprocess.run(["taskset", "-pc", "0", child], capture_output=True)
            for label, close in (("keep-alive", False), ("new connections", True)):
                conns = args.connections if not close else 16
                for target, port in (("nginx", nginx_port), ("crdgate", gw_tls)):
                    _wrk(f"https://127.0.0.1:{port}/", 1, conns, close)  # warm-up
                    r = _wrk(f"https://127.0.0.1:{port}/", args.duration, conns, close)
                    results[f"{target} {label}"] = r
                    print(f"{target:8} {label:16} {r['rps']:>10,.0f} req/s  p50 {r['p50_ms']:.2f} ms  "
                          f"p99 {r['p99_ms']:.2f} ms  errors {r['errors']}", flush=True)
                ratio = results[f"crdgate {label}"]["rps"] / results[f"nginx {label}"]["rps"]
                results[f"ratio {label}"] = round(ratio, 2)
                print(f"crdgate / nginx ({label}): {ratio:.2f}x", flush=True)
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
