"""The throughput scenarios and the baselines they are compared with.

Each load scenario writes its manifests into a fresh folder, starts its own
crdgate on them (pinned to the gateway CPU), checks with a few single requests
that the route answers 200 from the backend (the *preflight*: a feature the
gateway does not have yet shows up here as FAILED with the status and body it
got), then runs wrk: a warm-up, then ``runs`` measured runs. Any wrk error
(socket errors, timeouts, status >= 400) marks the scenario FAILED, with the
figures still reported. Nothing here raises for one scenario: the run goes on.

The baselines — the backend reached directly and nginx as a 1-worker reverse
proxy — are measured the same way in the same run. The nginx proxy then stays
up, and each load scenario's measured runs alternate with nginx runs on the
plain route (nginx, crdgate, nginx, crdgate, ...): a shared machine drifts by
tens of percent over minutes, and a ratio of two runs taken seconds apart
cancels most of that drift, where a ratio to a baseline taken minutes earlier
does not. The scenario's ratio is the median of its per-pair ratios.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from . import credentials, manifests
from .backends import Backend
from .client import Client
from .gateway import Gateway, GatewayError, start_gateway
from .pinning import GATEWAY, Pinning
from .progress import Progress
from .settings import Settings
from .stats import median, spread_pct
from .tools import Tools, install_hint
from .wrk import WrkError, WrkResult, WrkRunner

OK, FAILED, SKIPPED = "ok", "failed", "skipped"


@dataclass
class Result:
    """What one scenario (or baseline) produced; ``extra`` holds kind-specific figures."""

    name: str
    kind: str  # baseline | load | churn | propagation | lookup
    title: str
    state: str = OK
    reason: str = ""
    target: str = "crdgate"  # crdgate | direct | nginx | in-process
    runs: list[WrkResult] = field(default_factory=list)
    reference: list[WrkResult] = field(default_factory=list)  # nginx runs paired with ``runs``
    extra: dict = field(default_factory=dict)

    def fail(self, reason: str) -> "Result":
        self.state, self.reason = FAILED, reason
        return self

    def skip(self, reason: str) -> "Result":
        self.state, self.reason = SKIPPED, reason
        return self

    def summary(self) -> dict | None:
        """Median over the measured runs (None without runs)."""
        if not self.runs:
            return None
        rps = [r.rps for r in self.runs]
        return {
            "rps_median": median(rps),
            "rps_min": min(rps),
            "rps_max": max(rps),
            "rps_spread_pct": spread_pct(rps),
            "p50_us": median([r.latency_us["p50"] for r in self.runs]),
            "p90_us": median([r.latency_us["p90"] for r in self.runs]),
            "p99_us": median([r.latency_us["p99"] for r in self.runs]),
            "p99_9_us": median([r.latency_us["p99.9"] for r in self.runs]),
            "cpu_us_per_request": median([r.cpu_us_per_request for r in self.runs if r.cpu_us_per_request is not None]),
            "requests": sum(r.requests for r in self.runs),
            "errors": sum(r.errors_total for r in self.runs),
        }


@dataclass
class Context:
    """Everything a scenario needs from the run: settings, tools, processes, output."""

    settings: Settings
    tools: Tools
    pinning: Pinning
    workdir: Path
    backend: Backend
    wrk: WrkRunner | None
    progress: Progress
    redis_url: str | None = None
    redis_reason: str = ""  # why redis_url is None
    nginx_url: str | None = None  # the nginx proxy kept up for paired reference runs
    nginx_pid: int | None = None  # its master process (CPU time is counted with its worker)

    def folder(self, name: str) -> Path:
        path = self.workdir / name
        (path / "manifests").mkdir(parents=True, exist_ok=True)
        return path

    def start_gateway(self, name: str, folder: Path, redis: bool = False, extra_args: list[str] = ()) -> Gateway:
        return start_gateway(
            self.settings.gateway_command,
            folder / "manifests",
            folder,
            self.pinning.prefix(GATEWAY),
            redis_url=self.redis_url if redis else None,
            ready_timeout=self.settings.ready_timeout_s,
            name=f"crdgate-{name}",
            extra_args=extra_args,
        )


def measure(ctx: Context, label: str, url: str, paths: list[str], headers: dict[str, str] | None = None,
            check_identity: bool = False, alive: Callable[[], None] | None = None,
            reference: list[WrkResult] | None = None, cpu_pid: int | None = None) -> list[WrkResult]:
    """Warm up, then ``runs`` measured wrk runs; ``alive`` raises if the target died meanwhile.

    With ``reference`` (a list to fill) and the nginx proxy up, an nginx run on
    the plain route goes just before each measured run. With ``cpu_pid`` each
    run records the CPU time of that process tree (the nginx runs, nginx's).
    """
    assert ctx.wrk is not None
    s = ctx.settings
    script = ctx.wrk.prepare(paths, headers, check_identity)
    paired = reference is not None and ctx.nginx_url is not None
    ref_script = ctx.wrk.prepare(["/plain"]) if paired else None
    if s.warmup_s > 0:
        ctx.progress.update(f"{label}: warm-up {s.warmup_s:g}s")
        ctx.wrk.run(url, script, s.warmup_s)
    results = []
    for i in range(s.runs):
        if paired:
            ctx.progress.update(f"{label}: nginx reference {i + 1}/{s.runs}")
            reference.append(ctx.wrk.run(ctx.nginx_url, ref_script, s.duration_s, ctx.nginx_pid))
        ctx.progress.update(f"{label}: run {i + 1}/{s.runs} ({s.duration_s:g}s, {ctx.wrk.connections} connections)")
        r = ctx.wrk.run(url, script, s.duration_s, cpu_pid)
        results.append(r)
        ctx.progress.update(
            f"{label}: run {i + 1}/{s.runs}: {r.rps:,.0f} req/s, p99 {r.latency_us['p99'] / 1000:.2f} ms, "
            f"{r.errors_total} errors"
        )
        if alive is not None:
            alive()
    return results


def error_reason(runs: list[WrkResult]) -> str:
    total = sum(r.requests for r in runs)
    kinds: dict[str, int] = {}
    for r in runs:
        for k, v in r.errors.items():
            kinds[k] = kinds.get(k, 0) + v
    detail = ", ".join(f"{k} {v}" for k, v in kinds.items() if v)
    return f"{sum(r.errors_total for r in runs)} errors in {total} requests ({detail})"


# -- baselines ---------------------------------------------------------------------


def run_baseline(ctx: Context, name: str, url: str | None, why_missing: str = "", cpu_pid: int | None = None) -> Result:
    title = {"direct": "backend reached directly (no proxy)", "nginx": "nginx, 1 worker, upstream keep-alive"}[name]
    result = Result(name, "baseline", title, target=name)
    if ctx.wrk is None:
        return result.skip(f"wrk is missing: {install_hint(['wrk'])}")
    if url is None:
        return result.skip(why_missing)
    try:
        result.runs = measure(ctx, name, url, ["/plain"], cpu_pid=cpu_pid)
    except WrkError as exc:
        return result.fail(str(exc))
    if any(r.errors_total for r in result.runs):
        result.fail(error_reason(result.runs))
    return result


# -- load scenarios ----------------------------------------------------------------


@dataclass(frozen=True)
class LoadSetup:
    docs: dict[str, list[dict]]  # file name -> documents
    paths: list[str]  # what wrk requests, cycled
    headers: dict[str, str] = field(default_factory=dict)
    filler: int = 0  # extra routes /r/<i> written as filler files
    redis: bool = False
    any_backend: bool = False  # answers may come from any backend identity (load balanced)


def _plain(backend: Backend, settings: Settings) -> LoadSetup:
    return LoadSetup({"plain.yaml": [manifests.api_endpoint("plain", "/plain", backend.url)]}, ["/plain"])


def _apikey(backend: Backend, settings: Settings) -> LoadSetup:
    key = credentials.api_key()
    docs = [
        manifests.secret("bench-apikeys", {credentials.CONSUMER: key}),
        manifests.api_endpoint(
            "apikey", "/apikey", backend.url,
            auth={"type": "APIKey", "secretRef": {"name": "bench-apikeys"}},
            rateLimit=manifests.high_rate_limit("Local"),
        ),
    ]
    return LoadSetup({"apikey.yaml": docs}, ["/apikey"], {manifests.API_KEY_HEADER: key})


def _local(backend: Backend, settings: Settings) -> LoadSetup:
    doc = manifests.api_endpoint("local", "/local", backend.url, rateLimit=manifests.high_rate_limit("Local"))
    return LoadSetup({"local.yaml": [doc]}, ["/local"])


def _jwt(backend: Backend, settings: Settings) -> LoadSetup:
    material = credentials.jwt_material()
    docs = [
        manifests.secret("bench-jwt", {"publicKey": material.public_pem}),
        manifests.api_endpoint("jwt", "/jwt", backend.url, auth={"type": "JWT", "secretRef": {"name": "bench-jwt"}}),
    ]
    return LoadSetup({"jwt.yaml": docs}, ["/jwt"], {"Authorization": f"Bearer {material.token}"})


def _global(backend: Backend, settings: Settings) -> LoadSetup:
    doc = manifests.api_endpoint("global", "/global", backend.url, rateLimit=manifests.high_rate_limit("Global"))
    return LoadSetup({"global.yaml": [doc]}, ["/global"], redis=True)


def _endpoints(backend: Backend, settings: Settings) -> LoadSetup:
    docs = [
        *manifests.service_with_endpoints("pods", backend.ports),
        {"apiVersion": "crdgate.io/v1", "kind": "APIEndpoint",
         "metadata": {"name": "pods", "namespace": manifests.NAMESPACE},
         "spec": {"path": "/pods", "backendService": "pods"}},
    ]
    return LoadSetup({"endpoints.yaml": docs}, ["/pods"], any_backend=True)


def _many_routes(backend: Backend, settings: Settings) -> LoadSetup:
    n = settings.routes
    paths = [manifests.filler_path(i) for i in range(n)]
    random.Random(8).shuffle(paths)  # spread over the whole table, same order every run
    return LoadSetup({}, paths, filler=n)


# Gateway API: the same two shapes through HTTPRoutes on a Gateway of crdgate's
# GatewayClass. HTTPRoute backends are Services, so the backend is a Service
# with one EndpointSlice to backend 0 (the same single upstream as `plain`).
GATEWAY_SERVICE = "bench-backend"


def _httproute(backend: Backend, settings: Settings) -> LoadSetup:
    docs = [*manifests.gateway_setup({GATEWAY_SERVICE: backend.port}),
            manifests.http_route("plain", "/plain", GATEWAY_SERVICE)]
    return LoadSetup({"httproute.yaml": docs}, ["/plain"])


def _httproute_many(backend: Backend, settings: Settings) -> LoadSetup:
    n = settings.routes
    paths = [manifests.httproute_filler_path(i) for i in range(n)]
    random.Random(8).shuffle(paths)  # spread over the whole table, same order every run
    docs = {"gateway.yaml": manifests.gateway_setup({GATEWAY_SERVICE: backend.port}),
            **manifests.httproute_filler(n, GATEWAY_SERVICE)}
    return LoadSetup(docs, paths)


@dataclass(frozen=True)
class LoadScenario:
    name: str
    title: str
    setup: Callable[[Backend, Settings], LoadSetup]


LOAD_SCENARIOS = {
    s.name: s
    for s in (
        LoadScenario("plain", "plain route", _plain),
        LoadScenario("apikey", "API-key auth + local rate limit (never triggers)", _apikey),
        LoadScenario("local-ratelimit", "local rate limit per client address (never triggers)", _local),
        LoadScenario("jwt", "JWT auth (RS256)", _jwt),
        LoadScenario("global-ratelimit", "global rate limit through Redis (never triggers)", _global),
        LoadScenario("many-routes", "N routes in the table, requests spread over all of them", _many_routes),
        LoadScenario("endpoints", "a Service with one endpoint per backend identity (8), round robin", _endpoints),
        LoadScenario("httproute", "Gateway API: one HTTPRoute to a Service (one endpoint)", _httproute),
        LoadScenario("httproute-many", "Gateway API: N HTTPRoutes, requests spread over all of them", _httproute_many),
    )
}


def preflight(gw: Gateway, paths: list[str], headers: dict[str, str], expect_identity: int | None = 0) -> str:
    """'' when a few single requests get 200 from the backend, else what went wrong."""
    client = Client(gw.port, timeout=5.0)
    try:
        step = max(1, len(paths) // 3)
        for path in paths[::step][:3]:
            status, body = client.get(path, headers)
            want = f"backend-{expect_identity} " if expect_identity is not None else "backend-"
            if status != 200 or not body.startswith(want):
                got = f"{status} {body.strip()[:200]!r}" if status else body
                return f"preflight GET {path} -> {got} (expected 200 from the backend)"
        return ""
    finally:
        client.close()


def run_load(ctx: Context, scenario: LoadScenario) -> Result:
    s = ctx.settings
    title = scenario.title.replace("N routes", f"{s.routes:,} routes")
    result = Result(scenario.name, "load", title)
    setup = scenario.setup(ctx.backend, s)
    missing = ["wrk"] if ctx.wrk is None else []
    if setup.redis and not ctx.tools.has("redis-server"):
        missing.append("redis-server")
    if missing:
        return result.skip(f"{' and '.join(missing)} missing: {install_hint(missing)}")
    if setup.redis and ctx.redis_url is None:
        return result.skip(ctx.redis_reason)
    folder = ctx.folder(scenario.name)
    for fname, docs in setup.docs.items():
        manifests.write(folder / "manifests" / fname, docs)
    if setup.filler:
        manifests.write_filler(folder / "manifests", setup.filler, ctx.backend.url)
    ctx.progress.update(f"{scenario.name}: starting crdgate")
    try:
        gw = ctx.start_gateway(scenario.name, folder, redis=setup.redis)
    except GatewayError as exc:
        return result.fail(str(exc))
    try:
        result.extra["ready_after_s"] = round(gw.ready_after_s, 3)
        problem = preflight(gw, setup.paths, setup.headers, None if setup.any_backend else 0)
        if problem:
            return result.fail(problem)
        result.runs = measure(ctx, scenario.name, gw.url, setup.paths, setup.headers, alive=gw.check_alive,
                              reference=result.reference, cpu_pid=gw.child.pid)
        if any(r.errors_total for r in result.runs):
            result.fail(error_reason(result.runs))
    except (WrkError, GatewayError) as exc:
        result.fail(str(exc))
    finally:
        gw.stop()
    return result
