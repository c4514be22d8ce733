"""One small Ray actor per GPU node that exports cluster.gpu_stats as Ray metrics.

Started by the engine replicas of GPU models for the nodes of their placement group
(`ensure_gpu_stats_actors`): named per node and detached, so each node gets one however
many replicas share it, and it keeps reporting between redeploys. Without NVML it says so
once and idles.
"""

from __future__ import annotations

import threading
import time

import ray

from cluster.gpu_stats import GpuSample, open_nvml
from deployments.observability.metrics import MetricSpec, ray_metric

GPU_TAGS = ("node", "gpu", "gpu_uuid")
SAMPLE_INTERVAL_S = 5.0
NAMESPACE = "giantserve"

GPU_UTILIZATION = MetricSpec("giantserve_gpu_utilization_percent", "gauge", "GPU busy time, %", GPU_TAGS)
GPU_MEMORY_USED = MetricSpec("giantserve_gpu_memory_used_bytes", "gauge", "GPU memory in use", GPU_TAGS)
GPU_MEMORY_TOTAL = MetricSpec("giantserve_gpu_memory_total_bytes", "gauge", "GPU memory", GPU_TAGS)
GPU_TEMPERATURE = MetricSpec("giantserve_gpu_temperature_celsius", "gauge", "GPU temperature", GPU_TAGS)
GPU_POWER = MetricSpec("giantserve_gpu_power_watts", "gauge", "GPU power draw", GPU_TAGS)
GPU_ECC = MetricSpec(
    "giantserve_gpu_ecc_uncorrected_errors", "gauge",
    "Uncorrected ECC errors since the driver loaded", GPU_TAGS,
)  # fmt: skip
GPU_XID = MetricSpec(
    "giantserve_gpu_xid_errors", "counter", "XID critical-error events", ("node", "gpu_uuid", "xid")
)
GPU_METRICS = (
    GPU_UTILIZATION, GPU_MEMORY_USED, GPU_MEMORY_TOTAL, GPU_TEMPERATURE, GPU_POWER, GPU_ECC, GPU_XID,
)  # fmt: skip

_GAUGE_FIELDS = (
    (GPU_UTILIZATION, "utilization_pct"),
    (GPU_MEMORY_USED, "memory_used_bytes"),
    (GPU_MEMORY_TOTAL, "memory_total_bytes"),
    (GPU_TEMPERATURE, "temperature_c"),
    (GPU_POWER, "power_w"),
    (GPU_ECC, "ecc_uncorrected_errors"),
)


def export_samples(node: str, samples: list[GpuSample], xid_errors: list[tuple[str, int]]) -> None:
    for sample in samples:
        tags = {"node": node, "gpu": str(sample.index), "gpu_uuid": sample.uuid}
        for spec, field in _GAUGE_FIELDS:
            value = getattr(sample, field)
            if value is not None:
                ray_metric(spec).set(value, tags=tags)
    for uuid, xid in xid_errors:
        ray_metric(GPU_XID).inc(1, tags={"node": node, "gpu_uuid": uuid, "xid": str(xid)})


@ray.remote(num_cpus=0)
class GpuStatsActor:
    def __init__(self, interval_s: float = SAMPLE_INTERVAL_S):
        self._node = ray.get_runtime_context().get_node_id()
        self._nvml = open_nvml()
        self._status = "sampling" if self._nvml else "no NVML on this node"
        if self._nvml is not None:
            self._nvml.watch_xid_errors()
            # NVML calls block: a thread of their own keeps the actor answering.
            threading.Thread(target=self._sample_forever, args=(interval_s,), daemon=True).start()

    def _sample_forever(self, interval_s: float) -> None:
        while True:
            export_samples(self._node, self._nvml.samples(), self._nvml.xid_errors())
            time.sleep(interval_s)

    def status(self) -> str:
        return self._status


def ensure_gpu_stats_actors(node_ids: list[str]) -> list:
    """One GpuStatsActor on each node (started where missing); their handles."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    return [
        GpuStatsActor.options(
            name=f"gpu-stats-{node_id}",
            namespace=NAMESPACE,
            lifetime="detached",
            get_if_exists=True,
            scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False),
        ).remote()
        for node_id in dict.fromkeys(node_ids)
    ]


def placement_group_nodes(placement_group) -> list[str]:
    """The nodes that hold the bundles of a (ready) placement group."""
    from ray.util import placement_group_table

    return list(placement_group_table(placement_group)["bundles_to_node_id"].values())
