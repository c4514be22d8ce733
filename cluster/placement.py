"""Where one engine replica's vLLM workers go: bundles, strategy, and the nodes of each TP group.

A replica of TP x PP is `TP * PP` one-GPU bundles (vLLM's Ray executor makes one worker per
bundle holding a GPU), stage-major: bundles `s*TP .. s*TP+TP-1` are pipeline stage `s`, i.e. one
TP group. The replica actor (vLLM's driver, which must share a node with a worker) sits in
bundle 0. The rule this module enforces: every TP group sits inside one node.

How the rule is enforced, per layout (Ray 2.60 offers no per-subgroup constraint: `strategy` and
`topology_strategy` constrain the whole group):

* The replica fits one node (TP * PP <= GPUs per node): strategy STRICT_PACK. Ray places the
  whole group on one node or leaves it pending; it never straddles. This works for any number
  of replicas and for replicas Serve replaces, because nothing names a node.
* The replica spans nodes: PACK alone can straddle (seen: 16 bundles placed 8 + 4 + 4 when two
  nodes were half used). `choose_nodes` picks, from a snapshot of the cluster, a node with room
  for whole TP groups for each stage, and every bundle gets the label selector
  `ray.io/node-id: <that node>`. Ray then places each TP group on its node or not at all.

vLLM re-ranks workers grouping them by node (driver's node first), so a node holding a multiple
of TP bundles keeps every TP group of consecutive ranks on NVLink.

Pure: node snapshots in, bundles / selectors / verdicts out; `placement_ray` talks to Ray.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from cluster.planner import Plan
    from deployments.config import ModelConfig

NODE_ID_LABEL = "ray.io/node-id"
ACCELERATOR_LABEL = "ray.io/accelerator-type"
ACCELERATOR_RESOURCE_PREFIX = "accelerator_type:"
# The replica actor (AsyncLLM front end and vLLM's driver) sits in bundle 0 beside worker 0.
REPLICA_ACTOR_CPUS = 1.0
# Every bundle asks for a sliver of the accelerator resource Ray puts on nodes of that GPU type,
# so no GPU of another type is ever used, whatever the strategy.
_ACCELERATOR_SLIVER = 0.001


class Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PlacementInfeasibleError(RuntimeError):
    """The layout cannot be placed on the cluster as it is now; the message says why."""


class ReplicaLayout(Frozen):
    tensor_parallel_size: int = Field(ge=1)
    pipeline_parallel_size: int = Field(ge=1)
    accelerator: str = Field(description="Ray accelerator type, e.g. H200")
    gpus_per_node: int = Field(ge=1)
    cpus_per_worker: float = Field(1.0, gt=0)

    @classmethod
    def from_model(cls, model: ModelConfig) -> ReplicaLayout:
        return cls(
            tensor_parallel_size=model.parallelism.tensor_parallel_size,
            pipeline_parallel_size=model.parallelism.pipeline_parallel_size,
            accelerator=model.placement.accelerator,
            gpus_per_node=model.placement.gpus_per_node,
            cpus_per_worker=model.placement.cpus_per_worker,
        )

    @classmethod
    def from_plan(cls, plan: Plan, cpus_per_worker: float = 1.0) -> ReplicaLayout:
        return cls(
            tensor_parallel_size=plan.tensor_parallel_size,
            pipeline_parallel_size=plan.pipeline_parallel_size,
            accelerator=plan.ray_accelerator_type,
            gpus_per_node=plan.gpus_per_node,
            cpus_per_worker=cpus_per_worker,
        )

    @property
    def workers(self) -> int:
        return self.tensor_parallel_size * self.pipeline_parallel_size

    @property
    def spans_nodes(self) -> bool:
        return self.workers > self.gpus_per_node

    @property
    def label(self) -> str:
        return (
            f"TP{self.tensor_parallel_size} x PP{self.pipeline_parallel_size} "
            f"on {self.accelerator}"
        )


class NodeResources(Frozen):
    """One alive node as the scheduler sees it now."""

    node_id: str
    accelerator: str | None = Field(description="Ray accelerator type of its GPUs, if any")
    gpus_total: float
    gpus_free: float
    cpus_free: float


class PlacementOptions(Frozen):
    """Serve's placement options of one engine replica (and the same group for a dry run)."""

    bundles: tuple[Mapping[str, float], ...]
    strategy: Literal["STRICT_PACK", "PACK"]
    bundle_label_selector: tuple[Mapping[str, str], ...] | None = None

    def serve_options(self) -> dict[str, object]:
        options: dict[str, object] = {
            "placement_group_bundles": [dict(b) for b in self.bundles],
            "placement_group_strategy": self.strategy,
        }
        if self.bundle_label_selector is not None:
            options["placement_group_bundle_label_selector"] = [
                dict(s) for s in self.bundle_label_selector
            ]
        return options


def node_accelerator(labels: Mapping[str, str], resources: Mapping[str, float]) -> str | None:
    """A node's GPU type: Ray's label, else its `accelerator_type:X` resource."""
    if labels.get(ACCELERATOR_LABEL):
        return labels[ACCELERATOR_LABEL]
    for key in resources:
        if key.startswith(ACCELERATOR_RESOURCE_PREFIX):
            return key.removeprefix(ACCELERATOR_RESOURCE_PREFIX)
    return None


def bundles(layout: ReplicaLayout) -> list[dict[str, float]]:
    """One 1-GPU bundle per worker, stage-major; bundle 0 also holds the replica actor."""
    worker = {
        "CPU": layout.cpus_per_worker,
        "GPU": 1.0,
        f"{ACCELERATOR_RESOURCE_PREFIX}{layout.accelerator}": _ACCELERATOR_SLIVER,
    }
    result = [dict(worker) for _ in range(layout.workers)]
    result[0]["CPU"] += REPLICA_ACTOR_CPUS
    return result


def placement_options(
    layout: ReplicaLayout, stage_nodes: Sequence[str] | None = None
) -> PlacementOptions:
    """The group of one replica; a layout spanning nodes needs `choose_nodes`' answer."""
    if not layout.spans_nodes:
        return PlacementOptions(bundles=tuple(bundles(layout)), strategy="STRICT_PACK")
    if stage_nodes is None or len(stage_nodes) != layout.pipeline_parallel_size:
        raise ValueError(
            f"{layout.label} spans nodes: it needs one node per pipeline stage "
            f"({layout.pipeline_parallel_size}), got {stage_nodes!r}"
        )
    selectors = tuple(
        {NODE_ID_LABEL: stage_nodes[index // layout.tensor_parallel_size]}
        for index in range(layout.workers)
    )
    return PlacementOptions(
        bundles=tuple(bundles(layout)), strategy="PACK", bundle_label_selector=selectors
    )


def choose_nodes(layout: ReplicaLayout, nodes: Sequence[NodeResources]) -> tuple[str, ...]:
    """The node of each pipeline stage, each holding its whole TP group; fewest nodes first.

    A replica that fits one node gets one node for every stage (what STRICT_PACK will do).
    Among nodes that fit, the tightest fit wins, keeping whole nodes free for larger groups.
    Raises PlacementInfeasibleError naming what each node of the right type lacks."""
    tp, pp = layout.tensor_parallel_size, layout.pipeline_parallel_size
    stage_cpus = tp * layout.cpus_per_worker
    typed = sorted(
        (n for n in nodes if n.accelerator == layout.accelerator),
        key=lambda n: (n.gpus_free, n.node_id),
    )

    def stages_fitting(node: NodeResources, with_actor: bool) -> int:
        cpus = node.cpus_free - (REPLICA_ACTOR_CPUS if with_actor else 0.0)
        return max(0, min(math.floor(node.gpus_free / tp), math.floor(cpus / stage_cpus)))

    if not layout.spans_nodes:
        # `typed` runs from the fewest free GPUs up: the first that fits is the tightest.
        node = next((n for n in typed if stages_fitting(n, with_actor=True) >= pp), None)
        if node is None:
            raise PlacementInfeasibleError(_why_not(layout, nodes, typed))
        return (node.node_id,) * pp

    def most_stages_then_tightest(with_actor: bool):
        return lambda n: (-min(stages_fitting(n, with_actor), pp), n.gpus_free, n.node_id)

    # Stage 0 first: its node must also hold the replica actor.
    firsts = [n for n in typed if stages_fitting(n, with_actor=True) >= 1]
    if not firsts:
        raise PlacementInfeasibleError(_why_not(layout, nodes, typed))
    first = min(firsts, key=most_stages_then_tightest(with_actor=True))
    assignment = [first.node_id] * min(stages_fitting(first, with_actor=True), pp)
    rest = sorted(
        (n for n in typed if n.node_id != first.node_id and stages_fitting(n, False) >= 1),
        key=most_stages_then_tightest(with_actor=False),
    )
    for node in rest:
        if len(assignment) == pp:
            break
        assignment += [node.node_id] * min(stages_fitting(node, False), pp - len(assignment))
    if len(assignment) < pp:
        raise PlacementInfeasibleError(_why_not(layout, nodes, typed))
    return tuple(assignment)


def placement_problems(
    layout: ReplicaLayout,
    bundle_nodes: Mapping[int, str],
    node_accelerators: Mapping[str, str | None],
) -> list[str]:
    """What is wrong with a placed group (empty when nothing): a bundle unplaced, a TP group
    straddling nodes, a GPU of the wrong type, a single-node replica spread out."""
    problems = []
    tp = layout.tensor_parallel_size
    missing = [i for i in range(layout.workers) if i not in bundle_nodes]
    if missing:
        problems.append(f"bundles {missing} are not placed")
    for stage in range(layout.pipeline_parallel_size):
        group = [bundle_nodes.get(i) for i in range(stage * tp, (stage + 1) * tp)]
        if len({n for n in group if n is not None}) > 1:
            problems.append(f"TP group of stage {stage} straddles nodes: {dict(Counter(group))}")
    wrong = {
        node: node_accelerators.get(node)
        for node in bundle_nodes.values()
        if node_accelerators.get(node) != layout.accelerator
    }
    if wrong:
        problems.append(f"GPUs of the wrong type used ({layout.accelerator} wanted): {wrong}")
    if not layout.spans_nodes and len(set(bundle_nodes.values())) > 1:
        problems.append(f"a one-node replica was spread over {len(set(bundle_nodes.values()))}")
    return problems


def _why_not(
    layout: ReplicaLayout, nodes: Sequence[NodeResources], typed: Sequence[NodeResources]
) -> str:
    tp, pp = layout.tensor_parallel_size, layout.pipeline_parallel_size
    if layout.spans_nodes:
        need = (
            f"{pp} TP groups of {tp} {layout.accelerator} GPUs, each inside one node "
            f"({tp * layout.cpus_per_worker:g} CPUs each, +{REPLICA_ACTOR_CPUS:g} for the "
            "replica actor on the first)"
        )
    else:
        need = (
            f"{layout.workers} {layout.accelerator} GPUs on one node "
            f"({layout.workers * layout.cpus_per_worker + REPLICA_ACTOR_CPUS:g} CPUs)"
        )
    if typed:
        free = "; ".join(
            f"{n.node_id[:12]}: {n.gpus_free:g}/{n.gpus_total:g} GPUs, {n.cpus_free:g} CPUs free"
            for n in typed
        )
    else:
        free = f"no alive node has {layout.accelerator} GPUs"
    others = Counter(
        n.accelerator for n in nodes if n.accelerator not in (None, layout.accelerator)
    )
    other_text = (
        f"; not used, other GPU types: {', '.join(f'{k} x{v}' for k, v in sorted(others.items()))}"
        if others
        else ""
    )
    return f"{layout.label} cannot be placed now: needs {need}; free: {free}{other_text}"
