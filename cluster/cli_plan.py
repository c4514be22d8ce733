"""`python -m cluster plan MODEL --gpu GPU`: print the planner's layout for a model, and why.

Exit codes: 0 a plan, 1 nothing fits (the message names the smallest layout that would),
2 a bad request (unknown model or GPU, precision or context the model does not support).
"""

from __future__ import annotations

import argparse
import sys

from cluster.catalog import Precision, gpus
from cluster.cold_start import describe
from cluster.planner import InfeasiblePlanError, Plan, PlanRequest, plan


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "plan",
        help="choose tensor/pipeline parallelism and nodes for a model on a GPU type",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "model", help="catalog id, e.g. kimi-k2.5 (an unknown id lists the known ones)"
    )
    parser.add_argument("--gpu", required=True, help=f"GPU type: {', '.join(g.id for g in gpus())}")
    parser.add_argument("--gpus-per-node", type=int, default=_default("gpus_per_node"))
    parser.add_argument(
        "--precision",
        choices=["native", *(p.value for p in Precision)],
        default=_default("precision"),
        help="the native checkpoint, a published one at that precision, or a smaller quantization",
    )
    parser.add_argument(
        "--context",
        type=int,
        default=_default("context"),
        help="tokens per sequence (default %(default)s)",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=_default("concurrency"),
        help="sequences of --context tokens one replica holds at once (default %(default)s)",
    )
    parser.add_argument(
        "--gpu-memory-utilization", type=float, default=_default("gpu_memory_utilization")
    )
    parser.add_argument(
        "--kv-cache-dtype", choices=["auto", "fp8"], default=_default("kv_cache_dtype")
    )
    parser.add_argument(
        "--max-nodes",
        type=int,
        default=_default("max_nodes"),
        help="largest replica considered (default %(default)s)",
    )
    parser.add_argument(
        "--json", action="store_true", help="print the plan (or the infeasibility) as JSON"
    )
    parser.set_defaults(run=run)


def _default(field: str) -> object:
    return PlanRequest.model_fields[field].default


def run(args: argparse.Namespace) -> int:
    try:
        result = plan(
            PlanRequest(
                model=args.model,
                gpu=args.gpu,
                gpus_per_node=args.gpus_per_node,
                precision=args.precision,
                context=args.context,
                concurrency=args.concurrency,
                gpu_memory_utilization=args.gpu_memory_utilization,
                kv_cache_dtype=args.kv_cache_dtype,
                max_nodes=args.max_nodes,
            )
        )
    except InfeasiblePlanError as error:
        if args.json:
            print(error.infeasibility.model_dump_json(indent=2))
        print(f"infeasible: {error}", file=sys.stderr)
        return 1
    except (LookupError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(result.model_dump_json(indent=2) if args.json else format_plan(result))
    return 0


def format_plan(p: Plan) -> str:
    stages = "/".join(map(str, p.layers_per_stage))
    gpus = f"{p.gpus_per_replica} GPUs" if p.gpus_per_replica > 1 else "1 GPU"
    nodes = f"{p.nodes} nodes" if p.nodes > 1 else "1 node"
    rows = [
        ("weights", f"{p.weights_total_gb:.1f} GB: {p.weights_description}"),
        (
            "layout",
            f"TP {p.tensor_parallel_size} x PP {p.pipeline_parallel_size} = {gpus} on {nodes}; "
            f"layers per stage {stages}",
        ),
        (
            "per GPU",
            f"{p.usable_memory_per_gpu_gb:.1f} GB usable = {p.weights_per_gpu_gb:.1f} weights "
            f"+ {p.reserve_per_gpu_gb:.1f} reserve + {p.kv_cache_per_gpu_gb:.1f} KV cache",
        ),
        (
            "KV bytes per token",
            f"{p.kv_bytes_per_token:,} whole model, {p.kv_bytes_per_token_per_gpu:,} per GPU "
            f"({p.kv_bytes_per_sequence_per_gpu / 1e9:.2f} GB per GPU per "
            f"{p.context:,}-token sequence)",
        ),
        (
            "KV cache",
            f"{p.kv_cache_tokens:,} tokens per replica = {p.max_concurrent_sequences} sequences of "
            f"{p.context:,} tokens ({p.concurrency} wanted)",
        ),
        (
            "vLLM",
            f"tensor_parallel_size={p.tensor_parallel_size} "
            f"pipeline_parallel_size={p.pipeline_parallel_size} "
            f"max_model_len={p.context} max_num_seqs={p.max_num_seqs} "
            f"gpu_memory_utilization={p.gpu_memory_utilization} kv_cache_dtype={p.kv_cache_dtype}",
        ),
        ("cold start", describe(p.cold_start)),
        ("Ray", f"accelerator_type:{p.ray_accelerator_type}"),
        (
            "machines",
            ", ".join(p.machine_types) or f"none in the catalog with {p.gpus_per_node} GPUs",
        ),
    ]
    width = max(len(label) for label, _ in rows)
    lines = [f"{p.model_id} ({p.model_name}) on {p.gpu}, {p.gpus_per_node} GPUs per node"]
    lines += [f"  {label:<{width}}  {value}" for label, value in rows]
    lines.append("why:")
    lines += [f"  - {reason}" for reason in p.reasons]
    return "\n".join(lines)
