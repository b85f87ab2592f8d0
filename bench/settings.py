"""The settings of one benchmark run (frozen; built by bench/__main__.py from flags)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from .gateway import DEFAULT_COMMAND

LOAD = ("plain", "apikey", "local-ratelimit", "jwt", "global-ratelimit", "many-routes", "endpoints")
LOAD += ("httproute", "httproute-many")  # through Gateway API HTTPRoutes (bench/scenarios.py)
HTTP2 = ("h2", "h2c", "grpc")  # bench/http2.py, under h2load
SCENARIOS = (*LOAD, *HTTP2, "tracing", "access-log", "p99-fixed", "churn", "propagation", "propagation-httproute",
             "lookup", "scale")


@dataclass(frozen=True)
class Settings:
    scenarios: tuple[str, ...] = SCENARIOS
    # Five short pairs rather than three long ones, in the same time: on a shared
    # host the median of five per-pair ratios moves far less.
    duration_s: float = 3.0  # per measured run (wrk rounds up to whole seconds)
    runs: int = 5
    warmup_s: float = 1.0
    connections: int = 64
    threads: int = 1  # wrk threads
    routes: int = 10_000  # size of the many-routes table; top of the propagation/lookup ladder
    churn_rate: float = 50.0  # manifest changes per second
    propagation_samples: int = 20
    lookup_iterations: int = 200_000
    gateway_command: str = DEFAULT_COMMAND
    ready_timeout_s: float = 120.0
    pin: bool = True

    @property
    def ladder(self) -> tuple[int, ...]:
        """Table sizes for propagation and lookup: 10, 1,000 and --routes."""
        return tuple(sorted({min(10, self.routes), min(1000, self.routes), self.routes}))

    def to_json(self) -> dict:
        d = asdict(self)
        d["scenarios"] = list(self.scenarios)
        d["ladder"] = list(self.ladder)
        return d
