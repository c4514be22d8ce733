"""What an engine replica reports to the autoscaler, and the fleet-wide view built from it.

An engine deployment returns `autoscaling_stats(...)` from its `record_autoscaling_stats()`
method. Serve 2.60 calls that method on every replica (every look_back_period_s x 0.2 s),
keeps the values as time series, averages each over `look_back_period_s` with the
deployment's aggregation function, and hands the policy `ctx.aggregated_metrics`:
`{metric name: {replica id: averaged value}}` for the running replicas.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Hashable, Iterable, Mapping

from pydantic import BaseModel, ConfigDict, Field

# Prefixed so they never collide with Serve's own keys in the same metrics dict
# ("running_requests", "ongoing_requests", "queued_requests").
METRIC_NUM_WAITING = "llm_num_waiting"
METRIC_NUM_RUNNING = "llm_num_running"
METRIC_KV_CACHE_USAGE = "llm_kv_cache_usage"
METRIC_TTFT_P90_S = "llm_ttft_p90_s"
METRIC_ARRIVALS_PER_S = "llm_arrivals_per_s"


class ReplicaStats(BaseModel):
    """One engine replica's load; floats because Serve hands back window averages."""

    model_config = ConfigDict(frozen=True)

    num_waiting: float = Field(ge=0, description="requests queued in the engine, not yet scheduled")
    num_running: float = Field(ge=0, description="requests in the engine's running batch")
    kv_cache_usage: float = Field(ge=0, le=1, description="fraction of KV-cache blocks in use")
    ttft_p90_s: float | None = Field(
        None, ge=0, description="p90 time to first token of recent requests; None: none recently"
    )
    arrivals_per_s: float = Field(
        ge=0,
        description="requests the replica accepted per second, recently: unlike the counts "
        "above it does not depend on how many replicas share the load",
    )


def autoscaling_stats(
    *,
    num_waiting: int,
    num_running: int,
    kv_cache_usage: float,
    ttft_p90_s: float | None,
    arrivals_per_s: float,
) -> dict[str, float]:
    """The dict the engine's `record_autoscaling_stats()` returns.

    The first three are vLLM's scheduler numbers; `RecentRequests` gives the other two.
    Serve disables a replica's custom metrics for good if the first dict holds a non-number,
    so the values are validated here and an unknown TTFT is left out rather than sent as None.
    """
    stats = ReplicaStats(
        num_waiting=num_waiting,
        num_running=num_running,
        kv_cache_usage=min(kv_cache_usage, 1.0),
        ttft_p90_s=ttft_p90_s,
        arrivals_per_s=arrivals_per_s,
    )
    metrics = {
        METRIC_NUM_WAITING: float(stats.num_waiting),
        METRIC_NUM_RUNNING: float(stats.num_running),
        METRIC_KV_CACHE_USAGE: float(stats.kv_cache_usage),
        METRIC_ARRIVALS_PER_S: float(stats.arrivals_per_s),
    }
    if stats.ttft_p90_s is not None:
        metrics[METRIC_TTFT_P90_S] = float(stats.ttft_p90_s)
    return metrics


class RecentRequests:
    """An engine replica's recent requests: arrival rate and TTFT p90 over `window_s`.

    The engine calls `arrived()` when a request comes in and `first_token()` when its first
    token is out; both are O(1). The reads prune what left the window.
    """

    def __init__(self, window_s: float = 60.0, max_samples: int = 4096) -> None:
        self._window_s = window_s
        self._arrivals: deque[float] = deque()
        # Bounded: under heavy load the newest TTFTs are the ones that matter.
        self._ttfts: deque[tuple[float, float]] = deque(maxlen=max_samples)
        self._started_at: float | None = None

    def arrived(self, now: float) -> None:
        if self._started_at is None:
            self._started_at = now
        self._arrivals.append(now)

    def first_token(self, ttft_s: float, now: float) -> None:
        self._ttfts.append((now, ttft_s))

    def arrivals_per_s(self, now: float) -> float:
        while self._arrivals and self._arrivals[0] < now - self._window_s:
            self._arrivals.popleft()
        if self._started_at is None:
            return 0.0
        # A replica younger than the window has seen traffic for less than the window.
        return len(self._arrivals) / max(1.0, min(self._window_s, now - self._started_at))

    def ttft_p90_s(self, now: float) -> float | None:
        while self._ttfts and self._ttfts[0][0] < now - self._window_s:
            self._ttfts.popleft()
        if not self._ttfts:
            return None
        values = sorted(ttft for _, ttft in self._ttfts)
        return values[min(len(values) - 1, math.ceil(0.9 * len(values)) - 1)]


class FleetSignals(BaseModel):
    """The whole deployment's load, as the policy sees it."""

    model_config = ConfigDict(frozen=True)

    reporting_replicas: int = Field(ge=0, description="running replicas that reported stats")
    running: float = Field(ge=0)
    waiting: float = Field(ge=0, description="waiting in engines plus queued at Serve handles")
    kv_cache_usage: float = Field(ge=0, le=1, description="mean over reporting replicas")
    ttft_p90_s: float | None = Field(
        None, ge=0, description="replicas' TTFT p90, weighted by their ongoing requests"
    )
    arrivals_per_s: float = Field(ge=0, description="requests per second reaching the fleet")

    @property
    def demand(self) -> float:
        """Requests that want a batch slot now: the quantity replicas are sized for."""
        return self.running + self.waiting


def fleet_signals(
    per_replica: Mapping[Hashable, ReplicaStats], handle_queued: float
) -> FleetSignals:
    """Sum the load, average the KV usage, and weight each replica's TTFT by its load.

    Weighting by ongoing requests makes the TTFT the one a typical request sees, so one idle
    replica's stale outlier neither hides nor fakes a fleet-wide slowdown.
    """
    stats = list(per_replica.values())
    ttft_weighted = [
        (s.ttft_p90_s, s.num_running + s.num_waiting) for s in stats if s.ttft_p90_s is not None
    ]
    weight = sum(w for _, w in ttft_weighted)
    if weight > 0:
        ttft = sum(t * w for t, w in ttft_weighted) / weight
    elif ttft_weighted:
        ttft = max(t for t, _ in ttft_weighted)
    else:
        ttft = None
    return FleetSignals(
        reporting_replicas=len(stats),
        running=sum(s.num_running for s in stats),
        waiting=sum(s.num_waiting for s in stats) + max(0.0, handle_queued),
        kv_cache_usage=sum(s.kv_cache_usage for s in stats) / len(stats) if stats else 0.0,
        ttft_p90_s=ttft,
        arrivals_per_s=sum(s.arrivals_per_s for s in stats),
    )


def replica_stats_from_serve(
    aggregated_metrics: Mapping[str, Mapping[Hashable, float]], replicas: Iterable[Hashable]
) -> dict[Hashable, ReplicaStats]:
    """Per-replica stats from Serve's `ctx.aggregated_metrics`; replicas that have not
    reported yet are left out."""
    running = aggregated_metrics.get(METRIC_NUM_RUNNING, {})
    waiting = aggregated_metrics.get(METRIC_NUM_WAITING, {})
    kv = aggregated_metrics.get(METRIC_KV_CACHE_USAGE, {})
    ttft = aggregated_metrics.get(METRIC_TTFT_P90_S, {})
    arrivals = aggregated_metrics.get(METRIC_ARRIVALS_PER_S, {})
    return {
        replica: ReplicaStats(
            num_running=max(0.0, running[replica]),
            num_waiting=max(0.0, waiting.get(replica, 0.0)),
            kv_cache_usage=min(1.0, max(0.0, kv.get(replica, 0.0))),
            ttft_p90_s=ttft.get(replica),
            arrivals_per_s=max(0.0, arrivals.get(replica, 0.0)),
        )
        for replica in replicas
        if replica in running
    }
