"""The Grafana dashboard: current with its generator; every query names a metric that exists."""

from __future__ import annotations

import json
import re

from cluster.gpu_stats_actor import GPU_METRICS
from dashboards.build_grafana import OUTPUT, render
from deployments.observability.metrics import SERVING_METRICS

EXPORTED = set().union(*(spec.exported_names() for spec in (*SERVING_METRICS, *GPU_METRICS)))


def queries() -> list[str]:
    dashboard = json.loads(OUTPUT.read_text())
    found = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    found += [v["query"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
    return found


def test_dashboard_file_is_what_the_generator_builds():
    assert OUTPUT.read_text() == render(), "run: python -m dashboards.build_grafana"


def test_every_query_references_only_existing_metrics():
    for expr in queries():
        names = set(re.findall(r"\bray_[a-z0-9_]+", expr))
        assert names, expr
        assert names <= EXPORTED, (expr, names - EXPORTED)


def test_every_metric_has_a_panel():
    used = set().union(*(set(re.findall(r"\bray_[a-z0-9_]+", q)) for q in queries()))
    for spec in (*SERVING_METRICS, *GPU_METRICS):
        assert spec.exported_names() & used, spec.name
