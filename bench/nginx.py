"""nginx for the benchmark: config rendering (pure) and the process.

Two roles share one renderer:
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
