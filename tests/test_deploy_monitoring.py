"""The Grafana dashboard and the Prometheus alerts query metrics that gateway/metrics.py exposes.

Metric declarations are read from the source (ast), expressions are parsed as PromQL
(promql-parser), and every selector, label matcher and grouping label is checked against them.
"""

from __future__ import annotations

import ast
import json
import re

import promql_parser
import pytest

from crd_support import ROOT, find, kustomize

MONITORING = ROOT / "deploy" / "monitoring"
# Labels that Prometheus' scrape adds to every series (not declared in metrics.py).
TARGET_LABELS = {"instance", "job", "pod", "namespace", "service", "container", "endpoint"}
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h"}


METRIC_CLASSES = {
    "Counter": "Counter", "Gauge": "Gauge", "Histogram": "Histogram", "Summary": "Summary",
    # Families yielded by custom collectors (scrape-time export of plain counters).
    "CounterMetricFamily": "Counter", "GaugeMetricFamily": "Gauge",
    "HistogramMetricFamily": "Histogram", "SummaryMetricFamily": "Summary",
    # Request-path counters kept as plain dicts (gateway/metrics.py), exported the same way.
    "DecisionCounter": "Counter", "PlainHistogram": "Histogram",
}


def _declared_metrics() -> dict[str, tuple[str, tuple[str, ...]]]:
    """name -> (Counter | Gauge | Histogram | Summary, label names), from gateway/metrics.py."""
    tree = ast.parse((ROOT / "gateway" / "metrics.py").read_text())
    found = {}
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", None)
        if func not in METRIC_CLASSES or not node.args:
            continue
        if not (isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            continue  # a collector's generic code (``CounterMetricFamily(self.name, ...)``)
        name = ast.literal_eval(node.args[0])
        labels: tuple[str, ...] = ()
        if func in ("Counter", "Gauge", "Histogram", "Summary", "DecisionCounter") and len(node.args) > 2:
            labels = tuple(ast.literal_eval(node.args[2]))
        for kw in node.keywords:
            if kw.arg in ("labelnames", "labels"):
                labels = tuple(ast.literal_eval(kw.value))
        found[name] = (METRIC_CLASSES[func], labels)
    return found


def exposed_series() -> dict[str, set[str]]:
    """Series names as scraped (Counter _total, Histogram _bucket/_sum/_count) -> label names."""
    series: dict[str, set[str]] = {}
    for name, (kind, labels) in _declared_metrics().items():
        labels_set = set(labels)
        if kind == "Counter":
            series[name if name.endswith("_total") else name + "_total"] = labels_set
        elif kind == "Gauge":
            series[name] = labels_set
        else:
            series[name + "_sum"] = labels_set
            series[name + "_count"] = labels_set
            if kind == "Histogram":
                series[name + "_bucket"] = labels_set | {"le"}
            else:
                series[name] = labels_set | {"quantile"}
    return series


def test_metrics_catalogue_is_read():
    series = exposed_series()
    assert series["crdgate_requests_total"] == {"route", "method", "code"}
    assert series["crdgate_request_duration_seconds_bucket"] == {"route", "le"}
    assert "crdgate_leader" in series and "crdgate_compile_duration_seconds_count" in series


def check_expr(expr: str) -> set[str]:
    """Parse expr and check it against the catalogue; returns the series it reads."""
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    tree = promql_parser.parse(expr)
    series = exposed_series()
    used: set[str] = set()
    grouping: set[str] = set()

    def visit(node):
        if isinstance(node, promql_parser.VectorSelector):
            assert node.name, f"selector without a metric name in {expr!r}"
            assert node.name in series, f"{node.name} is not exposed by gateway/metrics.py"
            used.add(node.name)
            for matcher in node.matchers.matchers:
                assert matcher.name in series[node.name] | TARGET_LABELS, (
                    f"{node.name} has no label {matcher.name!r} ({expr!r})")
        elif isinstance(node, promql_parser.AggregateExpr) and node.modifier is not None:
            grouping.update(node.modifier.labels)
        return True

    promql_parser.walk(tree, visit)
    known = set().union(*(series[s] for s in used)) | TARGET_LABELS if used else TARGET_LABELS
    assert grouping <= known, f"grouping by unknown labels {grouping - known} in {expr!r}"
    return used


def test_the_checker_refuses_unknown_names_and_labels():
    check_expr('sum by (route) (rate(crdgate_requests_total{code=~"5.."}[5m]))')
    with pytest.raises(AssertionError):
        check_expr("rate(crdgate_requests[5m])")  # the Counter is exposed with _total
    with pytest.raises(AssertionError):
        check_expr("crdgate_request_duration_seconds")  # a Histogram has no bare series
    with pytest.raises(AssertionError):
        check_expr('crdgate_requests_total{status="500"}')
    with pytest.raises(AssertionError):
        check_expr("sum by (path) (crdgate_requests_total)")


# -- dashboard ---------------------------------------------------------------------------------


def _dashboard() -> dict:
    return json.loads((MONITORING / "grafana-dashboard.json").read_text())


def _panels(dashboard: dict) -> list[dict]:
    out = []
    for panel in dashboard["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", ()))
    return out


def _dashboard_exprs() -> list[str]:
    return [t["expr"] for p in _panels(_dashboard()) for t in p.get("targets", ())]


@pytest.mark.parametrize("expr", _dashboard_exprs())
def test_dashboard_queries_use_exposed_metrics(expr):
    check_expr(expr)


def test_dashboard_shows_what_operators_need():
    exprs = _dashboard_exprs()

    def has(pattern: str) -> bool:
        return any(re.search(pattern, e) for e in exprs)

    assert has(r"sum by \(route\) \(rate\(crdgate_requests_total"), "requests/s by route"
    assert has(r"histogram_quantile\(0\.99, sum by \(route, le\) \(rate\(crdgate_request_duration_seconds_bucket"), "p99 by route"
    assert has(r'crdgate_requests_total\{[^}]*code=~"5\.\."'), "5xx ratio"
    for metric in ("crdgate_upstream_errors_total", "crdgate_table_generation",
                   "crdgate_compile_duration_seconds_bucket", "crdgate_leader"):
        assert has(re.escape(metric)), metric


def test_dashboard_structure():
    dashboard = _dashboard()
    assert dashboard["uid"] and dashboard["title"]
    panels = _panels(dashboard)
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    for p in panels:
        pos = p["gridPos"]
        assert pos["x"] + pos["w"] <= 24
        if p["type"] != "row":
            assert p["datasource"]["uid"] == "${datasource}"
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["query"] == "prometheus"
    route = variables["route"]["definition"]
    assert route == "label_values(crdgate_requests_total, route)"
    assert "route" in exposed_series()["crdgate_requests_total"]


# -- alerts ------------------------------------------------------------------------------------


def _alerts() -> list[dict]:
    rule = find(kustomize("deploy/monitoring"), "PrometheusRule", "crdgate")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    return [r for group in rule["spec"]["groups"] for r in group["rules"]]


def test_monitoring_kustomization_renders_rule_and_dashboard():
    objects = kustomize("deploy/monitoring")
    assert sorted(o["kind"] for o in objects) == ["ConfigMap", "PrometheusRule"]
    config_map = find(objects, "ConfigMap", "crdgate-grafana-dashboard")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(config_map["data"]["grafana-dashboard.json"]) == _dashboard()


@pytest.mark.parametrize("alert", _alerts(), ids=lambda a: a["alert"])
def test_alert_is_well_formed(alert):
    used = check_expr(alert["expr"])
    assert used or "absent(" in alert["expr"]
    promql_parser.parse_duration(alert["for"])
    assert alert["labels"]["severity"] in {"critical", "warning", "info"}
    assert alert["annotations"]["summary"] and alert["annotations"]["description"]
    series = exposed_series()
    known = set().union(*(series[s] for s in used)) | TARGET_LABELS
    for text in alert["annotations"].values():
        for label in re.findall(r"\$labels\.(\w+)", text):
            assert label in known, f"{alert['alert']} annotation names unknown label {label}"


def test_alerts_cover_errors_readiness_staleness_and_compile_time():
    alerts = {a["alert"]: a["expr"] for a in _alerts()}
    assert len(alerts) == len(_alerts()), "duplicate alert names"
    assert 'code=~"5.."' in alerts["CrdgateHigh5xxRatio"]
    assert "crdgate_table_generation" in alerts["CrdgateNoRoutingTable"]
    assert "crdgate_last_sync_timestamp_seconds" in alerts["CrdgateWatchStale"]
    assert "crdgate_compile_duration_seconds_bucket" in alerts["CrdgateCompileSlow"]
    assert "crdgate_leader" in alerts["CrdgateNoLeader"]
