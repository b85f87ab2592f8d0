"""HTTP/2 and gRPC scenarios: crdgate and nginx under h2load, in the same run.

- ``h2`` (TLS, h2 by ALPN) and ``h2c`` (cleartext, prior knowledge): h2load
  opens ``H2_CLIENTS`` connections with 100 concurrent streams each and GETs the
  plain route; the HTTP/1.1 backend answers. The nginx reference is a 1-worker
  HTTP/2 proxy (``listen ... http2``) forwarding HTTP/1.1 with keep-alive to the
  same backend.
- ``grpc``: unary calls (POST ``/bench.Echo/Unary``, an empty message) over h2c
  to a gRPC backend that speaks only HTTP/2 (nginx answering a canned reply with
  ``grpc-status`` trailers), through crdgate (a Service port with
  ``appProtocol: kubernetes.io/h2c``) and through nginx's ``grpc_pass``. Before
  measuring, a real gRPC call (grpcio, when installed) must come back OK
  through crdgate: the trailers have to make it.

As for the HTTP/1.1 scenarios, each measured crdgate run follows an nginx run
taken just before it, and the ratio is the median of the pairs.
"""

from __future__ import annotations

import base64
import os
import shutil
import tempfile
from pathlib import Path

from . import manifests, nginx
from .credentials import tls_certificate
from .gateway import GatewayError
from .h2load import H2loadRunner
from .pinning import BACKEND, GATEWAY, LOAD
from .procs import Child, free_port
from .scenarios import Context, Result, error_reason
from .tools import install_hint
from .wrk import WrkError, WrkResult

H2_CLIENTS = 4  # connections; x 100 streams = 400 requests in flight
STREAMS = 100
GRPC_PATH = "/bench.Echo/Unary"
GRPC_HEADERS = {"content-type": "application/grpc", "te": "trailers"}
TITLES = {
    "h2": "HTTP/2 over TLS (ALPN h2), 100 streams per connection, HTTP/1.1 backend",
    "h2c": "HTTP/2 cleartext (prior knowledge), 100 streams per connection, HTTP/1.1 backend",
    "grpc": "gRPC unary calls over h2c to an h2c gRPC backend (nginx: grpc_pass)",
}
SCENARIOS = tuple(TITLES)


def tls_secret(name: str, cert_pem: bytes, key_pem: bytes) -> dict:
    return {
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
        "metadata": {"name": name, "namespace": manifests.NAMESPACE},
        "data": {"tls.crt": base64.b64encode(cert_pem).decode(), "tls.key": base64.b64encode(key_pem).decode()},
    }


def grpc_check(port: int) -> str:
    """'' when a real unary gRPC call through ``port`` succeeds, else why not (grpcio optional)."""
    try:
        import grpc
    except ImportError:
        return ""  # h2load's 2xx count is then the only check
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        call = channel.unary_unary(GRPC_PATH, request_serializer=lambda b: b, response_deserializer=lambda b: b)
        call(b"", timeout=5)
        return ""
    except grpc.RpcError as exc:
        return f"gRPC call through crdgate failed: {exc.code()} {exc.details()!r}"
    finally:
        channel.close()


def _summary(output: str) -> str:
    """h2load's lines that say what happened (protocol, counts, status codes, errors)."""
    keep = ("Application protocol", "requests:", "status codes:", "error", "failed", "No protocol")
    return " | ".join(line.strip() for line in output.splitlines() if any(k in line for k in keep))[-800:]


class _Targets:
    """The processes one HTTP/2 scenario runs against, stopped together."""

    def __init__(self) -> None:
        self.children: list[Child] = []
        self.gateway = None
        self.reply_dir: str | None = None  # the gRPC backend's reply, outside the private work folder

    def stop(self) -> None:
        if self.gateway is not None:
            self.gateway.stop()
        for c in reversed(self.children):
            c.stop()
        if self.reply_dir is not None:
            shutil.rmtree(self.reply_dir, ignore_errors=True)


def run_http2(ctx: Context, name: str) -> Result:
    s = ctx.settings
    result = Result(name, "load", TITLES[name])
    missing = [t for t in ("h2load", "nginx") if not ctx.tools.has(t)]
    if missing:
        return result.skip(f"{' and '.join(missing)} missing: {install_hint(missing)}")
    runner = H2loadRunner(ctx.tools.path("h2load"), ctx.workdir, H2_CLIENTS, STREAMS, pin=ctx.pinning.prefix(LOAD))
    folder = ctx.folder(name)
    targets = _Targets()
    try:
        crdgate_url, nginx_url, headers, data = _start(ctx, name, folder, targets)
        preflight = runner.run(crdgate_url, 1, headers, data)
        want = "h2" if name == "h2" else "h2c"
        if runner.last_protocol != want:
            return result.fail(f"preflight: crdgate spoke {runner.last_protocol or 'nothing'!r}, not {want}; "
                               f"h2load said: {_summary(runner.last_output)}")
        if preflight.errors_total or not preflight.requests:
            return result.fail(f"preflight: {error_reason([preflight])}; h2load said: {_summary(runner.last_output)}")
        if name == "grpc":
            problem = grpc_check(targets.gateway.port)
            if problem:
                return result.fail(problem)
        nginx_pid = targets.children[-1].pid
        if s.warmup_s > 0:
            runner.run(nginx_url, s.warmup_s, headers, data)
            runner.run(crdgate_url, s.warmup_s, headers, data)
        for i in range(s.runs):
            ctx.progress.update(f"{name}: nginx reference {i + 1}/{s.runs}")
            result.reference.append(runner.run(nginx_url, s.duration_s, headers, data, cpu_pid=nginx_pid))
            ctx.progress.update(f"{name}: run {i + 1}/{s.runs}")
            r: WrkResult = runner.run(crdgate_url, s.duration_s, headers, data, cpu_pid=targets.gateway.child.pid)
            result.runs.append(r)
            ctx.progress.update(f"{name}: run {i + 1}/{s.runs}: {r.rps:,.0f} req/s, p99 {r.latency_us['p99'] / 1000:.2f} ms")
            targets.gateway.check_alive()
        if any(r.errors_total for r in result.runs):
            result.fail(error_reason(result.runs))
        result.extra.update(clients=H2_CLIENTS, streams_per_connection=STREAMS)
    except (WrkError, GatewayError, RuntimeError) as exc:
        result.fail(str(exc))
    finally:
        targets.stop()
    return result


def _start(ctx: Context, name: str, folder: Path, targets: _Targets) -> tuple[str, str, dict, Path | None]:
    """Start the backend (gRPC only), crdgate and the nginx reference; their URLs, headers and body."""
    nginx_path = ctx.tools.path("nginx")
    if name == "grpc":
        port = free_port()
        prefix = ctx.workdir / "nginx-grpc-backend"
        # nginx's workers drop root for another user, who cannot enter the 0700 work folder:
        # the (public) reply lives in a folder of its own they can read.
        targets.reply_dir = tempfile.mkdtemp(prefix="crdgate-bench-grpc-reply-")
        os.chmod(targets.reply_dir, 0o755)
        conf = nginx.grpc_backend_conf(prefix, port, Path(targets.reply_dir))
        os.chmod(Path(targets.reply_dir) / "message", 0o644)
        targets.children.append(
            nginx.start(nginx_path, conf, prefix, "grpc-backend", port, ctx.pinning.prefix(BACKEND)))
        docs = [
            *manifests.service_with_endpoints("grpc", [port], app_protocol="kubernetes.io/h2c"),
            {"apiVersion": "crdgate.io/v1", "kind": "APIEndpoint",
             "metadata": {"name": "grpc", "namespace": manifests.NAMESPACE},
             "spec": {"path": "/bench.Echo/", "backendService": "grpc"}},
        ]
        manifests.write(folder / "manifests" / "grpc.yaml", docs)
        ctx.progress.update(f"{name}: starting crdgate")
        targets.gateway = ctx.start_gateway(name, folder)
        proxy_port = free_port()
        prefix = ctx.workdir / "nginx-grpc-proxy"
        targets.children.append(
            nginx.start(nginx_path, nginx.grpc_proxy_conf(prefix, proxy_port, port), prefix, "grpc-proxy",
                        proxy_port, ctx.pinning.prefix(GATEWAY)))
        body = ctx.workdir / "grpc-request.bin"
        body.write_bytes(nginx.GRPC_REPLY)  # an empty request message has the same five bytes
        return (f"http://127.0.0.1:{targets.gateway.port}{GRPC_PATH}", f"http://127.0.0.1:{proxy_port}{GRPC_PATH}",
                GRPC_HEADERS, body)
    tls = tls_certificate(ctx.workdir / f"{name}-tls")
    docs = [tls_secret("bench-tls", tls.cert_pem, tls.key_pem),
            manifests.api_endpoint("plain", "/plain", ctx.backend.url)]
    manifests.write(folder / "manifests" / "plain.yaml", docs)
    tls_port = free_port()
    ctx.progress.update(f"{name}: starting crdgate")
    targets.gateway = ctx.start_gateway(name, folder, extra_args=[
        "--listen-tls", f"127.0.0.1:{tls_port}", "--default-certificate", f"{manifests.NAMESPACE}/bench-tls"])
    h2_tls, h2c = free_port(), free_port()
    prefix = ctx.workdir / f"nginx-{name}-proxy"
    conf = nginx.h2_proxy_conf(prefix, h2_tls, h2c, ctx.backend.port, Path(tls.cert_file), Path(tls.key_file))
    targets.children.append(nginx.start(nginx_path, conf, prefix, "h2proxy", h2c, ctx.pinning.prefix(GATEWAY)))
    if name == "h2":
        return f"https://127.0.0.1:{tls_port}/plain", f"https://127.0.0.1:{h2_tls}/plain", {}, None
    return f"http://127.0.0.1:{targets.gateway.port}/plain", f"http://127.0.0.1:{h2c}/plain", {}, None
