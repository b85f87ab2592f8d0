"""What a run hands back: the JSON document (for CI trend tracking), the text table, the PNG chart.

``document`` is the single source: the table and the chart are drawn from the
JSON shape, so what a human reads and what CI stores never disagree. Schema
``crdgate-bench/1``: top-level ``settings``, ``pinning``, ``tools``,
``baselines`` (``direct``, ``nginx``), ``scenarios`` (a list; each with
``name``, ``kind``, ``state``, ``reason``, ``summary``, ``vs_nginx``, ``runs``,
``reference_runs`` (the nginx runs paired with ``runs``), ``extra``) and
``notes``. A load scenario's ``vs_nginx`` holds medians of per-pair ratios and
``paired_runs``; without pairs it falls back to the nginx baseline. Latencies are microseconds in JSON, ms in the table.
Each run carries ``cpu_us_per_request``: the CPU time (user + system) of the
measured proxy's process tree per request; ``cpu_ratio`` is ours over nginx's
(lower is better).
"""

from __future__ import annotations

import platform
from typing import Iterable

from .equalload import summary_line as fixed_rate_summary
from .kubescale import describe as scale_summary
from .scenarios import FAILED, SKIPPED, Result
from .stats import median, ratio
from .tracing import summary_line as tracing_summary
from .accesslog import summary_line as access_log_summary

SCHEMA = "crdgate-bench/1"


def _vs(summary: dict | None, base: dict | None) -> dict | None:
    if not summary or not base:
        return None
    return {
        "rps_ratio": ratio(summary["rps_median"], base["rps_median"]),
        "p50_ratio": ratio(summary["p50_us"], base["p50_us"]),
        "p99_ratio": ratio(summary["p99_us"], base["p99_us"]),
        "cpu_ratio": ratio(summary.get("cpu_us_per_request"), base.get("cpu_us_per_request")),
    }


def _vs_paired(r: Result) -> dict | None:
    """Medians of the per-pair ratios of ``r.runs`` to the nginx runs taken just before each."""
    pairs = list(zip(r.runs, r.reference))
    if not pairs:
        return None
    return {
        "rps_ratio": median([ratio(c.rps, n.rps) for c, n in pairs if n.rps]),
        "p50_ratio": median([ratio(c.latency_us["p50"], n.latency_us["p50"]) for c, n in pairs if n.latency_us["p50"]]),
        "p99_ratio": median([ratio(c.latency_us["p99"], n.latency_us["p99"]) for c, n in pairs if n.latency_us["p99"]]),
        # CPU time per request, ours over nginx's: steadier than req/s on a busy host.
        "cpu_ratio": median([ratio(c.cpu_us_per_request, n.cpu_us_per_request) for c, n in pairs
                             if c.cpu_us_per_request is not None and n.cpu_us_per_request]),
        "paired_runs": len(pairs),
        "nginx_rps_median": median([n.rps for _, n in pairs]),
    }


def result_json(r: Result, nginx: dict | None, direct: dict | None) -> dict:
    summary = r.summary()
    vs_nginx = None
    if r.target == "crdgate":
        vs_nginx = _vs_paired(r) or _vs(summary, nginx)
    if vs_nginx is not None and (r.extra or {}).get("pooled_p99_ratio") is not None:
        # The fixed-rate scenario's p99 is over every request of its rounds (bench/equalload.py).
        vs_nginx["p99_ratio"] = r.extra["pooled_p99_ratio"]
    return {
        "name": r.name,
        "kind": r.kind,
        "title": r.title,
        "target": r.target,
        "state": r.state,
        "reason": r.reason,
        "summary": summary,
        "vs_nginx": vs_nginx,
        "vs_direct": _vs(summary, direct),
        "runs": [w.to_json() for w in r.runs],
        "reference_runs": [w.to_json() for w in r.reference],
        "extra": r.extra,
    }


def cpu_model() -> str | None:
    """The processor's name: ratios against nginx move with it (Python's share of the work
    and the kernel's differ between processors), so a figure is quoted with it."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def document(meta: dict, baselines: dict[str, Result], scenarios: Iterable[Result]) -> dict:
    nginx = baselines["nginx"].summary() if "nginx" in baselines else None
    direct = baselines["direct"].summary() if "direct" in baselines else None
    doc = {"schema": SCHEMA, **meta}
    doc["host"] = {"cpus": meta.get("cpus"), "cpu_model": cpu_model(), "platform": platform.platform(),
                   "python": platform.python_version(), "damon": meta.get("damon") or []}
    doc.pop("cpus", None)
    doc.pop("damon", None)
    doc["baselines"] = {name: result_json(r, nginx, direct) for name, r in baselines.items()}
    doc["scenarios"] = [result_json(r, nginx, direct) for r in scenarios]
    return doc


# -- text --------------------------------------------------------------------------


def _ms(us: float | None) -> str:
    return "-" if us is None else f"{us / 1000:.2f}"


def _us(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def _x(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}x"


def _model(host: dict) -> str:
    return f" ({host['cpu_model']})" if host.get("cpu_model") else ""


def _paired_nginx_rps(doc: dict, vs: dict) -> float | None:
    """The nginx req/s a row's ratios were taken against: the median of its paired nginx
    runs, or the nginx baseline when it had none (see ``_vs_paired``)."""
    if not vs:
        return None
    if "nginx_rps_median" in vs:
        return vs["nginx_rps_median"]
    return ((doc["baselines"].get("nginx") or {}).get("summary") or {}).get("rps_median")


def table(doc: dict) -> str:
    s = doc["settings"]
    lines = [
        f"crdgate bench: {doc['host']['cpus']} CPUs{_model(doc['host'])}, wrk {s['threads']} thread(s) x {s['connections']} connections, "
        f"{s['runs']} x {s['duration_s']:g}s runs after {s['warmup_s']:g}s warm-up; median of runs",
        f"pinning: {doc['pinning']['note']}; backend: {doc['backend'] or 'not started'}",
    ]
    if doc.get("missing"):
        lines.append(f"missing: {', '.join(doc['missing'])} -> {doc['install_hint']} (what needs them is skipped)")
    rows = list(doc["baselines"].values()) + [r for r in doc["scenarios"] if r["kind"] in ("load", "tracing", "access-log", "churn")]
    if rows:
        lines += [
            "",
            f"{'scenario':<18} {'state':<7} {'req/s':>10} {'spread':>7} {'p50 ms':>7} {'p99 ms':>8} {'errors':>7}"
            f" {'nginx req/s':>11} {'vs nginx req/s':>14} {'vs nginx p99':>12} {'CPU us/req':>10} {'vs nginx CPU':>12}",
        ]
    for r in rows:
        sm = r["summary"] or {}
        vs = r["vs_nginx"] or {}
        state = r["state"].upper() if r["state"] != "ok" else "ok"
        rps = f"{sm['rps_median']:,.0f}" if sm else "-"
        spread = f"{sm['rps_spread_pct']:.0f}%" if sm and sm.get("rps_spread_pct") is not None else "-"
        errors = str(sm["errors"]) if sm else "-"
        nginx = _paired_nginx_rps(doc, vs)
        lines.append(
            f"{r['name']:<18} {state:<7} {rps:>10} {spread:>7} {_ms(sm.get('p50_us')):>7} {_ms(sm.get('p99_us')):>8}"
            f" {errors:>7} {'-' if nginx is None else f'{nginx:,.0f}':>11}"
            f" {_x(vs.get('rps_ratio')):>14} {_x(vs.get('p99_ratio')):>12}"
            f" {_us(sm.get('cpu_us_per_request')):>10} {_x(vs.get('cpu_ratio')):>12}"
        )
    for r in doc["scenarios"]:
        if r["kind"] == "churn" and r["extra"]:
            e = r["extra"]
            settled = "-" if e.get("settled_after_s") is None else f"{e['settled_after_s']:.2f}s"
            lines += ["", f"churn: {e['changes']} changes ({e['changes_per_s']}/s), misroutes {e['misroutes']} of "
                          f"{e['checked']} checked, non-2xx {e['non2xx']}, settled on the last state after {settled}"]
    for r in doc["scenarios"]:
        if r["kind"] == "tracing" and r["extra"]:
            lines += ["", tracing_summary(r["extra"])]
    for r in doc["scenarios"]:
        if r["kind"] == "access-log" and r["extra"]:
            lines += ["", access_log_summary(r["extra"])]
        if r["kind"] == "fixed-rate" and r["extra"]:
            lines += ["", fixed_rate_summary(r["extra"])]
    for r in doc["scenarios"]:
        if r["kind"] == "propagation" and r["extra"].get("sizes"):
            lines += ["", f"{r['name']} (manifest write -> first routed request):",
                      f"  {'routes':>8} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'timeouts':>9} {'startup s':>10}"]
            for e in r["extra"]["sizes"]:
                f = lambda k: "-" if e.get(k) is None else f"{e[k]:.1f}"  # noqa: E731
                lines.append(f"  {e['routes']:>8,} {f('p50_ms'):>8} {f('p99_ms'):>8} {f('max_ms'):>8}"
                             f" {e.get('timeouts', '-')!s:>9} {e.get('ready_after_s', '-')!s:>10}")
    for r in doc["scenarios"]:
        if r["kind"] == "scale" and r["extra"].get("ready_s") is not None:
            lines += ["", f"scale (control plane, fake API server): {scale_summary(r['extra'])}"]
    for r in doc["scenarios"]:
        if r["kind"] == "lookup" and r["extra"].get("sizes"):
            e = r["extra"]
            lines += ["", "route lookup (RouteTable.match, in-process):"]
            lines += [f"  {x['routes']:>8,} routes: {x['ns_per_lookup']:>8,.0f} ns/lookup"
                      + (f", {x['ns_per_walk']:,.0f} ns for a path not seen before (memo miss)"
                         if x.get("ns_per_walk") is not None else "") for x in e["sizes"]]
            if e.get("flatness") is not None:
                lines.append(f"  flatness (slowest/fastest): {e['flatness']:.2f}x -> "
                             f"{'flat' if e['flat'] else 'NOT flat'} (limit {e['flat_limit']:g}x)")
    problems = [r for r in list(doc["baselines"].values()) + doc["scenarios"] if r["state"] in (FAILED, SKIPPED)]
    if problems:
        lines += [""]
        for r in problems:
            reason = r["reason"].strip().replace("\n", "\n      ")
            lines.append(f"{r['state'].upper()} {r['name']}: {reason}")
    if doc.get("notes"):
        lines += [""] + [f"note: {n}" for n in doc["notes"]]
    return "\n".join(lines)


# -- chart -------------------------------------------------------------------------


def _ratio_label(vs: dict | None, key: str) -> str:
    value = (vs or {}).get(key)
    return "" if value is None else f"{value:.2f}x nginx"


def plot(doc: dict, path: str) -> bool:
    """Write the chart as a PNG; False (and no file) when nothing was measured."""
    import matplotlib.pyplot as plt

    fig = figure(doc)
    if fig is None:
        return False
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def figure(doc: dict):
    """The chart of what was measured: throughput and latency (with the ratios to nginx on
    crdgate's bars), propagation, lookup; a panel without data is left out. None when
    nothing was measured (matplotlib, no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in list(doc["baselines"].values()) + [r for r in doc["scenarios"] if r["kind"] in ("load", "churn")]
            if r["state"] != SKIPPED]
    prop = next((r for r in doc["scenarios"] if r["kind"] == "propagation"), None)
    sizes = [e for e in (prop["extra"].get("sizes", []) if prop else []) if e.get("p50_ms") is not None]
    look = next((r for r in doc["scenarios"] if r["kind"] == "lookup"), None)
    entries = look["extra"].get("sizes", []) if look else []
    panels = []
    if any(r["summary"] for r in rows):
        panels += [("throughput", rows), ("latency", rows)]
    if sizes:
        panels.append(("propagation", sizes))
    if entries:
        panels.append(("lookup", entries))
    if not panels:
        return None

    columns = 2 if len(panels) > 1 else 1
    fig, axes = plt.subplots((len(panels) + 1) // 2, columns, figsize=(6.5 * columns, 4.5 * ((len(panels) + 1) // 2)),
                             squeeze=False)
    flat = list(axes.flat)
    for ax in flat[len(panels):]:
        fig.delaxes(ax)  # an odd number of panels: no empty frame
    for ax, (panel, data) in zip(flat, panels):
        {"throughput": _throughput, "latency": _latency, "propagation": _propagation, "lookup": _lookup}[panel](
            ax, data, doc)

    fig.suptitle(f"crdgate bench ({doc['started_at']})")
    fig.tight_layout()
    return fig


def _val(r: dict, key: str) -> float:
    return (r["summary"] or {}).get(key) or 0


def _throughput(ax, rows: list[dict], doc: dict) -> None:
    names = [r["name"] for r in rows]
    colors = ["#888888" if r["kind"] == "baseline" else ("#2b7bba" if r["state"] == "ok" else "#d62728") for r in rows]
    rps = [_val(r, "rps_median") for r in rows]
    lo = [max(0.0, v - ((r["summary"] or {}).get("rps_min") or v)) for r, v in zip(rows, rps)]
    hi = [max(0.0, ((r["summary"] or {}).get("rps_max") or v) - v) for r, v in zip(rows, rps)]
    bars = ax.bar(names, rps, color=colors, yerr=[lo, hi], capsize=3)
    # The headline: each crdgate bar says how it compares with nginx (req/s ratio).
    ax.bar_label(bars, [_ratio_label(r["vs_nginx"], "rps_ratio") for r in rows], label_type="center",
                 rotation=90, fontsize=8, color="white")
    ax.set_title("throughput (median, bars = min..max of runs)")
    ax.set_ylabel("requests/s")
    for i, r in enumerate(rows):
        if r["state"] != "ok":
            ax.text(i, 0, r["state"].upper(), rotation=90, ha="center", va="bottom", fontsize=8)
    ax.tick_params(axis="x", labelrotation=30)


def _latency(ax, rows: list[dict], doc: dict) -> None:
    x = range(len(rows))
    ax.bar([i - 0.2 for i in x], [_val(r, "p50_us") / 1000 for r in rows], width=0.4, label="p50")
    p99 = ax.bar([i + 0.2 for i in x], [_val(r, "p99_us") / 1000 for r in rows], width=0.4, label="p99")
    ax.bar_label(p99, [_ratio_label(r["vs_nginx"], "p99_ratio") for r in rows], rotation=90, fontsize=8,
                 padding=2)
    ax.set_xticks(list(x), [r["name"] for r in rows])
    ax.set_title(f"latency at {doc['settings']['connections']} connections (not equal offered load)")
    ax.set_ylabel("ms")
    ax.margins(y=0.35)  # room for the ratio labels above the bars
    ax.legend()
    ax.tick_params(axis="x", labelrotation=30)


def _propagation(ax, sizes: list[dict], doc: dict) -> None:
    px = range(len(sizes))
    ax.bar([i - 0.2 for i in px], [e["p50_ms"] for e in sizes], width=0.4, label="p50")
    ax.bar([i + 0.2 for i in px], [e["p99_ms"] for e in sizes], width=0.4, label="p99")
    ax.set_xticks(list(px), [f"{e['routes']:,}" for e in sizes])
    ax.legend()
    ax.set_title("propagation: manifest write -> first routed request")
    ax.set_xlabel("routes in the table")
    ax.set_ylabel("ms")


def _lookup(ax, entries: list[dict], doc: dict) -> None:
    ax.plot([e["routes"] for e in entries], [e["ns_per_lookup"] for e in entries], marker="o")
    ax.set_xscale("log")
    ax.set_ylim(bottom=0)
    ax.set_title("RouteTable.match (in-process)")
    ax.set_xlabel("routes in the table")
    ax.set_ylabel("ns per lookup")
