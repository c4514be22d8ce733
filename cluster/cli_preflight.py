"""`python -m cluster preflight CONFIG --address ADDRESS`: check a live cluster for every GPU model
of a Serve config before deploying it.

Per node of the model's GPU type: GPU count, free GPU memory (NVML), /dev/shm, weights staged
and verified (yes/no, as `stage` left them), free disk for the weights (unless already staged),
fabric/NCCL environment; then whether the replica's placement group can be reserved right now
(reserved and released at once). Prints a table per model. Exit codes: 0 nothing failed, 1 a check failed, 2 a bad config or no cluster.
"""

from __future__ import annotations

import argparse
import sys

from cluster.config_plan import weight_bytes_for_model
from cluster.placement import PlacementInfeasibleError, ReplicaLayout
from cluster.placement_ray import DEFAULT_RESERVE_TIMEOUT_S, cluster_nodes, reserved
from cluster.preflight import DEFAULT_MIN_SHM_BYTES, Check, evaluate, format_table, probe_node
from deployments.config import ModelConfig, load_app_config


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "preflight",
        help="check a live cluster (GPUs, memory, /dev/shm, disk, fabric, placement) for a config",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("config", help="a Serve config file, e.g. configs/kimi.yaml")
    parser.add_argument("--address", default=None, help="Ray address (default: auto)")
    parser.add_argument("--application", default=None, help="application name (default: first)")
    parser.add_argument(
        "--reserve-timeout",
        type=float,
        default=DEFAULT_RESERVE_TIMEOUT_S,
        help="seconds to wait for the placement group (default %(default)s)",
    )
    parser.add_argument(
        "--min-shm-gib",
        type=float,
        default=DEFAULT_MIN_SHM_BYTES / (1 << 30),
        help="smallest acceptable /dev/shm (default %(default)s GiB)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        config = load_app_config(args.config, args.application)
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        _connect(args.address)
    except (ConnectionError, RuntimeError) as error:
        print(f"error: no Ray cluster at {args.address or 'auto'}: {error}", file=sys.stderr)
        return 2
    failed = False
    for model in config.models:
        if model.placement.accelerator == "CPU":
            print(f"{model.name}: CPU model, no GPU preflight")
            continue
        checks = preflight_model(model, args.reserve_timeout, int(args.min_shm_gib * (1 << 30)))
        layout = ReplicaLayout.from_model(model)
        print(format_table(f"{model.name} ({layout.label}):", checks), flush=True)
        failed |= any(c.status == "FAIL" for c in checks)
    print("preflight: FAILED" if failed else "preflight: passed")
    return 1 if failed else 0


def preflight_model(
    model: ModelConfig, reserve_timeout_s: float, min_shm_bytes: int
) -> list[Check]:
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from cluster.staging_ray import node_statuses

    layout = ReplicaLayout.from_model(model)
    nodes = cluster_nodes()
    # Probes hold no CPU: a busy node must still answer.
    probe = ray.remote(num_cpus=0)(probe_node)
    refs = [
        probe.options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(node.node_id, soft=False)
        ).remote(node.node_id, model.weights)
        for node in nodes
        if node.accelerator == layout.accelerator
    ]
    probes = ray.get(refs)
    weights = model.weights
    staged = (
        node_statuses(weights, [p.node_id for p in probes])
        if weights is not None and weights.is_staged
        else None
    )
    try:
        with reserved(layout, reserve_timeout_s) as reservation:
            placement_error = None
            placement_detail = "reserved now (and released): " + _stages(
                layout, reservation.bundle_nodes
            )
    except PlacementInfeasibleError as error:
        placement_error, placement_detail = str(error), ""
    return evaluate(
        layout,
        nodes,
        probes,
        weight_bytes_for_model(model),
        staged,
        model.engine_args.get("gpu_memory_utilization", 0.9),
        placement_error,
        placement_detail,
        min_shm_bytes,
    )


def _stages(layout: ReplicaLayout, bundle_nodes: dict[int, str]) -> str:
    tp = layout.tensor_parallel_size
    return "; ".join(
        f"stage {stage}: {tp} GPUs on {bundle_nodes[stage * tp][:12]}"
        for stage in range(layout.pipeline_parallel_size)
    )


def _connect(address: str | None) -> None:
    import ray

    if not ray.is_initialized():
        ray.init(address=address or "auto", logging_level="WARNING", configure_logging=True)
