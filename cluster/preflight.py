"""Preflight: is a live cluster ready for a model, before a 20-minute weight load finds out?

Two halves. `probe_node` runs on one node (no Ray in it): what NVML says about its GPUs, the
size of /dev/shm, the staging disk, and the fabric/NCCL environment a worker would inherit.
`evaluate` is pure: the probes, the cluster's GPU counts, the weight size, each node's staged
copy (as `cluster.staging_ray.node_statuses` reports it) and the outcome of a placement-group
reservation in; one row per check out, each PASS, WARN (worth a look, not fatal), SKIP (could
not be checked, and why) or FAIL. `cli_preflight` connects the two to a cluster and prints them.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

from pydantic import Field

from cluster.placement import Frozen, NodeResources, ReplicaLayout
from cluster.staging_ray import NodeResult

Status = Literal["PASS", "WARN", "SKIP", "FAIL"]

# NCCL's shared-memory transport needs far more than a container's default 64 MiB.
DEFAULT_MIN_SHM_BYTES = 1 << 30
# Variables that choose or tune the network NCCL uses between nodes (hardware.md).
FABRIC_ENV_PREFIXES = ("NCCL_", "FI_", "UCX_")
# Those that pick an RDMA transport (EFA, InfiniBand, GCP gIB) rather than tune sockets.
_FABRIC_SELECTORS = ("NCCL_NET", "NCCL_IB", "FI_PROVIDER")
_RDMA_DEVICES = Path("/sys/class/infiniband")
_GIB = 1 << 30


class GpuProbe(Frozen):
    index: int
    name: str
    total_bytes: int
    free_bytes: int


class NodeProbe(Frozen):
    """What one node says about itself."""

    node_id: str
    hostname: str
    gpus: tuple[GpuProbe, ...] = ()
    nvml_error: str | None = Field(None, description="why NVML could not be read, if it could not")
    shm_bytes: int | None
    staging_root: str
    staging_usable_bytes: int
    fabric_env: dict[str, str]
    rdma_devices: tuple[str, ...]


class Check(Frozen):
    check: str
    node: str
    status: Status
    detail: str


def probe_node(node_id: str, weights=None) -> NodeProbe:
    """Run on the node itself; `weights` is the config's WeightsSource (None: no weights)."""
    import socket

    from cluster.staging import staging_root, usable_bytes

    gpus, nvml_error = _nvml_gpus()
    try:
        shm = shutil.disk_usage("/dev/shm").total
    except OSError:
        shm = None
    root = staging_root(weights.staging_dir if weights is not None and weights.is_staged else None)
    return NodeProbe(
        node_id=node_id,
        hostname=socket.gethostname(),
        gpus=gpus,
        nvml_error=nvml_error,
        shm_bytes=shm,
        staging_root=str(root),
        staging_usable_bytes=usable_bytes(root),
        fabric_env={k: v for k, v in os.environ.items() if k.startswith(FABRIC_ENV_PREFIXES)}
        | ({"VLLM_HOST_IP": os.environ["VLLM_HOST_IP"]} if "VLLM_HOST_IP" in os.environ else {}),
        rdma_devices=tuple(sorted(p.name for p in _RDMA_DEVICES.glob("*"))),
    )


def _nvml_gpus() -> tuple[tuple[GpuProbe, ...], str | None]:
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception as error:  # no driver, no library: said in the report, not raised
        return (), f"{type(error).__name__}: {error}"
    try:
        gpus = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
            name = pynvml.nvmlDeviceGetName(handle)
            gpus.append(
                GpuProbe(
                    index=index,
                    name=name.decode() if isinstance(name, bytes) else name,
                    total_bytes=memory.total,
                    free_bytes=memory.free,
                )
            )
        return tuple(gpus), None
    finally:
        pynvml.nvmlShutdown()


def evaluate(
    layout: ReplicaLayout,
    nodes: Sequence[NodeResources],
    probes: Sequence[NodeProbe],
    weight_bytes: int | None,
    staged: Mapping[str, NodeResult] | None,
    gpu_memory_utilization: float,
    placement_error: str | None,
    placement_detail: str,
    min_shm_bytes: int = DEFAULT_MIN_SHM_BYTES,
) -> list[Check]:
    """Every check's row; nodes and probes are those of the layout's GPU type. `staged`: each
    probed node's staged copy by node id; None when the weights are not staged (used in place)."""
    checks = [_gpu_nodes(layout, nodes)]
    checks += _gpu_memory(layout, probes, gpu_memory_utilization)
    for probe in probes:
        node = probe.node_id[:12]
        copy = staged[probe.node_id] if staged is not None else None
        checks.append(_shm(node, probe, min_shm_bytes))
        checks.append(_staged(node, copy))
        checks.append(_disk(node, probe, weight_bytes, copy))
        checks.append(_fabric(node, probe, layout))
    checks.append(
        Check(
            check="placement group",
            node="cluster",
            status="FAIL" if placement_error else "PASS",
            detail=placement_error or placement_detail,
        )
    )
    return checks


def _gpu_nodes(layout: ReplicaLayout, nodes: Sequence[NodeResources]) -> Check:
    typed = [n for n in nodes if n.accelerator == layout.accelerator]
    needed = layout.pipeline_parallel_size if layout.spans_nodes else 1
    counts = ", ".join(f"{n.node_id[:12]} {n.gpus_total:g}" for n in typed) or "none"
    others = sorted(
        {n.accelerator for n in nodes if n.accelerator not in (None, layout.accelerator)}
    )
    detail = f"{len(typed)} {layout.accelerator} nodes (GPUs: {counts})" + (
        f"; other GPU types present, not used: {', '.join(others)}" if others else ""
    )
    per_node = layout.tensor_parallel_size if layout.spans_nodes else layout.workers
    big_enough = [n for n in typed if n.gpus_total >= per_node]
    if len(big_enough) < needed:
        return Check(
            check="GPU type and count",
            node="cluster",
            status="FAIL",
            detail=f"{layout.label} needs {needed} node(s) with >= {per_node} GPUs; {detail}",
        )
    odd = [n for n in typed if n.gpus_total != layout.gpus_per_node]
    status: Status = "WARN" if odd else "PASS"
    if odd:
        detail += f"; config says {layout.gpus_per_node} GPUs per node"
    return Check(check="GPU type and count", node="cluster", status=status, detail=detail)


def _gpu_memory(
    layout: ReplicaLayout, probes: Sequence[NodeProbe], utilization: float
) -> list[Check]:
    without = [p for p in probes if p.nvml_error is not None]
    checks = []
    if without:
        # Said once for every node without NVML, not once per node.
        checks.append(
            Check(
                check="GPU free memory (NVML)",
                node=", ".join(p.node_id[:12] for p in without),
                status="SKIP",
                detail=f"NVML not available ({without[0].nvml_error}): GPU model and free "
                "memory not checked there",
            )
        )
    for probe in probes:
        if probe.nvml_error is not None:
            continue
        short = [
            f"GPU {g.index} {g.free_bytes / _GIB:.1f}/{g.total_bytes / _GIB:.1f} GiB free"
            for g in probe.gpus
            if g.free_bytes < utilization * g.total_bytes
        ]
        names = sorted({g.name for g in probe.gpus})
        wrong_type = [n for n in names if layout.accelerator.lower() not in n.lower()]
        status: Status = "FAIL" if short else ("WARN" if wrong_type else "PASS")
        detail = (
            f"{len(probe.gpus)} x {', '.join(names) or 'no GPU'}; "
            + (
                f"below gpu_memory_utilization {utilization}: {'; '.join(short)}"
                if short
                else f"every GPU has >= {utilization:.0%} of its memory free"
            )
            + (f"; NVML names {wrong_type}, config says {layout.accelerator}" if wrong_type else "")
        )
        checks.append(
            Check(
                check="GPU free memory (NVML)",
                node=probe.node_id[:12],
                status=status,
                detail=detail,
            )
        )
    return checks


def _shm(node: str, probe: NodeProbe, min_shm_bytes: int) -> Check:
    if probe.shm_bytes is None:
        return Check(check="/dev/shm", node=node, status="FAIL", detail="/dev/shm is missing")
    ok = probe.shm_bytes >= min_shm_bytes
    return Check(
        check="/dev/shm",
        node=node,
        status="PASS" if ok else "FAIL",
        detail=f"{probe.shm_bytes / _GIB:.2f} GiB"
        + ("" if ok else f" < {min_shm_bytes / _GIB:.2f} GiB: NCCL needs a larger /dev/shm"),
    )


def _staged(node: str, copy: NodeResult | None) -> Check:
    # A replica refuses to start on a node without a complete copy, so "no" fails preflight.
    name = "weights staged and verified"
    if copy is None:
        return Check(
            check=name, node=node, status="SKIP", detail="not staged: the weights are used in place"
        )
    if copy.ok:
        return Check(check=name, node=node, status="PASS", detail=f"yes: {copy.detail}")
    return Check(
        check=name,
        node=node,
        status="FAIL",
        detail=f"no: {copy.detail}; run `python -m cluster stage <config>` first",
    )


def _disk(node: str, probe: NodeProbe, weight_bytes: int | None, copy: NodeResult | None) -> Check:
    if copy is not None and copy.ok:
        return Check(
            check="disk for weights", node=node, status="PASS", detail="the staged copy is there"
        )
    usable = probe.staging_usable_bytes
    if weight_bytes is None:
        return Check(
            check="disk for weights",
            node=node,
            status="SKIP",
            detail=f"weight size unknown (no catalog_id); {usable / 1e9:.1f} GB usable",
        )
    ok = usable >= weight_bytes
    return Check(
        check="disk for weights",
        node=node,
        status="PASS" if ok else "FAIL",
        detail=f"{probe.staging_root}: {usable / 1e9:.1f} GB usable "
        f"{'>=' if ok else '<'} {weight_bytes / 1e9:.1f} GB of weights (not staged yet)",
    )


def _fabric(node: str, probe: NodeProbe, layout: ReplicaLayout) -> Check:
    env = ", ".join(f"{k}={v}" for k, v in sorted(probe.fabric_env.items())) or "none set"
    rdma = ", ".join(probe.rdma_devices) or "none"
    detail = f"RDMA devices: {rdma}; fabric env: {env}"
    if not layout.spans_nodes:
        return Check(check="fabric / NCCL", node=node, status="PASS", detail=f"one node; {detail}")
    selects_fabric = any(k.startswith(_FABRIC_SELECTORS) for k in probe.fabric_env)
    if not probe.rdma_devices and not selects_fabric:
        return Check(
            check="fabric / NCCL",
            node=node,
            status="WARN",
            detail=f"{detail}: pipeline stages cross nodes and nothing selects an RDMA fabric; "
            "NCCL will fall back to TCP sockets (check NCCL_DEBUG=INFO for NET/IB or NET/OFI)",
        )
    if "VLLM_HOST_IP" not in probe.fabric_env:
        return Check(
            check="fabric / NCCL",
            node=node,
            status="WARN",
            detail=f"{detail}; VLLM_HOST_IP unset: set a per-node address outside Kubernetes",
        )
    return Check(check="fabric / NCCL", node=node, status="PASS", detail=detail)


def format_table(title: str, checks: Sequence[Check]) -> str:
    headers = ("CHECK", "NODE", "RESULT", "DETAIL")
    rows = [(c.check, c.node, c.status, c.detail) for c in checks]
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(3)]
    lines = [title]
    for row in [headers, *rows]:
        padded = [cell.ljust(width) for cell, width in zip(row, widths)]
        lines.append("  ".join([*padded, row[3]]))
    return "\n".join(lines)
