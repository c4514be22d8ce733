"""How long one replica takes to start: its weights read from each node's staged copy, plus the
engine's own initialization; and, for a node that has no staged copy yet, the fetch before it.

    cold start  = staged weight bytes per node / load bandwidth + engine init
    fetch       = checkpoint bytes / network bandwidth            (an unstaged node, first)

Every node of a replica loads at once, each its pipeline stage (about weights / PP); the TP ranks
of a node share its disk, so a node, not a GPU, is the unit. Staging copies the whole checkpoint
onto every node, so the fetch moves all of it.

The constants are measured (their `source` says where); the network figure is a line rate from
the catalog (cluster/data/gpus.yaml), so the fetch time is a floor: the Hub or an object store
usually serves slower than one scale-out NIC takes in. Pure: numbers in, an estimate out.
"""

from __future__ import annotations

import math
import re

from pydantic import Field

from cluster.catalog import Frozen, machine_types


class StartupConstants(Frozen):
    load_bytes_per_s: float = Field(gt=0, description="staged safetensors read into the engine")
    engine_init_s: float = Field(ge=0, description="everything but reading weights")
    source: str


# bench/cold_start/results.md (2026-11-29, AMD EPYC, 2 shared cores, vLLM 0.32 CPU, local model
# from its staged copy, page cache evicted, medians of 3): weight loading 269.1 MB in 0.64 s;
# `import vllm` 7.21 s + AsyncLLM build minus weight loading 18.25 s.
_MEASURED_LOAD_BYTES_PER_S = 420.4e6
CPU_STARTUP = StartupConstants(
    load_bytes_per_s=_MEASURED_LOAD_BYTES_PER_S,
    engine_init_s=7.21 + 18.25,
    source="measured: bench/cold_start",
)
# Engine init on a GPU: bench/gpu/results.md (one H200, vLLM 0.26): Serve deployed Qwen3-8B
# with load_format dummy (no weight reads) in 184.0 s in the latest run (bare vLLM compiling
# beside it on the same machine; 135.6 s and 179.8 s in earlier runs, 133.5 s alone, 115.1 s
# with a warm compile cache), torch.compile and CUDA graphs included. Load bandwidth: no GPU
# node measured yet, so the local-disk figure above; GPU nodes' NVMe is usually faster, which
# makes the estimate err long (the safe side for provisioning ahead). Cross-check: it predicts
# 1,302 s for Qwen3-235B BF16 (470 GB) on 8 GPUs, against 995 s in Ray's docs for that model
# from zero replicas on 8 x H100 (hardware.md).
GPU_STARTUP = StartupConstants(
    load_bytes_per_s=_MEASURED_LOAD_BYTES_PER_S,
    engine_init_s=184.0,
    source="measured: load bench/cold_start, engine init bench/gpu",
)


class ColdStartEstimate(Frozen):
    load_bytes_per_node: int
    load_bytes_per_s: float
    load_s: float
    engine_init_s: float
    total_s: float = Field(description="a replica's cold start on nodes holding a staged copy")
    fetch_bytes_per_node: int
    fetch_bytes_per_s: float | None = Field(description="line rate; None: no figure (CPU)")
    fetch_s: float | None = Field(description="floor of staging one node first; None: unknown")
    source: str


def estimate_cold_start(
    weight_bytes: int, pipeline_parallel_size: int, accelerator: str
) -> ColdStartEstimate:
    """A replica of `weight_bytes` of weights over `pipeline_parallel_size` nodes of `accelerator`
    (a GPU type id, or CPU)."""
    constants = CPU_STARTUP if accelerator == "CPU" else GPU_STARTUP
    per_node = math.ceil(weight_bytes / pipeline_parallel_size)
    load_s = per_node / constants.load_bytes_per_s
    network = None if accelerator == "CPU" else network_bytes_per_s(accelerator)
    return ColdStartEstimate(
        load_bytes_per_node=per_node,
        load_bytes_per_s=constants.load_bytes_per_s,
        load_s=round(load_s, 1),
        engine_init_s=constants.engine_init_s,
        total_s=round(load_s + constants.engine_init_s, 1),
        fetch_bytes_per_node=weight_bytes,
        fetch_bytes_per_s=network,
        fetch_s=round(weight_bytes / network, 1) if network else None,
        source=constants.source,
    )


def network_bytes_per_s(gpu_id: str) -> float | None:
    """The slowest scale-out line rate per GPU among the catalog's machines of `gpu_id`, i.e. one
    NIC, in bytes per second; None when the catalog has no machine of that GPU."""
    rates = [_gbit_per_s(m.scale_out_per_gpu) for m in machine_types(gpu_id)]
    return min(rates) * 1e9 / 8 if rates else None


def describe(estimate: ColdStartEstimate) -> str:
    """One line for people: the sum, its parts, and the fetch an unstaged node adds."""
    text = (
        f"~{estimate.total_s:,.0f} s per replica = {estimate.load_bytes_per_node / 1e9:.1f} GB "
        f"per node / {estimate.load_bytes_per_s / 1e9:.2f} GB/s + {estimate.engine_init_s:.0f} s "
        f"engine init ({estimate.source})"
    )
    if estimate.fetch_s is None:
        return text
    return text + (
        f"; an unstaged node first fetches {estimate.fetch_bytes_per_node / 1e9:.1f} GB: "
        f">= {estimate.fetch_s:,.0f} s at {estimate.fetch_bytes_per_s * 8 / 1e9:g} Gb/s line rate"
    )


def _gbit_per_s(text: str) -> float:
    # "400 Gb/s EFA", "~100-200 Gb/s (TCPX/TCPXO)": the first (lower) number of a range.
    found = re.search(r"(\d+(?:\.\d+)?)(?:-\d+(?:\.\d+)?)?\s*Gb/s", text)
    if found is None:
        raise ValueError(f"no Gb/s figure in {text!r}")
    return float(found[1])
