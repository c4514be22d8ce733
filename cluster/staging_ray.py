"""Staging on a Ray cluster: one task per node, pinned to it, and the progress of all of them.

Which nodes: the ones that will host a worker of the model. Without a live placement to ask,
that is every alive node of the config's accelerator type (resource `accelerator_type:<GPU>`,
which Ray adds on GPU nodes), or every node with CPUs for a CPU model; `stage --node` names
them instead.

The tasks hold no CPU (`num_cpus=0`): staging is disk and network bound and must not wait
behind serving replicas on a busy node. They run with the Hub online (`HF_HUB_OFFLINE=0`,
whatever the node's default) and the driver's `HF_ENDPOINT` and `HF_TOKEN`, when set.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from cluster.staging import (
    Frozen,
    Manifest,
    StageOutcome,
    bytes_on_disk,
    disk_problem,
    stage_here,
    staged_copy_status,
    staging_root,
)
from cluster.transfer_progress import Sample, format_line

if TYPE_CHECKING:
    from deployments.config import WeightsSource

_PASSED_THROUGH_ENV = ("HF_ENDPOINT", "HF_TOKEN")


class NodeResult(Frozen):
    node_id: str
    ok: bool
    detail: str
    outcome: StageOutcome | None = None


def target_node_ids(accelerator: str) -> list[str]:
    """Alive nodes that can host a worker of a model on `accelerator` (see module docstring)."""
    import ray

    resource = "CPU" if accelerator == "CPU" else f"accelerator_type:{accelerator}"
    return sorted(
        node["NodeID"]
        for node in ray.nodes()
        if node["Alive"] and node["Resources"].get(resource, 0) > 0
    )


def list_manifest(weights: WeightsSource) -> Manifest:
    """The source's manifest, listed from inside the cluster (where the source is reachable)."""
    import ray

    return ray.get(_remote(_list).remote(weights))


def node_statuses(weights: WeightsSource, node_ids: list[str]) -> dict[str, NodeResult]:
    """Per node: is a complete staged copy there? Cheap (marker and sizes); for preflight."""
    import ray

    refs = {n: _pinned(_status, n).remote(weights, n) for n in node_ids}
    return {n: ray.get(ref) for n, ref in refs.items()}


def check_disks(weights: WeightsSource, manifest: Manifest, node_ids: list[str]) -> dict[str, str]:
    """Nodes whose staging disk cannot take what they still lack: node id -> why."""
    import ray

    refs = {n: _pinned(_disk, n).remote(weights, manifest) for n in node_ids}
    problems = {n: ray.get(ref) for n, ref in refs.items()}
    return {n: problem for n, problem in problems.items() if problem}


def stage_on_nodes(
    weights: WeightsSource,
    manifest: Manifest,
    node_ids: list[str],
    show: Callable[[list[str]], None],
    interval_s: float = 2.0,
    rehash: bool = False,
) -> dict[str, NodeResult]:
    """Stage on every node at once; `show` gets one progress line per node every interval."""
    import ray

    board = _remote(_ProgressBoard).remote()
    pending = {
        _pinned(_stage, n).remote(weights, manifest, n, board, interval_s, rehash): n
        for n in node_ids
    }
    samples: dict[str, list[Sample]] = {n: [] for n in node_ids}
    results: dict[str, NodeResult] = {}
    started = time.monotonic()
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=len(pending), timeout=interval_s)
        for ref in ready:
            result = ray.get(ref)
            results[pending.pop(ref)] = result
        now = time.monotonic() - started
        for node, done in ray.get(board.read.remote()).items():
            samples[node].append(Sample(at_s=now, done_bytes=done))
        show([_line(n, samples[n], manifest, results.get(n)) for n in node_ids])
    ray.kill(board)
    return results


def _line(node: str, samples: list[Sample], manifest: Manifest, result: NodeResult | None) -> str:
    if result is None:
        state = "fetching"
    elif not result.ok:
        state = "FAILED"
    elif result.outcome is not None and not result.outcome.fetched:
        state = "already staged"
    else:
        state = "verified"
    return format_line(node[:12], samples, manifest.total_bytes, state)


def _remote(function_or_class):
    import ray

    env = {"HF_HUB_OFFLINE": "0", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
    env |= {key: os.environ[key] for key in _PASSED_THROUGH_ENV if key in os.environ}
    return ray.remote(num_cpus=0, runtime_env={"env_vars": env})(function_or_class)


def _pinned(function, node_id: str):
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    return _remote(function).options(
        scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False)
    )


class _ProgressBoard:
    """Where every node's task reports its bytes on disk, and the driver reads them all."""

    def __init__(self) -> None:
        self._done: dict[str, int] = {}

    def report(self, node_id: str, done_bytes: int) -> None:
        self._done[node_id] = done_bytes

    def read(self) -> dict[str, int]:
        return dict(self._done)


def _list(weights: WeightsSource) -> Manifest:
    from cluster.weight_sources import manifest_for

    return manifest_for(weights)


def _status(weights: WeightsSource, node_id: str) -> NodeResult:
    verdict = staged_copy_status(weights.staged_directory())
    return NodeResult(node_id=node_id, ok=verdict.ok, detail=verdict.detail)


def _disk(weights: WeightsSource, manifest: Manifest) -> str | None:
    return disk_problem(staging_root(weights.staging_dir), weights.staged_directory(), manifest)


def _stage(
    weights: WeightsSource,
    manifest: Manifest,
    node_id: str,
    board,
    interval_s: float,
    rehash: bool,
) -> NodeResult:
    from cluster.weight_sources import fetcher_for

    directory = weights.staged_directory()
    finished = threading.Event()

    def report_progress() -> None:
        while not finished.wait(interval_s):
            board.report.remote(node_id, bytes_on_disk(directory))

    reporter = threading.Thread(target=report_progress, daemon=True)
    reporter.start()
    try:
        outcome = stage_here(
            staging_root(weights.staging_dir), directory, manifest, fetcher_for(weights), rehash
        )
    except Exception as error:
        # Returned, not raised: one node's failure (disk, verification, source unreachable)
        # must not hide the other nodes' results.
        return NodeResult(node_id=node_id, ok=False, detail=f"{type(error).__name__}: {error}")
    finally:
        finished.set()
        reporter.join()
        board.report.remote(node_id, bytes_on_disk(directory))
    return NodeResult(
        node_id=node_id, ok=True, detail=f"{directory}: {manifest.source}", outcome=outcome
    )
