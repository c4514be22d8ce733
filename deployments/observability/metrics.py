"""The serving path's Ray metrics: one table of specs, created lazily per process.

Per-request numbers are recorded once, when a request ends (TTFT when its first piece
arrives is folded into that same call), never per token. Engine gauges are set by a
slow background loop from numbers vLLM already computes each step.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Literal

LATENCY_BUCKETS_S = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300]
TOKEN_GAP_BUCKETS_S = [0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28]
# The serving layer's own cost is in the sub-millisecond to tens of milliseconds range.
OVERHEAD_BUCKETS_S = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1]

Kind = Literal["counter", "gauge", "histogram"]
# `replica` is the engine replica that served the request ("" when none did).
REQUEST_TAGS = ("model", "replica")


@dataclass(frozen=True)
class MetricSpec:
    name: str
    kind: Kind
    description: str
    tag_keys: tuple[str, ...] = REQUEST_TAGS
    boundaries: tuple[float, ...] = ()

    def exported_names(self) -> set[str]:
        """The Prometheus series names Ray's exporter gives this metric."""
        base = f"ray_{self.name}"
        if self.kind == "counter":
            return {f"{base}_total"}
        if self.kind == "histogram":
            return {f"{base}_bucket", f"{base}_sum", f"{base}_count"}
        return {base}


REQUESTS = MetricSpec(
    "giantserve_requests", "counter", "Requests answered, by HTTP status",
    ("model", "replica", "status"),
)  # fmt: skip
TTFT = MetricSpec(
    "giantserve_time_to_first_token_seconds", "histogram",
    "Streamed requests: ingress arrival to the first piece from the engine",
    boundaries=tuple(LATENCY_BUCKETS_S),
)  # fmt: skip
INTER_TOKEN = MetricSpec(
    "giantserve_inter_token_latency_seconds", "histogram",
    "Mean gap between generated tokens of one request (vLLM's decode time / (tokens - 1))",
    boundaries=tuple(TOKEN_GAP_BUCKETS_S),
)  # fmt: skip
LATENCY = MetricSpec(
    "giantserve_request_latency_seconds", "histogram",
    "Ingress arrival to the last piece (end to end, as the ingress sees it)",
    boundaries=tuple(LATENCY_BUCKETS_S),
)  # fmt: skip
OVERHEAD = MetricSpec(
    "giantserve_serving_overhead_seconds", "histogram",
    "Per request: ingress end-to-end time minus the engine replica's own time "
    "(ingress, routing, Ray transport)",
    boundaries=tuple(OVERHEAD_BUCKETS_S),
)  # fmt: skip
PROMPT_TOKENS = MetricSpec("giantserve_prompt_tokens", "counter", "Prompt tokens of finished requests")
GENERATED_TOKENS = MetricSpec(
    "giantserve_generation_tokens", "counter", "Tokens generated for finished requests"
)
RUNNING = MetricSpec("giantserve_engine_running_requests", "gauge", "Requests being decoded")
WAITING = MetricSpec("giantserve_engine_waiting_requests", "gauge", "Requests queued in the engine")
KV_USAGE = MetricSpec("giantserve_engine_kv_cache_usage_ratio", "gauge", "KV-cache blocks in use, 0-1")
PREFIX_QUERIES = MetricSpec(
    "giantserve_engine_prefix_cache_queries", "counter", "Prompt tokens looked up in the prefix cache"
)
PREFIX_HITS = MetricSpec(
    "giantserve_engine_prefix_cache_hits", "counter", "Prompt tokens found in the prefix cache"
)
PREFIX_HIT_RATE = MetricSpec(
    "giantserve_engine_prefix_cache_hit_rate", "gauge",
    "Prefix-cache hits / queries over the last export interval that had queries",
)  # fmt: skip
REPLICAS = MetricSpec(
    "giantserve_engine_replicas", "gauge", "1 per live engine replica: sum by model = replicas"
)

SERVING_METRICS = (
    REQUESTS, TTFT, INTER_TOKEN, LATENCY, OVERHEAD, PROMPT_TOKENS, GENERATED_TOKENS,
    RUNNING, WAITING, KV_USAGE, PREFIX_QUERIES, PREFIX_HITS, PREFIX_HIT_RATE, REPLICAS,
)  # fmt: skip


@cache
def ray_metric(spec: MetricSpec):
    """The process's one Ray metric object for `spec` (Ray metrics are per process)."""
    from ray.util import metrics

    if spec.kind == "counter":
        return metrics.Counter(spec.name, spec.description, spec.tag_keys)
    if spec.kind == "gauge":
        return metrics.Gauge(spec.name, spec.description, spec.tag_keys)
    return metrics.Histogram(spec.name, spec.description, list(spec.boundaries), spec.tag_keys)


@dataclass(slots=True)
class RequestNumbers:
    """What the ingress knows about one request when it ends (None: not measured)."""

    model: str
    replica: str
    status: int
    latency_s: float
    ttft_s: float | None = None
    inter_token_s: float | None = None
    overhead_s: float | None = None
    prompt_tokens: int | None = None
    generated_tokens: int | None = None


def record_request(numbers: RequestNumbers) -> None:
    tags = {"model": numbers.model, "replica": numbers.replica}
    ray_metric(REQUESTS).inc(1, tags={**tags, "status": str(numbers.status)})
    ray_metric(LATENCY).observe(numbers.latency_s, tags=tags)
    if numbers.ttft_s is not None:
        ray_metric(TTFT).observe(numbers.ttft_s, tags=tags)
    if numbers.inter_token_s:
        ray_metric(INTER_TOKEN).observe(numbers.inter_token_s, tags=tags)
    if numbers.overhead_s is not None:
        ray_metric(OVERHEAD).observe(max(numbers.overhead_s, 0.0), tags=tags)
    if numbers.prompt_tokens:
        ray_metric(PROMPT_TOKENS).inc(numbers.prompt_tokens, tags=tags)
    if numbers.generated_tokens:
        ray_metric(GENERATED_TOKENS).inc(numbers.generated_tokens, tags=tags)


@dataclass(slots=True)
class EngineNumbers:
    """One engine replica's state at one export tick."""

    running: int
    waiting: int
    kv_cache_usage: float
    prefix_queries: int  # since the previous tick
    prefix_hits: int  # since the previous tick


def record_engine(model: str, replica: str, numbers: EngineNumbers) -> None:
    tags = {"model": model, "replica": replica}
    ray_metric(REPLICAS).set(1, tags=tags)
    ray_metric(RUNNING).set(numbers.running, tags=tags)
    ray_metric(WAITING).set(numbers.waiting, tags=tags)
    ray_metric(KV_USAGE).set(numbers.kv_cache_usage, tags=tags)
    if numbers.prefix_queries:
        ray_metric(PREFIX_QUERIES).inc(numbers.prefix_queries, tags=tags)
        ray_metric(PREFIX_HIT_RATE).set(numbers.prefix_hits / numbers.prefix_queries, tags=tags)
    if numbers.prefix_hits:
        ray_metric(PREFIX_HITS).inc(numbers.prefix_hits, tags=tags)
