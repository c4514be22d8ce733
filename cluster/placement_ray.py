"""The live side of placement: read the cluster's nodes, and reserve a replica's group.

Thin over Ray: `cluster.placement` decides, this module asks Ray. Needs a connected Ray.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from cluster.placement import (
    Frozen,
    NodeResources,
    PlacementInfeasibleError,
    PlacementOptions,
    ReplicaLayout,
    choose_nodes,
    node_accelerator,
    placement_options,
    placement_problems,
)

# Long enough for a free cluster to commit a group (tens of ms), short enough to fail fast.
DEFAULT_RESERVE_TIMEOUT_S = 10.0


class Reservation(Frozen):
    """A group Ray has placed: which node holds each bundle."""

    placement_group_id: str
    options: PlacementOptions
    bundle_nodes: dict[int, str]


def cluster_nodes() -> list[NodeResources]:
    """Every alive node with its GPU type and what is free on it now."""
    import ray
    from ray._private.state import available_resources_per_node

    available = available_resources_per_node()
    return [
        NodeResources(
            node_id=node["NodeID"],
            accelerator=node_accelerator(node.get("Labels") or {}, node["Resources"]),
            gpus_total=node["Resources"].get("GPU", 0.0),
            gpus_free=available.get(node["NodeID"], {}).get("GPU", 0.0),
            cpus_free=available.get(node["NodeID"], {}).get("CPU", 0.0),
        )
        for node in ray.nodes()
        if node["Alive"]
    ]


def live_stage_nodes(layout: ReplicaLayout) -> tuple[str, ...]:
    """The node of each pipeline stage on the cluster as it is now; raises
    PlacementInfeasibleError (with what each node lacks) instead of leaving a group pending."""
    return choose_nodes(layout, cluster_nodes())


def live_placement_options(layout: ReplicaLayout) -> PlacementOptions:
    """The replica's group as Serve will create it, for the cluster as it is now."""
    stage_nodes = live_stage_nodes(layout)
    return placement_options(layout, stage_nodes if layout.spans_nodes else None)


@contextlib.contextmanager
def reserved(
    layout: ReplicaLayout, timeout_s: float = DEFAULT_RESERVE_TIMEOUT_S
) -> Iterator[Reservation]:
    """Reserve the replica's group exactly as Serve would, hold it inside the block, release it.

    Raises PlacementInfeasibleError within `timeout_s` when the group cannot be placed, or when
    Ray placed it against the rules (never expected; checked so the claim is proven each time)."""
    from ray.util.placement_group import (
        placement_group,
        placement_group_table,
        remove_placement_group,
    )

    options = live_placement_options(layout)
    group = placement_group(
        [dict(b) for b in options.bundles],
        strategy=options.strategy,
        bundle_label_selector=(
            [dict(s) for s in options.bundle_label_selector]
            if options.bundle_label_selector
            else None
        ),
    )
    try:
        if not group.wait(timeout_s):
            state = (placement_group_table(group).get("stats") or {}).get("scheduling_state")
            raise PlacementInfeasibleError(
                f"{layout.label}: placement group not placed within {timeout_s:g} s "
                f"(Ray: {state}); nodes now: {_free_summary(layout)}"
            )
        bundle_nodes = {
            int(index): node
            for index, node in placement_group_table(group)["bundles_to_node_id"].items()
        }
        accelerators = {n.node_id: n.accelerator for n in cluster_nodes()}
        problems = placement_problems(layout, bundle_nodes, accelerators)
        if problems:
            raise PlacementInfeasibleError(f"{layout.label}: {'; '.join(problems)}")
        yield Reservation(
            placement_group_id=group.id.hex(), options=options, bundle_nodes=bundle_nodes
        )
    finally:
        remove_placement_group(group)


def _free_summary(layout: ReplicaLayout) -> str:
    typed = [n for n in cluster_nodes() if n.accelerator == layout.accelerator]
    return "; ".join(f"{n.node_id[:12]} {n.gpus_free:g} GPUs free" for n in typed) or "none"
