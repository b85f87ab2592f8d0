"""nginx for the benchmark: config rendering (pure) and the process.

Roles (the HTTP/2 ones at the end: bench/http2.py):
- the *backend*: one server block per identity, each answering
  ``200 "backend-<i> <request_uri>"`` so a client can tell which backend served
  which path (the churn scenario counts misroutes this way);
- the *proxy*: the reference crdgate is compared with — one worker, an upstream
  with keep-alive to the same backend, no access log.

nginx runs in the foreground (`daemon off`) under its own prefix directory, so
it writes nothing outside the run's temp dir.
"""

from __future__ import annotations

from pathlib import Path

from .procs import Child

_HEADER = """\
worker_processes 1;
daemon off;
pid {prefix}/{name}.pid;
error_log {prefix}/{name}-error.log warn;
events {{ worker_connections 16384; multi_accept on; }}
http {{
    access_log off;
    default_type text/plain;
    keepalive_requests 10000000;
    keepalive_timeout 300s;
    client_body_temp_path {prefix}/{name}-body;
    proxy_temp_path {prefix}/{name}-proxy;
    fastcgi_temp_path {prefix}/{name}-fastcgi;
    uwsgi_temp_path {prefix}/{name}-uwsgi;
    scgi_temp_path {prefix}/{name}-scgi;
"""


def backend_conf(prefix: Path, ports: list[int], name: str = "backend") -> str:
    """Server ``i`` listens on ``ports[i]`` and answers ``backend-<i> <request_uri>``."""
    parts = [_HEADER.format(prefix=prefix, name=name)]
    for i, port in enumerate(ports):
        parts.append(
            f"    server {{\n"
            f"        listen 127.0.0.1:{port} backlog=4096;\n"
            f'        location / {{ return 200 "backend-{i} $request_uri\\n"; }}\n'
            f"    }}\n"
        )
    parts.append("}\n")
    return "".join(parts)


def proxy_conf(prefix: Path, listen_port: int, backend_port: int, keepalive: int = 256, name: str = "proxy",
               access_log: Path | None = None) -> str:
    """A 1-worker reverse proxy with upstream keep-alive (HTTP/1.1, Connection cleared).

    ``access_log``: a file it logs every request to (the combined format, written
    through a 64 KiB buffer flushed at least once a second, as production nginx
    is set up); None: no access log.
    """
    log = f"        access_log {access_log} combined buffer=64k flush=1s;\n" if access_log is not None else ""
    return _HEADER.format(prefix=prefix, name=name) + (
        f"    upstream backend {{\n"
        f"        server 127.0.0.1:{backend_port};\n"
        f"        keepalive {keepalive};\n"
        f"    }}\n"
        f"    server {{\n"
        f"        listen 127.0.0.1:{listen_port} backlog=4096;\n"
        f"{log}"
        f"        location / {{\n"
        f"            proxy_pass http://backend;\n"
        f"            proxy_http_version 1.1;\n"
        f'            proxy_set_header Connection "";\n'
        f"        }}\n"
        f"    }}\n"
        f"}}\n"
    )


def start(nginx: str, conf_text: str, prefix: Path, name: str, port: int, pin: list[str]) -> Child:
    """Write the config, start nginx on it, wait until ``port`` accepts connections."""
    prefix.mkdir(parents=True, exist_ok=True)
    conf = prefix / f"{name}.conf"
    conf.write_text(conf_text)
    argv = [*pin, nginx, "-p", str(prefix), "-e", str(prefix / f"{name}-error.log"), "-c", str(conf)]
    child = Child(name, argv, prefix)
    try:
        child.wait_port(port, timeout=10)
    except Exception:
        err = prefix / f"{name}-error.log"
        child.stop()
        if err.exists():
            raise RuntimeError(f"nginx ({name}) failed to start: {err.read_text()[-2000:]}") from None
        raise
    return child


def h2_proxy_conf(prefix: Path, tls_port: int, h2c_port: int, backend_port: int, cert: Path, key: Path,
                  keepalive: int = 256, name: str = "h2proxy") -> str:
    """A 1-worker HTTP/2 reverse proxy: h2 over TLS (ALPN) on ``tls_port``, cleartext h2 with prior
    knowledge on ``h2c_port``, HTTP/1.1 with keep-alive to the backend (as ``proxy_conf``)."""
    return _HEADER.format(prefix=prefix, name=name) + (
        f"    http2_max_concurrent_streams 128;\n"
        f"    upstream backend {{\n"
        f"        server 127.0.0.1:{backend_port};\n"
        f"        keepalive {keepalive};\n"
        f"    }}\n"
        f"    server {{\n"
        f"        listen 127.0.0.1:{tls_port} ssl http2 backlog=4096;\n"
        f"        listen 127.0.0.1:{h2c_port} http2 backlog=4096;\n"
        f"        ssl_certificate {cert};\n"
        f"        ssl_certificate_key {key};\n"
        f"        ssl_protocols TLSv1.2 TLSv1.3;\n"
        f"        location / {{\n"
        f"            proxy_pass http://backend;\n"
        f"            proxy_http_version 1.1;\n"
        f'            proxy_set_header Connection "";\n'
        f"        }}\n"
        f"    }}\n"
        f"}}\n"
    )


GRPC_REPLY = b"\x00\x00\x00\x00\x00"  # one uncompressed, empty gRPC message


def grpc_backend_conf(prefix: Path, port: int, reply: Path, name: str = "grpc-backend") -> str:
    """A cleartext HTTP/2 gRPC server answering every unary call with an empty message and
    ``grpc-status: 0`` trailers. nginx serves the reply as a static file from ``reply``, a
    folder its workers (another user when started by root) can read; a POST to a static
    file is a 405, which ``error_page 405 =200`` turns back into the file."""
    reply.mkdir(parents=True, exist_ok=True)
    (reply / "message").write_bytes(GRPC_REPLY)
    return _HEADER.format(prefix=prefix, name=name) + (
        f"    http2_max_concurrent_streams 1024;\n"
        f"    server {{\n"
        f"        listen 127.0.0.1:{port} http2 backlog=4096;\n"
        f"        location / {{\n"
        f"            root {reply};\n"
        f"            default_type application/grpc;\n"
        f"            add_trailer grpc-status 0;\n"
        f"            add_trailer grpc-message OK;\n"
        f"            try_files /message =404;\n"
        f"            error_page 405 =200 /message;\n"
        f"        }}\n"
        f"    }}\n"
        f"}}\n"
    )


def grpc_proxy_conf(prefix: Path, port: int, backend_port: int, keepalive: int = 64, name: str = "grpc-proxy") -> str:
    """A 1-worker gRPC reverse proxy (``grpc_pass``, kept-alive HTTP/2 to the backend), h2c in front."""
    return _HEADER.format(prefix=prefix, name=name) + (
        f"    http2_max_concurrent_streams 128;\n"
        f"    upstream grpc_backend {{\n"
        f"        server 127.0.0.1:{backend_port};\n"
        f"        keepalive {keepalive};\n"
        f"    }}\n"
        f"    server {{\n"
        f"        listen 127.0.0.1:{port} http2 backlog=4096;\n"
        f"        location / {{ grpc_pass grpc://grpc_backend; }}\n"
        f"    }}\n"
        f"}}\n"
    )
