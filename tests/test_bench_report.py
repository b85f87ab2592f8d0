"""The bench's table and chart, fed with a recorded result (no load is generated here)."""

from __future__ import annotations

import copy

from bench.report import SCHEMA, figure, plot, table


def summary(rps: float, p50: float, p99: float, cpu: float) -> dict:
    return {"rps_median": rps, "rps_min": rps * 0.95, "rps_max": rps * 1.05, "rps_spread_pct": 10.0,
            "p50_us": p50, "p90_us": p99 * 0.8, "p99_us": p99, "p99_9_us": p99 * 1.5,
            "cpu_us_per_request": cpu, "requests": int(rps * 15), "errors": 0}


def row(name: str, kind: str, state: str = "ok", sm: dict | None = None, vs: dict | None = None, extra=None) -> dict:
    return {"name": name, "kind": kind, "title": name, "target": "crdgate" if kind != "baseline" else name,
            "state": state, "reason": "" if state == "ok" else "wrk not installed", "summary": sm,
            "vs_nginx": vs, "vs_direct": None, "runs": [], "reference_runs": [], "extra": extra or {}}


# A recorded run: nginx's baseline made 20,000 req/s, but the nginx runs paired with
# "plain" made 18,000; the plain row's ratios are against those.
RECORDED = {
    "schema": SCHEMA,
    "started_at": "2026-12-03T12:00:00Z",
    "settings": {"threads": 1, "connections": 64, "runs": 5, "duration_s": 3.0, "warmup_s": 1.0},
    "host": {"cpus": 4, "cpu_model": "Test CPU", "platform": "Linux", "python": "3.11.7"},
    "pinning": {"note": "gateway on cpu 1"},
    "backend": "nginx static",
    "baselines": {
        "direct": row("direct", "baseline", sm=summary(40000, 800, 2000, 20)),
        "nginx": row("nginx", "baseline", sm=summary(20000, 1500, 4000, 40)),
    },
    "scenarios": [
        row("plain", "load", sm=summary(15300, 2000, 6000, 50),
            vs={"rps_ratio": 0.85, "p50_ratio": 1.3, "p99_ratio": 1.4, "cpu_ratio": 1.25, "paired_runs": 5,
                "nginx_rps_median": 18000}),
        row("auth", "load", state="skipped"),
        row("propagation", "propagation", state="skipped", extra={}),
        row("lookup", "lookup", extra={"sizes": [{"routes": 10, "ns_per_lookup": 900},
                                                 {"routes": 10000, "ns_per_lookup": 1000}],
                                       "flatness": 1.1, "flat": True, "flat_limit": 2.0}),
    ],
}


def line(text: str, name: str) -> list[str]:
    return next(ln for ln in text.splitlines() if ln.startswith(name + " ")).split()


def test_the_table_prints_the_paired_nginx_figure_its_ratios_use():
    text = table(RECORDED)
    header = next(ln for ln in text.splitlines() if ln.startswith("scenario"))
    assert "nginx req/s" in header
    plain = line(text, "plain")
    assert plain[1:3] == ["ok", "15,300"]
    assert "18,000" in plain and "0.85x" in plain  # 15,300 / 18,000: the paired figure, not the baseline's 20,000
    assert plain.index("18,000") < plain.index("0.85x")


def test_without_pairs_the_table_prints_the_nginx_baseline():
    doc = copy.deepcopy(RECORDED)
    doc["scenarios"][0]["vs_nginx"] = {"rps_ratio": 0.77, "p50_ratio": 1.3, "p99_ratio": 1.5, "cpu_ratio": 1.2}
    plain = line(table(doc), "plain")
    assert "20,000" in plain and "0.77x" in plain


def texts(ax) -> list[str]:
    return [t.get_text() for t in ax.texts if t.get_text()]


def test_the_chart_draws_only_what_was_measured_with_the_ratios_on_the_bars():
    fig = figure(RECORDED)
    titles = [ax.get_title() for ax in fig.axes]
    assert len(titles) == 3 and not any(t.startswith("propagation") for t in titles)  # skipped: no panel
    throughput = next(ax for ax in fig.axes if ax.get_title().startswith("throughput"))
    latency = next(ax for ax in fig.axes if ax.get_title().startswith("latency"))
    assert [t.get_text() for t in throughput.get_xticklabels()] == ["direct", "nginx", "plain"]  # auth was skipped
    assert texts(throughput) == ["0.85x nginx"]
    assert texts(latency) == ["1.40x nginx"]


def test_a_chart_of_nothing_is_not_written(tmp_path):
    doc = copy.deepcopy(RECORDED)
    doc["baselines"] = {k: row(k, "baseline", state="skipped") for k in ("direct", "nginx")}
    doc["scenarios"] = [row("plain", "load", state="skipped"), row("lookup", "lookup", state="skipped")]
    assert figure(doc) is None
    assert plot(doc, str(tmp_path / "x.png")) is False and not (tmp_path / "x.png").exists()
    assert plot(RECORDED, str(tmp_path / "y.png")) is True and (tmp_path / "y.png").stat().st_size > 0


def test_lookup_lines_show_the_cost_of_a_path_not_seen_before():
    doc = dict(RECORDED)
    doc["scenarios"] = [row("lookup", "lookup", extra={
        "sizes": [{"routes": 10, "ns_per_lookup": 150, "ns_per_walk": 2400},
                  {"routes": 10000, "ns_per_lookup": 160}],  # a run from before ns_per_walk
        "flatness": 1.07, "flat": True, "flat_limit": 2.0})]
    text = table(doc)
    assert "10 routes:      150 ns/lookup, 2,400 ns for a path not seen before (memo miss)" in text
    assert "10,000 routes:      160 ns/lookup\n" in text


def test_fixed_rate_summary_is_printed():
    from bench.equalload import verdict
    from bench.wrk import WrkResult

    def w(p99):
        lat = {"p50": 100.0, "p90": 200.0, "p99": p99, "p99.9": p99, "mean": 1.0, "stdev": 1.0, "max": p99}
        return WrkResult(requests=10, duration_s=1.0, rps=10.0, latency_us=lat, errors={})

    doc = dict(RECORDED)
    doc["scenarios"] = [row("p99-fixed", "fixed-rate", extra=verdict([w(3000.0)], [w(1000.0)], 9000, 18000.0, []))]
    text = table(doc)
    assert "p99 at equal offered load (9,000 req/s = 50% of nginx's peak 18,000)" in text
    assert "p99 ratio 3.00x" in text and "NOT met" in text
