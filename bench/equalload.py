"""The ``p99-fixed`` scenario: latency of crdgate and nginx at the same offered load.

The load scenarios compare latency at the same connection count, where the
faster proxy is also sent more; here both get the same requests per second.
First nginx's peak is measured (wrk, closed loop, on the plain route); then
crdgate (plain route) and nginx are each sent ``LOAD_SHARE`` of that rate by
the open-loop generator (bench/fixedrate.py: latency from each request's
scheduled time, so a stall counts in every request it delayed). Each round
runs nginx, crdgate and a second nginx of the same configuration on the same
CPU (the *control*), seconds apart, in an order that rotates from round to
round; it ends with a run against the backend itself at the same rate: the
floor the generator and the backend set on their own, in the same minutes.

The control is nginx measured against itself. A host whose tail moves by
more than ``P99_TARGET`` between two runs of the same proxy cannot tell a 2x
difference from noise: on the 2-CPU development VM (2026-12-04) nginx against
itself exceeded 2x in 3 rounds of 10, at the same rate, in the same minutes.
Its ratios are reported beside crdgate's, and a verdict that fails while the
control fails too is *inconclusive* (the host), not a measurement of crdgate.

The verdict is on the p99 of every request of every valid round, pooled: the
generator reports a latency histogram per run (bench/fixedrate.py, 1% buckets)
and each proxy's runs are merged, as one run of ``rounds x --duration``
seconds would be (what a long wrk2 run measures). crdgate's pooled p99 at most
``P99_TARGET`` times nginx's: *met*; otherwise *NOT met*, or *inconclusive*
when the control's pooled p99 was more than ``P99_TARGET`` times nginx's too.
Each round's own ratio is reported beside it, and the worst, but not judged:
the worst of N noisy ratios grows with N (nginx against itself went past 2x in
3 rounds of 10), while the pooled ratio settles as rounds are added.

Hence ``ROUNDS_PER_RUN`` valid rounds per ``--runs`` (10 by default): a p99 is
set by the worst 1% of a run, and on a host where a kernel thread takes a CPU
for a few ms every 500 ms (bench/hostnoise.py) those are the requests queued
behind the wakes that landed on the proxy's CPU. How many did in a proxy's
15 s (5 rounds) moved the pooled ratio between 1.03x and 2.03x across seven
runs of the same build on the development VM (2026-12-04, bench/HISTORY.md);
30 s per proxy halves the variance of that count.

A round is valid only if the generator held the load: no errors, and it sent
what it could send at once within ``SEND_LAG_MAX_US`` at p99 in every run of
the round (latency counts from each request's due time, so the generator's
own lateness would be charged to the proxy in the run). Otherwise the round is
reported as invalid with its reason, not counted, and another is run, at most
``EXTRA_ROUNDS`` more than needed; fewer valid rounds than needed fails the
scenario. The backend reached directly is the floor, reported per
round and pooled: a round whose direct p99 is high had a busy load CPU, which
the control and the pooling account for, so it is not left out.

Placement (bench/pinning.py): crdgate, and nginx in its turn, alone on the first
CPU; the generator and the backend share the others. Other processes on the
host are not moved: on a shared machine they still take the proxies' CPU at
times, which the backend-direct check cannot see.

The rate is fixed from nginx's peak before the rounds, and that peak is
measured again after them: the development VM has slow phases in which every
process's CPU cost grows by 10-20% for minutes (plain-route peaks of 50k
instead of 60k). A host that slowed during the rounds raised the load to more
than ``LOAD_SHARE`` of what nginx could then serve, near the ceiling of both
proxies, where the one with less headroom queues for whole seconds (one such
run: nginx's CPU 78% busy at the rate instead of 69%, crdgate's pooled p99 28
ms against nginx's 4.6). A miss when nginx's peak after the rounds is more
than ``PEAK_DRIFT_MAX`` below the one before is *inconclusive* too, with both
peaks reported; a miss on a steady host stays *NOT met*.

crdgate's own peak (wrk, closed loop, same route) is measured too: at the same
rate, a proxy that costs more CPU per request runs nearer its ceiling, and
queueing alone then lengthens its tail (at utilisation u the mean wait grows
as u / (1 - u): 1 at 50%, 3 at 75%). ``utilisation`` shows how much of a p99
gap is that rather than stalls.
"""

from __future__ import annotations

from . import manifests
from .backends import start_nginx_proxy
from .fixedrate import FixedRateError, FixedRateRunner, pooled_percentiles
from .gateway import GatewayError
from .pinning import GATEWAY, LOAD
from .scenarios import Context, Result, error_reason, preflight
from .stats import median, ratio
from .tools import install_hint
from .wrk import PERCENTILES, WrkError

NAME = "p99-fixed"
LOAD_SHARE = 0.5  # of nginx's peak req/s
P99_TARGET = 2.0  # crdgate's p99 at most this many times nginx's
# A generator later than this at p99 set the latencies of its run, not the proxy (see the module
# docstring); on a quiet 2-CPU host its send lag is ~0.2 ms, nginx's p99 at the rate ~0.7-0.9 ms.
SEND_LAG_MAX_US = 1000.0
# Valid rounds per --runs: the verdict is on a tail, which needs more requests than a mean to settle
# (see the module docstring); 10 rounds by default, 30 s of requests per proxy.
ROUNDS_PER_RUN = 2
EXTRA_ROUNDS = 3  # invalid rounds are run again, at most this many more than the rounds needed
# nginx's peak is measured again after the rounds; lower by more than this share, the host slowed
# during them and the rate was more than LOAD_SHARE of what nginx could then do (see the docstring).
PEAK_DRIFT_MAX = 0.10
TITLE = f"plain route at {LOAD_SHARE:.0%} of nginx's peak rate (open loop), p99 vs nginx's"


def round_problem(direct, send_lags_p99_us: list[float]) -> str | None:
    """Why a round says nothing about either proxy (the load was not held), or None.

    ``direct``: the round's run against the backend itself (a WrkResult);
    ``send_lags_p99_us``: the generator's send-lag p99 in each run of the round."""
    problems = []
    if direct.errors_total:
        problems.append(f"the backend reached directly had {direct.errors_total} errors")
    worst_lag = max(send_lags_p99_us, default=0.0)
    if worst_lag > SEND_LAG_MAX_US:
        problems.append(f"the generator's send lag p99 reached {worst_lag / 1000:.2f} ms "
                        f"(> {SEND_LAG_MAX_US / 1000:g} ms)")
    return "; ".join(problems) or None


def play_rounds(play_round, runs: int) -> tuple[list[dict], list[dict], int]:
    """Rounds until ``runs`` are valid or ``runs + EXTRA_ROUNDS`` were played.

    ``play_round(n)`` plays round ``n`` (from 1) and returns ``{who: (WrkResult, raw)}``
    for "nginx", "crdgate" and "direct". Returns (the valid rounds, the invalid ones as
    ``{round, reason, <who>_p99_us}``, rounds played)."""
    valid: list[dict] = []
    invalid: list[dict] = []
    played = 0
    while len(valid) < runs and played < runs + EXTRA_ROUNDS:
        played += 1
        got = play_round(played)
        problem = round_problem(got["direct"][0], [raw["send_lag_us"]["p99"] for _, raw in got.values()])
        if problem:
            invalid.append({"round": played, "reason": problem,
                            **{f"{who}_p99_us": run.latency_us["p99"] for who, (run, _) in got.items()}})
        else:
            valid.append(got)
    return valid, invalid, played


def p99_ratios(runs, reference) -> list[float]:
    """Each round's p99 of ``runs`` over the p99 of ``reference`` in the same round."""
    return [ratio(c.latency_us["p99"], n.latency_us["p99"]) for c, n in zip(runs, reference) if n.latency_us["p99"]]


def verdict(runs, reference, rate: float, peak: float, lags: list[dict], direct=None,
            crdgate_peak: float | None = None, invalid: list[dict] | None = None,
            cpu_busy: dict[str, list[float]] | None = None, control=None,
            pooled: dict[str, dict] | None = None, peak_after: float | None = None) -> dict:
    """crdgate's runs against the nginx runs of the same rounds; ``direct``: the run (or one per
    round) against the backend itself at the same rate (the generator's floor); ``crdgate_peak``:
    crdgate's own closed-loop peak (req/s), for its utilisation at ``rate``; ``invalid``: the
    rounds left out (``round``, ``reason``, figures); ``cpu_busy``: per proxy, how busy its CPU
    was in each valid run (0..1); ``control``: the second nginx's run in each round (nginx
    against itself: what the host alone moves); ``pooled``: per "crdgate", "nginx", "control"
    and "direct", the percentiles of all their valid runs' samples together
    (``fixedrate.pooled_percentiles``); ``peak_after``: nginx's peak measured again after the
    rounds. The verdict is on the pooled p99s; without them (runs that kept no histogram) on the
    median of the rounds' ratios."""
    pairs = [(c, n) for c, n in zip(runs, reference)]
    ratios = p99_ratios(runs, reference)
    control_ratios = p99_ratios(control, reference) if control else []
    pooled = pooled or {}
    nginx_pooled = (pooled.get("nginx") or {}).get("p99")

    def pooled_ratio(who: str) -> float | None:
        own = (pooled.get(who) or {}).get("p99")
        return ratio(own, nginx_pooled) if own is not None and nginx_pooled else None

    pooled_p99_ratio, control_pooled_p99_ratio = pooled_ratio("crdgate"), pooled_ratio("control")
    judged = pooled_p99_ratio if nginx_pooled else median(ratios)
    control_judged = control_pooled_p99_ratio if nginx_pooled else median(control_ratios)
    met = judged is not None and judged <= P99_TARGET
    drift = 1.0 - peak_after / peak if peak_after and peak else None
    if met:
        state = "met"
    elif control_judged is not None and control_judged > P99_TARGET:
        state = "inconclusive"  # the host moved nginx against itself past the target too
    elif drift is not None and drift > PEAK_DRIFT_MAX:
        state = "inconclusive"  # the host slowed during the rounds: the load was above LOAD_SHARE
    else:
        state = "not met"
    directs = direct if isinstance(direct, list) else ([direct] if direct is not None else [])
    keys = [f"p{p:g}" for p in PERCENTILES]
    return {
        "rate": rate,
        "nginx_peak_rps": peak,
        # nginx's peak again after the rounds, and how far below the first it was (share; negative: above).
        "nginx_peak_after_rps": peak_after,
        "peak_drift": drift,
        "load_share": LOAD_SHARE,
        "rounds": len(pairs),
        # Every request of every valid round, per proxy ("samples": how many).
        "pooled_us": {who: dict(figures) for who, figures in pooled.items()},
        "pooled_p99_ratio": pooled_p99_ratio,
        "control_pooled_p99_ratio": control_pooled_p99_ratio,
        # The median round's figures.
        "crdgate_us": {k: median([c.latency_us[k] for c, _ in pairs]) for k in keys} if pairs else {},
        "nginx_us": {k: median([n.latency_us[k] for _, n in pairs]) for k in keys} if pairs else {},
        "p99_ratio": median(ratios),
        "p99_ratios": ratios,
        "p99_ratio_worst": max(ratios) if ratios else None,
        "p99_target": P99_TARGET,
        # The ratio the verdict is on: pooled (or, without histograms, the rounds' median).
        "p99_ratio_judged": judged,
        "met": met,
        # The same per-round ratio for the second nginx (the control): nginx against itself.
        "control_p99_ratios": control_ratios,
        "control_p99_ratio_worst": max(control_ratios) if control_ratios else None,
        # met | not met | inconclusive (not met, and the control was not within the target either,
        # or nginx's peak after the rounds was more than PEAK_DRIFT_MAX below the one before)
        "verdict": state,
        "invalid_rounds": list(invalid or []),
        # How late the generator itself sent what it could send at once (its own error).
        "send_lag_p99_us": median([lag["p99"] for lag in lags]) if lags else None,
        # The backend reached directly at the same rate: what the generator and the backend
        # add on their own. A proxy's figures close to these say little about the proxy.
        "direct_us": {k: median([d.latency_us[k] for d in directs]) for k in keys} if directs else None,
        "direct_p99s_us": [d.latency_us["p99"] for d in directs],
        "crdgate_peak_rps": crdgate_peak,
        # Share of each proxy's own peak that the rate asks for: nginx's is LOAD_SHARE by construction.
        "utilisation": {"crdgate": rate / crdgate_peak if crdgate_peak else None, "nginx": rate / peak if peak else None},
        # How busy each proxy's CPU was at this rate (median of the valid runs): the open-loop
        # cost, where requests arrive one at a time and each pays its own wake-ups, rather than
        # the closed-loop peak's batches. Near 1, queueing sets the tail, whatever the code does.
        "cpu_busy": {who: median(shares) for who, shares in (cpu_busy or {}).items() if shares},
    }


def summary_line(extra: dict) -> str:
    """The text report's lines for this scenario."""
    if not extra.get("rounds"):
        invalid = extra.get("invalid_rounds") or []
        return "p99 at equal offered load: no valid rounds" + (
            f" ({len(invalid)} invalid: " + "; ".join(f"round {r['round']}: {r['reason']}" for r in invalid) + ")"
            if invalid else "")
    pooled = extra.get("pooled_us") or {}
    pooled_here = "crdgate" in pooled and "nginx" in pooled
    c, n = (pooled["crdgate"], pooled["nginx"]) if pooled_here else (extra["crdgate_us"], extra["nginx_us"])
    cells = "  ".join(f"{k} {c[k] / 1000:.2f}/{n[k] / 1000:.2f}" for k in (f"p{p:g}" for p in PERCENTILES))
    drift = extra.get("peak_drift")
    slowed = drift is not None and drift > PEAK_DRIFT_MAX
    control_missed = (extra.get("control_pooled_p99_ratio") or 0) > extra["p99_target"]
    why = "the host slowed during the rounds" if slowed and not control_missed else "the control exceeded it too"
    met = {"met": "met", "inconclusive": f"NOT met, inconclusive: {why}"}.get(
        extra.get("verdict", "met" if extra["met"] else "not met"), "NOT met")
    judged = extra.get("p99_ratio_judged", extra.get("p99_ratio"))
    control_judged = extra.get("control_pooled_p99_ratio")
    control = extra.get("control_p99_ratios") or []
    lag = extra.get("send_lag_p99_us")
    direct = pooled.get("direct") or extra.get("direct_us")
    worst = extra.get("p99_ratio_worst")
    rounds = " / ".join(f"{r:.2f}" for r in extra.get("p99_ratios") or [])
    invalid = extra.get("invalid_rounds") or []
    what = (f"every request of {extra['rounds']} valid rounds pooled" if pooled_here
            else f"median of {extra['rounds']} valid rounds")
    return (f"p99 at equal offered load ({extra['rate']:,.0f} req/s = {extra['load_share']:.0%} of nginx's peak "
            f"{extra['nginx_peak_rps']:,.0f}), {what}: crdgate/nginx ms {cells}; p99 ratio "
            + (f"{judged:.2f}x " if judged is not None else "n/a ")
            + f"(target <= {extra['p99_target']:g}x: {met})"
            + (f"; control, a second nginx against nginx: {control_judged:.2f}x" if control_judged is not None else "")
            + (f"; per round: crdgate {rounds}, worst {worst:.2f}x" if worst is not None and rounds else "")
            + (f"; control " + " / ".join(f"{r:.2f}" for r in control)
               + f", worst {extra['control_p99_ratio_worst']:.2f}x" if control else "")
            + (f"; {len(invalid)} round(s) invalid, not counted: "
               + "; ".join(f"round {r['round']}: {r['reason']}" for r in invalid) if invalid else "")
            + (f"; nginx's peak after the rounds {extra['nginx_peak_after_rps']:,.0f} req/s "
               f"({-drift:+.0%})" if drift is not None else "")
            + (f"; generator send lag p99 {lag / 1000:.2f} ms" if lag is not None else "")
            + (f"; backend direct at that rate p99 {direct['p99'] / 1000:.2f} ms" if direct else "")
            + _utilisation(extra) + _busy(extra))


def _utilisation(extra: dict) -> str:
    use = (extra.get("utilisation") or {}).get("crdgate")
    if use is None:
        return ""
    return (f"; crdgate's own peak {extra['crdgate_peak_rps']:,.0f} req/s: the rate is {use:.0%} of it "
            f"(nginx: {extra['utilisation']['nginx']:.0%})")


def _busy(extra: dict) -> str:
    busy = extra.get("cpu_busy") or {}
    if "crdgate" not in busy or "nginx" not in busy:
        return ""
    return (f"; the proxy's CPU busy at this rate (kernel network work included): crdgate {busy['crdgate']:.0%}, "
            f"nginx {busy['nginx']:.0%}")


def closed_loop_peak(ctx: Context, url: str) -> float:
    """A proxy's peak on the plain route: the better of two wrk runs (closed loop)."""
    script = ctx.wrk.prepare(["/plain"])
    return max(ctx.wrk.run(url, script, ctx.settings.duration_s).rps for _ in range(2))


def run_fixed_rate(ctx: Context) -> Result:
    result = Result(NAME, "fixed-rate", TITLE)
    if ctx.wrk is None:
        return result.skip(f"wrk is missing (it measures nginx's peak): {install_hint(['wrk'])}")
    if ctx.nginx_url is None:
        return result.skip(f"needs the nginx proxy as the reference: {install_hint(['nginx'])}")
    s = ctx.settings
    proxy_cpus = ctx.pinning.cpus.get(GATEWAY) or ()
    gen = FixedRateRunner(ctx.workdir, s.connections, ctx.pinning.prefix(LOAD),
                          watch_cpu=proxy_cpus[0] if len(proxy_cpus) == 1 else None)
    folder = ctx.folder(NAME)
    manifests.write(folder / "manifests" / "plain.yaml", [manifests.api_endpoint("plain", "/plain", ctx.backend.url)])
    ctx.progress.update(f"{NAME}: nginx peak")
    try:
        peak = closed_loop_peak(ctx, ctx.nginx_url)
    except WrkError as exc:
        return result.fail(f"measuring nginx's peak: {exc}")
    rate = round(peak * LOAD_SHARE)
    ctx.progress.update(f"{NAME}: starting crdgate")
    try:
        gw = ctx.start_gateway(NAME, folder)
    except GatewayError as exc:
        return result.fail(str(exc))
    nginx_port = int(ctx.nginx_url.rsplit(":", 1)[1])
    lags: list[dict] = []
    busy: dict[str, list[float]] = {"crdgate": [], "nginx": []}
    control = None
    try:
        ctx.progress.update(f"{NAME}: starting the control (a second nginx)")
        try:
            control, control_port = start_nginx_proxy(ctx.workdir, ctx.tools.path("nginx"), ctx.backend.port,
                                                       ctx.pinning.prefix(GATEWAY), name="proxy-control")
        except (OSError, RuntimeError) as exc:
            return result.fail(f"starting the control nginx: {exc}")
        problem = preflight(gw, ["/plain"], {})
        if problem:
            return result.fail(problem)
        ctx.progress.update(f"{NAME}: crdgate peak")
        try:
            own_peak = closed_loop_peak(ctx, gw.url)
        except WrkError as exc:
            return result.fail(f"measuring crdgate's peak: {exc}")
        paths = gen.prepare(["/plain"])
        if s.warmup_s > 0:
            for port in (nginx_port, gw.port, control_port):
                gen.run(port, rate, s.warmup_s, paths)

        def play_round(n: int) -> dict:
            # Each proxy first in turn (nginx in round 1, crdgate in 2, the control in 3, ...);
            # the backend directly last.
            order = [("nginx", nginx_port, ctx.nginx_pid), ("crdgate", gw.port, gw.child.pid),
                     ("control", control_port, control.pid)]
            k = (n - 1) % len(order)
            order = order[k:] + order[:k]
            got: dict = {}
            for who, port, pid in order:
                ctx.progress.update(f"{NAME}: round {n}: {who} at {rate:,} req/s")
                got[who] = gen.run(port, rate, s.duration_s, paths, pid)
            ctx.progress.update(f"{NAME}: round {n}: backend directly at {rate:,} req/s (the floor)")
            got["direct"] = gen.run(ctx.backend.port, rate, s.duration_s, paths)
            gw.check_alive()
            return got

        needed = s.runs * ROUNDS_PER_RUN
        valid, invalid, played = play_rounds(play_round, needed)
        ctx.progress.update(f"{NAME}: nginx peak again")
        try:
            peak_after = closed_loop_peak(ctx, ctx.nginx_url)
        except WrkError as exc:
            return result.fail(f"measuring nginx's peak after the rounds: {exc}")
        for got in valid:
            result.runs.append(got["crdgate"][0])
            result.reference.append(got["nginx"][0])
            lags.extend(raw["send_lag_us"] for _, raw in got.values())
            for who in busy:
                if got[who][1].get("cpu_busy") is not None:
                    busy[who].append(got[who][1]["cpu_busy"])
        directs = [got["direct"][0] for got in valid]
        controls = [got["control"][0] for got in valid]
        pooled = {who: pooled_percentiles([got[who][1]["histogram"] for got in valid])
                  for who in ("crdgate", "nginx", "control", "direct")} if valid else None
        result.extra = verdict(result.runs, result.reference, rate, peak, lags, directs, own_peak, invalid, busy,
                               control=controls, pooled=pooled, peak_after=peak_after)
        everything = result.runs + result.reference + controls
        if any(r.errors_total for r in everything):
            result.fail(error_reason(everything))
        elif len(valid) < needed:
            result.fail(f"the load could not be held: {len(valid)} valid round(s) of {needed} in {played} "
                        f"(the host was too busy to measure sub-millisecond tails; see invalid_rounds)")
    except (FixedRateError, GatewayError) as exc:
        result.fail(str(exc))
    finally:
        gw.stop()
        if control is not None:
            control.stop()
    return result
