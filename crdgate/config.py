"""The settings of one crdgate process: one frozen ``Config``, built once by crdgate/cli.py.

The command line (flags and ``CRDGATE_*`` environment) becomes a ``Config``
before anything starts; everything below it (crdgate/run.py, demo.py,
workers.py, the proxy server, the rate limiter, the Kubernetes wiring) takes
the config and never sees argparse. A test or an embedding program builds the
same object by hand. ``--workers`` children receive it pickled.

Sub-configs by concern: where the objects come from (``ManifestsSource`` or
``KubeSource``), the data plane (gateway/config.py's ``GatewayConfig``:
listeners, limits, timeouts, access log, response switches), what the TLS
listener serves by default, rate limiting, the process log, and the
controller's ``CompileOptions`` (ingress class, auth defaults, JWKS refresh
floor, cross-namespace references).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from controller.compile import CompileOptions
from crdgate.logs import LogConfig
from gateway.config import GatewayConfig

__all__ = ["Config", "KubeSource", "LogConfig", "ManifestsSource", "RateLimitConfig", "TLSConfig"]


@dataclass(frozen=True, slots=True)
class ManifestsSource:
    """Route from a folder of manifests, watched for changes."""

    path: Path


@dataclass(frozen=True, slots=True)
class KubeSource:
    """Route from the Kubernetes API: what to watch, and how replicas share the status writes."""

    kubeconfig: str | None = None  # None: in-cluster config, then ~/.kube/config
    context: str | None = None
    namespaces: tuple[str, ...] = ()  # () = all
    identity: str = "crdgate"  # this replica's name in leader election
    leader_elect: bool = True
    lease_namespace: str = "crdgate-system"
    lease_name: str = "crdgate-leader"
    publish_address: str | None = None  # written into Ingress status.loadBalancer (comma-separated)
    publish_service: str | None = None  # NAMESPACE/NAME of the Service whose address is published
    status_qps: float = 250.0  # status writes per second (controller/status.py says why this much)
    status_burst: int = 500


@dataclass(frozen=True, slots=True)
class TLSConfig:
    """What the TLS listener serves besides the certificates objects name (gateway/config.py has the listener)."""

    default_certificate: tuple[str, str] | None = None  # (namespace, name) of a kubernetes.io/tls Secret


@dataclass(frozen=True, slots=True)
class RateLimitConfig:
    """The rate limiter's store: Local in memory, Global through Redis (gateway/ratelimit.py)."""

    redis_url: str | None = None
    redis_failure: str = "open"  # open (allow) | closed (429) when Redis fails
    redis_timeout: float = 0.05  # seconds one Redis call may take
    max_keys: int = 100_000  # Local keys held in memory
    lease_max: int = 1024  # most Global requests one process takes from Redis at once


@dataclass(frozen=True, slots=True)
class Config:
    source: ManifestsSource | KubeSource
    gateway: GatewayConfig = field(default_factory=GatewayConfig)
    compile: CompileOptions = field(default_factory=CompileOptions)
    tls: TLSConfig = field(default_factory=TLSConfig)
    ratelimit: RateLimitConfig = field(default_factory=RateLimitConfig)
    logging: LogConfig = field(default_factory=LogConfig)
    workers: int = 1  # proxy processes sharing the listen port (crdgate/workers.py)
    # With workers == 1: the controller in its own process anyway (crdgate/workers.py).
    controller_process: bool = False
