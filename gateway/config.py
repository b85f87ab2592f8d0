"""Frozen settings of the data plane: listeners, limits, timeouts, logs, response switches.

Part of the process's one ``Config`` (crdgate/config.py), built once by the
command line (crdgate/cli.py) and handed to ``gateway.server.Server``.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field


def parse_hostport(value: str, default_host: str = "0.0.0.0") -> tuple[str, int]:
    """'0.0.0.0:8080', ':8080', '8080', '[::1]:8080' -> (host, port)."""
    value = value.strip()
    if value.startswith("["):
        end = value.index("]")
        host, rest = value[1:end], value[end + 1 :]
        port = rest.lstrip(":")
    elif ":" in value:
        host, port = value.rsplit(":", 1)
    else:
        host, port = "", value
    p = int(port)
    if not 0 <= p <= 65535:
        raise ValueError(f"port out of range: {p}")
    return host or default_host, p


@dataclass(frozen=True, slots=True)
class Limits:
    max_uri_bytes: int = 8192  # longer request targets: 414
    max_header_bytes: int = 32768  # whole header section: 431
    max_headers: int = 100  # header lines: 431
    max_body_bytes: int = 10 * 1024 * 1024  # default per route: 413
    header_timeout: float = 10.0  # a request's head must arrive within this
    idle_timeout: float = 60.0  # keep-alive connection with no request
    upstream_idle_timeout: float = 20.0  # pooled upstream connection unused
    max_idle_per_endpoint: int = 256
    max_response_header_bytes: int = 65536  # an upstream response head above this: 502


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    listen: tuple[str, int] = ("0.0.0.0", 8080)
    admin_listen: tuple[str, int] = ("127.0.0.1", 9090)
    trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    limits: Limits = field(default_factory=Limits)
    access_log: bool = True
    access_log_format: str = "json"  # json | text (gateway/accesslog.py)
    access_log_sample_2xx: float = 1.0  # share of 2xx lines kept (0..1); every other status is always logged
    log_buffer_bytes: int = 4 << 20  # access log lines held while stdout is slow; above: dropped, counted
    scheme: str = "http"  # what X-Forwarded-Proto says for the plain listener
    listen_tls: tuple[str, int] | None = None  # the TLS listener (certificates: gateway/tls.py); None = none
    h2c: bool = True  # the plain listener also serves HTTP/2 with prior knowledge (gateway/h2server.py)
    upstream_ca_file: str | None = None  # extra CAs trusted for https upstreams, beside the system's
    drain_seconds: float = 5.0  # readiness is 503 this long before listeners close
    shutdown_timeout: float = 25.0  # in-flight requests get this long to finish
    request_id_header: str = "x-request-id"
    server_header: bool = False
    ratelimit_headers: bool = True  # RateLimit-Policy/RateLimit on allowed responses too, not only on 429
    create_traceparent: bool = False  # add a W3C traceparent to requests that arrive without one
    otlp_endpoint: str | None = None  # OTLP/HTTP traces URL, e.g. http://collector:4318/v1/traces; None = no tracing
    trace_sample_ratio: float = 0.0  # requests without a sampled traceparent traced at this ratio (gateway/tracing.py)
