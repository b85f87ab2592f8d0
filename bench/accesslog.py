"""The ``access-log`` scenario: what writing an access log to a file costs crdgate, and nginx.

Four proxies serve the same plain route: crdgate with ``--access-log off`` and
with ``--access-log on`` (JSON lines to stdout, which the harness sends to a
file), and nginx as the reference proxy without an access log (the run's own)
and with one (``access_log FILE combined buffer=64k flush=1s``, as production
nginx is set up). Each measured round runs the four seconds apart, the order
reversed every other round, so each cost is a paired figure: the median over
rounds of ``1 - on/off`` req/s, for crdgate and for nginx, and the median of
crdgate-on / nginx-on. The issue's target: crdgate's cost at most 10%.

After the runs the report checks the log was really written: the lines in
crdgate's stdout file and in nginx's log file, and crdgate's
``crdgate_access_log_dropped_total``.
"""

from __future__ import annotations

from . import manifests
from .backends import start_nginx_proxy
from .client import Client
from .gateway import GatewayError
from .pinning import GATEWAY
from .scenarios import Context, Result, error_reason, preflight
from .stats import median
from .tools import install_hint
from .wrk import WrkError, WrkResult

TITLE = "plain route, access log on (to a file) vs off; nginx the same"


def paired_cost(on: list[WrkResult], off: list[WrkResult]) -> float | None:
    """Median over rounds of 1 - on/off req/s, in percent (None without a pair)."""
    costs = [100.0 * (1.0 - a.rps / b.rps) for a, b in zip(on, off) if b.rps]
    return round(median(costs), 2) if costs else None


def paired_ratio(a: list[WrkResult], b: list[WrkResult]) -> float | None:
    """Median over rounds of a/b req/s (None without a pair)."""
    ratios = [x.rps / y.rps for x, y in zip(a, b) if y.rps]
    return round(median(ratios), 3) if ratios else None


def figures(runs: dict[str, list[WrkResult]]) -> dict:
    """The scenario's figures from its four series (crdgate-off/-on, nginx-off/-on), paired by round."""
    med = {k: (median([r.rps for r in v]) if v else None) for k, v in runs.items()}
    return {
        "rounds": len(runs["crdgate-on"]),
        "crdgate_cost_pct": paired_cost(runs["crdgate-on"], runs["crdgate-off"]),
        "nginx_cost_pct": paired_cost(runs["nginx-on"], runs["nginx-off"]),
        "crdgate_on_vs_nginx_on": paired_ratio(runs["crdgate-on"], runs["nginx-on"]),
        "rps_median": med,
    }


def dropped_from_metrics(text: str) -> float:
    """crdgate_access_log_dropped_total from a /metrics page."""
    for line in text.splitlines():
        if line.startswith("crdgate_access_log_dropped_total"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def summary_line(extra: dict) -> str:
    """One line for the text report."""
    if not extra.get("rounds"):
        return "access log: no paired rounds"
    pct = lambda v: "-" if v is None else f"{v:+.1f}%"  # noqa: E731
    rps = extra.get("rps_median") or {}
    k = lambda name: "-" if rps.get(name) is None else f"{rps[name]:,.0f}"  # noqa: E731
    vs = extra.get("crdgate_on_vs_nginx_on")
    return (f"access log to a file: crdgate req/s cost {pct(extra['crdgate_cost_pct'])} (1 - on/off), "
            f"nginx {pct(extra['nginx_cost_pct'])}; crdgate-on vs nginx-on {'-' if vs is None else f'{vs:.2f}x'} "
            f"(medians of {extra['rounds']} paired rounds; req/s crdgate off {k('crdgate-off')}, on {k('crdgate-on')}, "
            f"nginx off {k('nginx-off')}, on {k('nginx-on')}); lines written: crdgate {extra.get('crdgate_lines', 0):,}, "
            f"nginx {extra.get('nginx_lines', 0):,}, dropped {extra.get('crdgate_dropped', 0):,.0f}")


def _count_lines(path, marker: bytes) -> int:
    """How often ``marker`` occurs in the file: its lines, or the JSON lines among the process log's."""
    try:
        with open(path, "rb") as f:
            return sum(chunk.count(marker) for chunk in iter(lambda: f.read(1 << 20), b""))
    except OSError:
        return 0


def run_access_log(ctx: Context) -> Result:
    result = Result("access-log", "access-log", TITLE)
    if ctx.wrk is None:
        return result.skip(f"wrk is missing: {install_hint(['wrk'])}")
    if ctx.nginx_url is None or not ctx.tools.has("nginx"):
        return result.skip(f"needs nginx as the reference: {install_hint(['nginx'])}")
    folder = ctx.folder("access-log")
    manifests.write(folder / "manifests" / "plain.yaml",
                    [manifests.api_endpoint("plain", "/plain", ctx.backend.url)])
    gws, children = [], []
    nginx_log = folder / "nginx-access.log"
    try:
        ctx.progress.update("access-log: starting crdgate with and without its access log, nginx with one")
        try:
            quiet = ctx.start_gateway("access-log-off", folder)
            gws.append(quiet)
            logging = ctx.start_gateway("access-log-on", folder, extra_args=["--access-log", "on"])
            gws.append(logging)
        except GatewayError as exc:
            return result.fail(str(exc))
        child, port = start_nginx_proxy(folder, ctx.tools.path("nginx"), ctx.backend.port,
                                        ctx.pinning.prefix(GATEWAY), name="proxy-logging", access_log=nginx_log)
        children.append(child)
        for gw in gws:
            problem = preflight(gw, ["/plain"], {})
            if problem:
                return result.fail(problem)
        targets = {
            "nginx-off": (ctx.nginx_url, ctx.nginx_pid, None),
            "nginx-on": (f"http://127.0.0.1:{port}", child.pid, None),
            "crdgate-off": (quiet.url, quiet.child.pid, quiet),
            "crdgate-on": (logging.url, logging.child.pid, logging),
        }
        runs: dict[str, list[WrkResult]] = {k: [] for k in targets}
        s = ctx.settings
        script = ctx.wrk.prepare(["/plain"])
        if s.warmup_s > 0:
            for url, _, _ in targets.values():
                ctx.wrk.run(url, script, s.warmup_s)
        order = list(targets)
        for i in range(s.runs):
            for name in (order if i % 2 == 0 else order[::-1]):
                url, pid, gw = targets[name]
                ctx.progress.update(f"access-log: {name} run {i + 1}/{s.runs}")
                runs[name].append(ctx.wrk.run(url, script, s.duration_s, pid))
                if gw is not None:
                    gw.check_alive()
        admin = Client(logging.admin_port, timeout=5.0)
        try:
            status, body = admin.get("/metrics")
        finally:
            admin.close()
        result.runs = runs["crdgate-on"]
        result.reference = runs["nginx-on"]
        result.extra = {
            **figures(runs),
            "series": {k: [w.to_json() for w in v] for k, v in runs.items()},
            "crdgate_lines": _count_lines(logging.child.log_path, b'{"time":'),
            "nginx_lines": 0,  # counted once nginx has flushed its buffer (below)
            "crdgate_dropped": dropped_from_metrics(body) if status == 200 else None,
        }
        every = [r for v in runs.values() for r in v]
        if any(r.errors_total for r in every):
            result.fail(error_reason(every))
    except (WrkError, GatewayError, RuntimeError) as exc:
        result.fail(str(exc))
    finally:
        for gw in gws:
            gw.stop()
        for child in children:
            child.stop()  # nginx writes out its log buffer on exit
        if result.extra:
            result.extra["nginx_lines"] = _count_lines(nginx_log, b"\n")
    return result
