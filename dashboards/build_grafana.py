"""Builds dashboards/grafana.json (run: python -m dashboards.build_grafana).

One dashboard for the Grafana that Ray's dashboard embeds (Prometheus datasource
`${datasource}`): requests, latencies, overhead, tokens, engine state per model and
replica, and the GPUs. Queries name only metrics from the spec tables in
deployments.observability.metrics and cluster.gpu_stats_actor (a test checks).
"""

from __future__ import annotations

import json
from pathlib import Path

OUTPUT = Path(__file__).with_name("grafana.json")
M = '{model=~"$model"}'


def _quantiles(metric: str, by: str = "model") -> list[str]:
    return [
        f"histogram_quantile({q}, sum by ({by}, le) (rate(ray_{metric}_bucket{M}[$__rate_interval])))"
        for q in (0.5, 0.99)
    ]


# (title, unit, [PromQL, ...]); legends come from the `by` labels.
PANELS: list[tuple[str, str, list[str]]] = [
    ("Requests per second by status", "reqps",
     [f"sum by (model, status) (rate(ray_giantserve_requests_total{M}[$__rate_interval]))"]),
    ("Time to first token (p50, p99)", "s", _quantiles("giantserve_time_to_first_token_seconds")),
    ("Inter-token latency (p50, p99)", "s", _quantiles("giantserve_inter_token_latency_seconds")),
    ("End-to-end latency (p50, p99)", "s", _quantiles("giantserve_request_latency_seconds")),
    ("Serving-layer overhead per request (p50, p99)", "s",
     _quantiles("giantserve_serving_overhead_seconds")),
    ("Serving-layer overhead, mean by engine replica", "s",
     [f"sum by (model, replica) (rate(ray_giantserve_serving_overhead_seconds_sum{M}[$__rate_interval]))"
      f" / sum by (model, replica) (rate(ray_giantserve_serving_overhead_seconds_count{M}[$__rate_interval]))"]),
    ("Tokens per second (prompt, generated)", "short",
     [f"sum by (model) (rate(ray_giantserve_prompt_tokens_total{M}[$__rate_interval]))",
      f"sum by (model) (rate(ray_giantserve_generation_tokens_total{M}[$__rate_interval]))"]),
    ("Queue depth by replica", "short", [f"sum by (model, replica) (ray_giantserve_engine_waiting_requests{M})"]),
    ("Running requests by replica", "short",
     [f"sum by (model, replica) (ray_giantserve_engine_running_requests{M})"]),
    ("KV-cache usage by replica", "percentunit",
     [f"max by (model, replica) (ray_giantserve_engine_kv_cache_usage_ratio{M})"]),
    ("Prefix-cache hit rate", "percentunit",
     [f"sum by (model) (rate(ray_giantserve_engine_prefix_cache_hits_total{M}[$__rate_interval]))"
      f" / sum by (model) (rate(ray_giantserve_engine_prefix_cache_queries_total{M}[$__rate_interval]))",
      f"max by (model, replica) (ray_giantserve_engine_prefix_cache_hit_rate{M})"]),
    ("Replicas per model", "short", [f"sum by (model) (ray_giantserve_engine_replicas{M})"]),
    ("GPU utilization", "percent", ["max by (node, gpu) (ray_giantserve_gpu_utilization_percent)"]),
    ("GPU memory used / total", "bytes",
     ["max by (node, gpu) (ray_giantserve_gpu_memory_used_bytes)",
      "max by (node, gpu) (ray_giantserve_gpu_memory_total_bytes)"]),
    ("GPU temperature", "celsius", ["max by (node, gpu) (ray_giantserve_gpu_temperature_celsius)"]),
    ("GPU power", "watt", ["max by (node, gpu) (ray_giantserve_gpu_power_watts)"]),
    ("GPU errors (uncorrected ECC, XID events)", "short",
     ["max by (node, gpu) (ray_giantserve_gpu_ecc_uncorrected_errors)",
      "sum by (node, gpu_uuid, xid) (increase(ray_giantserve_gpu_xid_errors_total[$__rate_interval]))"]),
]  # fmt: skip


def _panel(index: int, title: str, unit: str, queries: list[str]) -> dict:
    return {
        "id": index + 1,
        "type": "timeseries",
        "title": title,
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "gridPos": {"h": 8, "w": 12, "x": 12 * (index % 2), "y": 8 * (index // 2)},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "targets": [
            {"refId": chr(ord("A") + n), "expr": expr, "legendFormat": "__auto"}
            for n, expr in enumerate(queries)
        ],
    }


def dashboard() -> dict:
    return {
        "title": "giantserve",
        "uid": "giantserve",
        "schemaVersion": 39,
        "time": {"from": "now-1h", "to": "now"},
        "refresh": "10s",
        "templating": {
            "list": [
                {"name": "datasource", "type": "datasource", "query": "prometheus"},
                {
                    "name": "model",
                    "type": "query",
                    "datasource": {"type": "prometheus", "uid": "${datasource}"},
                    "query": "label_values(ray_giantserve_requests_total, model)",
                    "includeAll": True,
                    "multi": True,
                    "current": {"text": "All", "value": "$__all"},
                },
            ]
        },
        "panels": [_panel(i, *panel) for i, panel in enumerate(PANELS)],
    }


def render() -> str:
    return json.dumps(dashboard(), indent=2) + "\n"


if __name__ == "__main__":
    OUTPUT.write_text(render())
    print(f"wrote {OUTPUT}")
