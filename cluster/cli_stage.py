"""`python -m cluster stage CONFIG`: put a complete, verified copy of each model's weights on the
local disk of every node that will host one of its workers, before any replica starts.

Per model: list the source once (a Hub repo pinned to its commit, an object-store prefix or a
shared path), check every target node's free disk (nothing moves if one is too small), then
fetch on all nodes at once, one pinned Ray task each, resumable, showing bytes, rate and ETA
per node; verify every file (size, and hash where the source publishes one) and mark the copy
complete. A node whose copy is already complete does nothing: running it again is a no-op.

Exit codes: 0 every node holds a verified copy, 1 a node failed (disk too small, verification,
source), 2 a bad request (config, no target node).
"""

from __future__ import annotations

import argparse
import sys

from deployments.config import ModelConfig, load_app_config


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "stage",
        help="copy each model's weights onto every node that will host a worker, and verify them",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("config", help="a Serve config file, e.g. configs/kimi.yaml")
    parser.add_argument("--address", help="Ray address (default: RAY_ADDRESS, else auto)")
    parser.add_argument("--app", help="application in the config (default: the first)")
    parser.add_argument(
        "--model", action="append", help="stage only this model (repeatable; default: all)"
    )
    parser.add_argument(
        "--node",
        action="append",
        help="stage on this Ray node id (repeatable; default: every alive node of the model's "
        "accelerator type)",
    )
    parser.add_argument(
        "--rehash",
        action="store_true",
        help="re-check the hashes of copies already complete (finds corruption that kept sizes)",
    )
    parser.add_argument(
        "--interval", type=float, default=10.0, help="seconds between progress lines"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        config = load_app_config(args.config, args.app)
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    models = [m for m in config.models if _staged(m) and (not args.model or m.name in args.model)]
    if not models:
        print("error: no model of this config has weights to stage", file=sys.stderr)
        return 2
    _connect(args.address)
    failed = False
    for model in models:
        code = stage_model(model, args.node, args.interval, args.rehash)
        if code == 2:
            return 2
        failed |= code != 0
    return 1 if failed else 0


def stage_model(model: ModelConfig, nodes: list[str] | None, interval_s: float, rehash: bool) -> int:
    from cluster.staging_ray import check_disks, list_manifest, stage_on_nodes, target_node_ids

    weights = model.weights
    node_ids = nodes or target_node_ids(model.placement.accelerator)
    if not node_ids:
        print(
            f"error: {model.name}: no alive node of accelerator type "
            f"{model.placement.accelerator}",
            file=sys.stderr,
        )
        return 2
    manifest = list_manifest(weights)
    print(
        f"{model.name}: {manifest.source}, {len(manifest.files)} files, "
        f"{manifest.total_bytes / 1e9:.2f} GB, to {len(node_ids)} node(s)",
        flush=True,
    )
    problems = check_disks(weights, manifest, node_ids)
    if problems:
        for node, problem in problems.items():
            print(f"  {node[:12]}  disk too small: {problem}", file=sys.stderr)
        print(f"{model.name}: nothing fetched: free disk on the nodes above first", file=sys.stderr)
        return 1
    results = stage_on_nodes(
        weights, manifest, node_ids, show=_print_block, interval_s=interval_s, rehash=rehash
    )
    for node, result in results.items():
        refetched = result.outcome.refetched if result.outcome else ()
        note = f" (fetched again after failed verification: {', '.join(refetched)})" if refetched else ""
        verdict = "staged and verified" if result.ok else "FAILED"
        print(f"  {node[:12]}  {verdict}: {result.detail}{note}")
    return 0 if all(r.ok for r in results.values()) else 1


def _staged(model: ModelConfig) -> bool:
    return model.weights is not None and model.simulated_engine is None and model.weights.is_staged


def _print_block(lines: list[str]) -> None:
    print("\n".join(f"  {line}" for line in lines), flush=True)


def _connect(address: str | None) -> None:
    import ray

    if not ray.is_initialized():
        ray.init(address=address or "auto", logging_level="WARNING", configure_logging=True)
