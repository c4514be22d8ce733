"""How many more replicas the cluster can place: gangs of TP x PP GPUs, not loose GPUs.

A replica is all-or-nothing: each pipeline stage needs `gpus_per_stage` GPUs on one node.
Twelve free GPUs spread 4 + 4 + 4 over three nodes place no 8-GPU replica, so counting the
cluster-wide free GPUs would pile up placement groups that never place. The count is
per node, and every placement group of this deployment that is still waiting is
subtracted: it will take the next room that frees up.
"""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict, Field

from autoscaling.config import AutoscalingConfig

# Placement-group states that hold no resources yet (RESCHEDULING: its node died).
_WAITING_PG_STATES = {"PENDING", "RESCHEDULING"}


class ClusterCapacity(BaseModel):
    """A read of the cluster, as the policy needs it."""

    model_config = ConfigDict(frozen=True)

    free_gpus_per_node: tuple[float, ...] = Field(description="unreserved GPUs of each live node")
    waiting_replicas: int = Field(
        0, ge=0, description="this deployment's placement groups still waiting for resources"
    )


def node_pool_growth_gpus(
    *, min_replicas: int, max_replicas: int, gpus_per_replica: int, gpus_per_node: int
) -> int:
    """GPUs the cluster autoscaler may add for one model: its GPU node pool and Ray worker group
    grow from min_replicas' nodes to max_replicas' (terraform/modules/sizing: replicas x
    ceil(gpus_per_replica / gpus_per_node) nodes; `cluster tfvars` takes both bounds from the
    model's `autoscaling:`, min_replicas 0 with scale_to_zero)."""
    nodes_per_replica = math.ceil(gpus_per_replica / gpus_per_node)
    return max(0, max_replicas - min_replicas) * nodes_per_replica * gpus_per_node


def addable_replicas(capacity: ClusterCapacity, config: AutoscalingConfig) -> int:
    """Replicas that can be placed now on top of those already asked for."""
    stage = config.stage_gpus
    free_stages = sum(math.floor(free / stage) for free in capacity.free_gpus_per_node)
    # The cluster autoscaler adds whole nodes, so its headroom counts in whole stages too.
    free_stages += config.autoscaler_headroom_gpus // stage
    placeable = free_stages // (config.gpus_per_replica // stage)
    return max(0, placeable - capacity.waiting_replicas)


class RayCapacityReader:
    """Reads free GPUs per node and this deployment's waiting placement groups from Ray.

    Serve calls the policy every control-loop tick (~0.1 s); each read is two GCS calls,
    so a read is reused for `refresh_s`.
    """

    def __init__(self, refresh_s: float) -> None:
        self._refresh_s = refresh_s
        self._read_at: float | None = None
        self._last: ClusterCapacity | None = None

    def read(self, deployment_id, now: float) -> ClusterCapacity:
        if self._last is None or self._read_at is None or now - self._read_at >= self._refresh_s:
            self._last = self._read(deployment_id)
            self._read_at = now
        return self._last

    @staticmethod
    def _read(deployment_id) -> ClusterCapacity:
        import ray
        from ray._private.state import available_resources_per_node
        from ray.serve._private.common import ReplicaID

        # Serve names each replica's placement group after the replica's actor.
        prefix = ReplicaID(unique_id="", deployment_id=deployment_id).to_full_id_str()
        waiting = sum(
            1
            for pg in ray.util.placement_group_table().values()
            if pg["name"].startswith(prefix) and pg["state"] in _WAITING_PG_STATES
        )
        per_node = available_resources_per_node().values()
        free = tuple(float(resources.get("GPU", 0.0)) for resources in per_node)
        return ClusterCapacity(free_gpus_per_node=free, waiting_replicas=waiting)
