"""The ``p99-fixed`` scenario: latency of crdgate and nginx at the same offered load.

The load scenarios compare latency at the same connection count, where the
faster proxy is also sent more; here both get the same requests per second.
First nginx's peak is measured (wrk, closed loop, on the plain route); then
crdgate (plain route) and nginx are each sent ``LOAD_SHARE`` of that rate by
the open-loop generator (bench/fixedrate.py: latency from each request's
scheduled time, so a stall counts in every request it delayed). The rounds
alternate nginx and crdgate, seconds apart, and the order flips each round;
the verdict is the median over rounds of crdgate's p99 over nginx's, against
``P99_TARGET``. One run against the backend itself at the same rate shows the
floor the generator and the backend set on their own.

crdgate's own peak (wrk, closed loop, same route) is measured too: at the same
rate, a proxy that costs more CPU per request runs nearer its ceiling, and
queueing alone then lengthens its tail (at utilisation u the mean wait grows
as u / (1 - u): 1 at 50%, 3 at 75%). ``utilisation`` shows how much of a p99
gap is that rather than stalls.
"""

from __future__ import annotations

from . import manifests
from .fixedrate import FixedRateError, FixedRateRunner
from .gateway import GatewayError
from .pinning import LOAD
from .scenarios import Context, Result, error_reason, preflight
from .stats import median, ratio
from .tools import install_hint
from .wrk import PERCENTILES, WrkError

NAME = "p99-fixed"
LOAD_SHARE = 0.5  # of nginx's peak req/s
P99_TARGET = 2.0  # crdgate's p99 at most this many times nginx's
TITLE = f"plain route at {LOAD_SHARE:.0%} of nginx's peak rate (open loop), p99 vs nginx's"


def verdict(runs, reference, rate: float, peak: float, lags: list[dict], direct=None,
            crdgate_peak: float | None = None) -> dict:
    """Per-round and median figures of crdgate's runs against the nginx runs of the same rounds;
    ``direct``: a run against the backend itself at the same rate (the generator's floor);
    ``crdgate_peak``: crdgate's own closed-loop peak (req/s), for its utilisation at ``rate``."""
    pairs = [(c, n) for c, n in zip(runs, reference)]
    p99_ratios = [ratio(c.latency_us["p99"], n.latency_us["p99"]) for c, n in pairs if n.latency_us["p99"]]
    p99_ratio = median(p99_ratios)
    keys = [f"p{p:g}" for p in PERCENTILES]
    return {
        "rate": rate,
        "nginx_peak_rps": peak,
        "load_share": LOAD_SHARE,
        "rounds": len(pairs),
        "crdgate_us": {k: median([c.latency_us[k] for c, _ in pairs]) for k in keys} if pairs else {},
        "nginx_us": {k: median([n.latency_us[k] for _, n in pairs]) for k in keys} if pairs else {},
        "p99_ratio": p99_ratio,
        "p99_ratios": p99_ratios,
        "p99_target": P99_TARGET,
        "met": p99_ratio is not None and p99_ratio <= P99_TARGET,
        # How late the generator itself sent what it could send at once (its own error).
        "send_lag_p99_us": median([lag["p99"] for lag in lags]) if lags else None,
        # The backend reached directly at the same rate: what the generator and the backend
        # add on their own. A proxy's figures close to these say little about the proxy.
        "direct_us": {k: direct.latency_us[k] for k in keys} if direct is not None else None,
        "crdgate_peak_rps": crdgate_peak,
        # Share of each proxy's own peak that the rate asks for: nginx's is LOAD_SHARE by construction.
        "utilisation": {"crdgate": rate / crdgate_peak if crdgate_peak else None, "nginx": rate / peak if peak else None},
    }


def summary_line(extra: dict) -> str:
    """The text report's lines for this scenario."""
    if not extra.get("rounds"):
        return "p99 at equal offered load: no rounds"
    c, n = extra["crdgate_us"], extra["nginx_us"]
    cells = "  ".join(f"{k} {c[k] / 1000:.2f}/{n[k] / 1000:.2f}" for k in c)
    met = "met" if extra["met"] else "NOT met"
    lag = extra.get("send_lag_p99_us")
    direct = extra.get("direct_us")
    return (f"p99 at equal offered load ({extra['rate']:,.0f} req/s = {extra['load_share']:.0%} of nginx's peak "
            f"{extra['nginx_peak_rps']:,.0f}): crdgate/nginx ms {cells}; p99 ratio {extra['p99_ratio']:.2f}x "
            f"(median of {extra['rounds']} rounds; target <= {extra['p99_target']:g}x: {met})"
            + (f"; generator send lag p99 {lag / 1000:.2f} ms" if lag is not None else "")
            + (f"; backend direct at that rate p99 {direct['p99'] / 1000:.2f} ms" if direct else "")
            + _utilisation(extra))


def _utilisation(extra: dict) -> str:
    use = (extra.get("utilisation") or {}).get("crdgate")
    if use is None:
        return ""
    return (f"; crdgate's own peak {extra['crdgate_peak_rps']:,.0f} req/s: the rate is {use:.0%} of it "
            f"(nginx: {extra['utilisation']['nginx']:.0%})")


def run_fixed_rate(ctx: Context) -> Result:
    result = Result(NAME, "fixed-rate", TITLE)
    if ctx.wrk is None:
        return result.skip(f"wrk is missing (it measures nginx's peak): {install_hint(['wrk'])}")
    if ctx.nginx_url is None:
        return result.skip(f"needs the nginx proxy as the reference: {install_hint(['nginx'])}")
    s = ctx.settings
    gen = FixedRateRunner(ctx.workdir, s.connections, ctx.pinning.prefix(LOAD))
    folder = ctx.folder(NAME)
    manifests.write(folder / "manifests" / "plain.yaml", [manifests.api_endpoint("plain", "/plain", ctx.backend.url)])
    ctx.progress.update(f"{NAME}: nginx peak")
    try:
        peak_runs = [ctx.wrk.run(ctx.nginx_url, ctx.wrk.prepare(["/plain"]), s.duration_s) for _ in range(2)]
    except WrkError as exc:
        return result.fail(f"measuring nginx's peak: {exc}")
    peak = max(r.rps for r in peak_runs)
    rate = round(peak * LOAD_SHARE)
    ctx.progress.update(f"{NAME}: starting crdgate")
    try:
        gw = ctx.start_gateway(NAME, folder)
    except GatewayError as exc:
        return result.fail(str(exc))
    nginx_port = int(ctx.nginx_url.rsplit(":", 1)[1])
    lags: list[dict] = []
    try:
        problem = preflight(gw, ["/plain"], {})
        if problem:
            return result.fail(problem)
        ctx.progress.update(f"{NAME}: crdgate peak")
        try:
            own_peak = max(ctx.wrk.run(gw.url, ctx.wrk.prepare(["/plain"]), s.duration_s).rps for _ in range(2))
        except WrkError as exc:
            return result.fail(f"measuring crdgate's peak: {exc}")
        paths = gen.prepare(["/plain"])
        if s.warmup_s > 0:
            for port in (nginx_port, gw.port):
                gen.run(port, rate, s.warmup_s, paths)
        ctx.progress.update(f"{NAME}: backend directly at {rate:,} req/s (the generator's floor)")
        direct, _ = gen.run(ctx.backend.port, rate, s.duration_s, paths)
        for i in range(s.runs):
            order = [("nginx", nginx_port, ctx.nginx_pid, result.reference), ("crdgate", gw.port, gw.child.pid, result.runs)]
            if i % 2:
                order.reverse()
            for who, port, pid, runs in order:
                ctx.progress.update(f"{NAME}: {who} {i + 1}/{s.runs} at {rate:,} req/s")
                run, raw = gen.run(port, rate, s.duration_s, paths, pid)
                runs.append(run)
                lags.append(raw["send_lag_us"])
            gw.check_alive()
        result.extra = verdict(result.runs, result.reference, rate, peak, lags, direct, own_peak)
        bad = [r for r in result.runs + result.reference if r.errors_total]
        if bad:
            result.fail(error_reason(result.runs + result.reference))
    except (FixedRateError, GatewayError) as exc:
        result.fail(str(exc))
    finally:
        gw.stop()
    return result
