"""Choose how one replica of a model is laid out over GPUs, and say why.

A layout is tensor parallelism (TP) inside a node times pipeline parallelism (PP) stages. Rules:

* TP divides num_attention_heads, divides or is a multiple of num_key_value_heads (GQA), and
  divides the MLP widths, as vLLM requires. For a block-quantized FP8 checkpoint every TP shard
  of intermediate_size and moe_intermediate_size holds whole 128-wide blocks. TP <= GPUs per node:
  TP all-reduces every layer, which only NVLink-class links sustain.
* A replica takes a divisor of a node's GPUs (so replicas tile a node) or whole nodes. Across
  nodes, every TP group stays inside one node; only PP stages cross the scale-out fabric.
* PP splits layers as vLLM does (evenly, the remainder to the middle stages); a split whose
  largest stage is more than 10% over the mean is rejected: the other stages would wait on it.
* A layout fits when, on every GPU, weights + runtime reserve + the KV cache of `concurrency`
  sequences of `context` tokens <= gpu_memory_utilization x GPU memory.
* The fewest GPUs that fit wins. For equal GPUs: the largest TP on NVLink/xGMI (no pipeline
  bubbles), the largest PP on PCIe-only GPUs (a TP all-reduce over PCIe is slow).

Everything here is pure: catalog facts in, a Plan (or an InfeasiblePlanError naming the smallest
layout that would fit) out.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field

from cluster.catalog import (
    AttentionKind,
    Frozen,
    GpuType,
    ModelSpec,
    Precision,
    get_gpu,
    get_model,
    gpus,
    machine_types,
)
from cluster.cold_start import ColdStartEstimate, estimate_cold_start
from cluster.kv_cache import (
    KvCacheDtype,
    kv_bytes_per_token,
    kv_bytes_per_token_per_layer,
    kv_cache_capacity,
    kv_heads_per_rank,
)
from cluster.runtime_reserve import runtime_reserve_bytes
from cluster.weights import (
    WeightFormat,
    stage_weight_bytes_per_gpu,
    total_weight_bytes,
    weight_format,
)

_MAX_STAGE_IMBALANCE = 1.10
# How far past max_nodes an infeasible plan looks for the node count that would fit.
_NODE_SEARCH_LIMIT = 64
_GB = 1e9


class PlanRequest(Frozen):
    model: str = Field(description="catalog id or alias, e.g. kimi-k2.5")
    gpu: str = Field(description="GPU type id, e.g. H200")
    gpus_per_node: int = Field(default=8, ge=1)
    precision: Precision | Literal["native"] = "native"
    context: int = Field(
        default=32768, ge=1, description="tokens per sequence, prompt and output (max_model_len)"
    )
    concurrency: int = Field(
        default=16, ge=1, description="sequences of `context` tokens held at once per replica"
    )
    gpu_memory_utilization: float = Field(default=0.90, gt=0, le=1)
    kv_cache_dtype: KvCacheDtype = "auto"
    max_num_batched_tokens: int = Field(
        default=8192, ge=1, description="vLLM's default on H100/H200 for serving"
    )
    block_size: int = Field(default=16, ge=1)
    max_nodes: int = Field(default=8, ge=1, description="largest replica considered, in nodes")


class Layout(Frozen):
    tensor_parallel_size: int
    pipeline_parallel_size: int
    gpus_per_node: int

    @property
    def gpus(self) -> int:
        return self.tensor_parallel_size * self.pipeline_parallel_size

    @property
    def nodes(self) -> int:
        return math.ceil(self.gpus / self.gpus_per_node)

    @property
    def label(self) -> str:
        gpus = f"{self.gpus} GPUs" if self.gpus > 1 else "1 GPU"
        nodes = f"{self.nodes} nodes" if self.nodes > 1 else "1 node"
        return f"TP{self.tensor_parallel_size} x PP{self.pipeline_parallel_size} ({gpus}, {nodes})"


class StageMemory(Frozen):
    """One GPU of a pipeline stage (all GPUs of a stage are alike)."""

    num_layers: int
    weights_bytes: int
    reserve_bytes: int
    kv_cache_bytes: int
    kv_bytes_per_sequence: int
    max_concurrency: float
    kv_cache_tokens: int


class LayoutEvaluation(Frozen):
    layout: Layout
    usable_bytes: int
    stages: tuple[StageMemory, ...]

    @property
    def binding_stage(self) -> StageMemory:
        return min(self.stages, key=lambda s: s.max_concurrency)

    @property
    def max_concurrent_sequences(self) -> int:
        return max(0, math.floor(self.binding_stage.max_concurrency))

    def shortfall_bytes(self, concurrency: int) -> int:
        """Memory per GPU the worst stage lacks for weights, reserve and `concurrency` sequences."""
        return max(
            max(0, concurrency * stage.kv_bytes_per_sequence - stage.kv_cache_bytes)
            for stage in self.stages
        )

    def why_not(self, request: PlanRequest) -> str:
        short = _gb(self.shortfall_bytes(request.concurrency))
        heaviest = min(self.stages, key=lambda s: s.kv_cache_bytes)
        if heaviest.kv_cache_bytes <= 0:
            used = heaviest.weights_bytes + heaviest.reserve_bytes
            return (
                f"{self.layout.label}: {_gb(heaviest.weights_bytes)} weights + "
                f"{_gb(heaviest.reserve_bytes)} reserve = {_gb(used)} per GPU exceed "
                f"{_gb(self.usable_bytes)} usable "
                f"({short} short per GPU with the KV cache)"
            )
        stage = self.binding_stage
        return (
            f"{self.layout.label}: {_gb(stage.kv_cache_bytes)} KV cache per GPU holds "
            f"{self.max_concurrent_sequences} sequences of {request.context:,} tokens, "
            f"{request.concurrency} wanted ({short} short per GPU)"
        )


class Plan(Frozen):
    model_id: str
    model_name: str
    gpu: str
    ray_accelerator_type: str
    gpus_per_node: int
    machine_types: tuple[str, ...]

    precision: Precision
    checkpoint: str | None = Field(
        description="HF repo to load; None when no checkpoint at this precision is known"
    )
    weights_estimated: bool
    weights_description: str

    tensor_parallel_size: int
    pipeline_parallel_size: int
    nodes: int
    gpus_per_replica: int
    layers_per_stage: tuple[int, ...]

    context: int
    concurrency: int
    max_num_seqs: int = Field(description="set vLLM's max_num_seqs to this: the reserve assumes it")
    max_num_batched_tokens: int
    gpu_memory_utilization: float
    kv_cache_dtype: KvCacheDtype

    usable_memory_per_gpu_gb: float
    weights_total_gb: float
    weights_per_gpu_gb: float = Field(description="the heaviest stage")
    reserve_per_gpu_gb: float
    kv_cache_per_gpu_gb: float = Field(description="the binding stage")
    kv_bytes_per_token: int = Field(
        description="whole model on one GPU, every layer caching every token"
    )
    kv_bytes_per_token_per_gpu: int = Field(
        description="binding stage under this TP, every layer caching every token"
    )
    kv_bytes_per_sequence_per_gpu: int = Field(
        description="one sequence of `context` tokens, sliding windows applied"
    )
    kv_cache_tokens: int = Field(description="per replica, as vLLM reports it")
    max_concurrent_sequences: int = Field(
        description="sequences of `context` tokens the KV cache holds"
    )

    cold_start: ColdStartEstimate = Field(
        description="a replica's start on nodes with a staged copy, and the fetch before it"
    )
    reasons: tuple[str, ...]
    unverified_facts: tuple[str, ...]


class Infeasibility(Frozen):
    model_id: str
    gpu: str
    message: str
    closest: str
    shortfall_per_gpu_gb: float
    alternatives: tuple[Plan, ...] = Field(
        description="smallest fitting layouts: more nodes, other GPUs"
    )


class InfeasiblePlanError(ValueError):
    def __init__(self, infeasibility: Infeasibility):
        super().__init__(infeasibility.message)
        self.infeasibility = infeasibility


def plan(request: PlanRequest) -> Plan:
    """The smallest layout of `request.model` on `request.gpu` that holds the target load.

    Raises CatalogLookupError (unknown model or GPU), PrecisionNotAvailableError, ValueError
    (context beyond the model's maximum) or InfeasiblePlanError."""
    model = get_model(request.model)
    gpu = get_gpu(request.gpu)
    if request.context > model.max_position_embeddings:
        raise ValueError(
            f"context {request.context:,} exceeds {model.id}'s max_position_embeddings "
            f"{model.max_position_embeddings:,}"
        )
    weights = weight_format(model, request.precision)
    found, tried = _search(model, weights, gpu, request)
    if found is None:
        raise InfeasiblePlanError(_infeasibility(model, weights, gpu, request, tried))
    return found


def tensor_parallel_problem(model: ModelSpec, weights: WeightFormat, tp: int) -> str | None:
    """Why vLLM cannot shard `model` over `tp` ranks, or None when it can."""
    if model.num_attention_heads % tp:
        return f"{model.num_attention_heads} attention heads do not split over {tp}"
    kv = model.num_key_value_heads
    if model.attention is not AttentionKind.MLA and kv % tp and tp % kv:
        return f"{kv} KV heads neither split over {tp} nor replicate evenly"
    widths = {"moe_intermediate_size": model.moe.moe_intermediate_size} if model.moe else {}
    if model.dense_layers:
        widths["intermediate_size"] = model.intermediate_size
    for name, width in widths.items():
        if width % tp:
            return f"{name} {width} does not split over {tp}"
        block = weights.fp8_weight_block
        if block and (width // tp) % block[0]:
            return (
                f"FP8 {block[0]}x{block[1]} blocks: {name} {width}/{tp} = {width // tp} is not a "
                f"multiple of {block[0]} (--enable-expert-parallel lifts this; not planned here)"
            )
    return None


def pipeline_stage_layers(num_layers: int, pipeline_parallel_size: int) -> tuple[range, ...]:
    """vLLM's split (distributed.utils.get_pp_indices): equal stages, the remainder going one layer
    each to the stages just before the last."""
    sizes = [num_layers // pipeline_parallel_size] * pipeline_parallel_size
    for i in range(2, num_layers % pipeline_parallel_size + 2):
        sizes[-i] += 1
    starts = [sum(sizes[:i]) for i in range(pipeline_parallel_size)]
    return tuple(range(start, start + size) for start, size in zip(starts, sizes, strict=True))


def candidate_layouts(
    model: ModelSpec, weights: WeightFormat, gpu: GpuType, gpus_per_node: int, max_nodes: int
) -> list[Layout]:
    """Valid layouts, smallest first, in order of preference among equal sizes."""
    tensor_sizes = [
        tp
        for tp in range(1, gpus_per_node + 1)
        if tensor_parallel_problem(model, weights, tp) is None
    ]
    tensor_sizes.sort(reverse=gpu.peer_link != "pcie")
    replica_sizes = [n for n in range(1, gpus_per_node + 1) if gpus_per_node % n == 0]
    replica_sizes += [gpus_per_node * nodes for nodes in range(2, max_nodes + 1)]
    layouts = []
    for size in replica_sizes:
        for tp in tensor_sizes:
            if size % tp or (size > gpus_per_node and gpus_per_node % tp):
                continue
            pp = size // tp
            if (
                pp > model.num_hidden_layers
                or _stage_imbalance(model.num_hidden_layers, pp) > _MAX_STAGE_IMBALANCE
            ):
                continue
            layouts.append(
                Layout(
                    tensor_parallel_size=tp, pipeline_parallel_size=pp, gpus_per_node=gpus_per_node
                )
            )
    return layouts


def evaluate_layout(
    model: ModelSpec, weights: WeightFormat, gpu: GpuType, layout: Layout, request: PlanRequest
) -> LayoutEvaluation:
    """Memory of every stage of `layout`, and how many target sequences its KV cache holds."""
    usable = int(request.gpu_memory_utilization * gpu.memory_bytes)
    tp = layout.tensor_parallel_size
    stage_layers = pipeline_stage_layers(model.num_hidden_layers, layout.pipeline_parallel_size)
    stages = []
    for index, layers in enumerate(stage_layers):
        weights_bytes = stage_weight_bytes_per_gpu(
            model, weights, layers, tp, first=index == 0, last=index == len(stage_layers) - 1
        )
        reserve = runtime_reserve_bytes(
            model,
            tp,
            layers,
            max_num_batched_tokens=request.max_num_batched_tokens,
            max_num_seqs=request.concurrency,
        )
        kv_cache_bytes = usable - weights_bytes - reserve
        capacity = kv_cache_capacity(
            model,
            max(0, kv_cache_bytes),
            max_model_len=request.context,
            layers=layers,
            tensor_parallel_size=tp,
            kv_cache_dtype=request.kv_cache_dtype,
            block_size=request.block_size,
            max_num_batched_tokens=request.max_num_batched_tokens,
        )
        stages.append(
            StageMemory(
                num_layers=len(layers),
                weights_bytes=weights_bytes,
                reserve_bytes=reserve,
                kv_cache_bytes=kv_cache_bytes,
                kv_bytes_per_sequence=capacity.bytes_per_sequence,
                max_concurrency=capacity.max_concurrency,
                kv_cache_tokens=capacity.tokens,
            )
        )
    return LayoutEvaluation(layout=layout, usable_bytes=usable, stages=tuple(stages))


def _search(
    model: ModelSpec, weights: WeightFormat, gpu: GpuType, request: PlanRequest
) -> tuple[Plan | None, list[LayoutEvaluation]]:
    """The first candidate layout that fits, and the evaluations of those tried before it."""
    tried: list[LayoutEvaluation] = []
    for layout in candidate_layouts(model, weights, gpu, request.gpus_per_node, request.max_nodes):
        evaluation = evaluate_layout(model, weights, gpu, layout, request)
        if evaluation.max_concurrent_sequences >= request.concurrency:
            return _plan_from(model, weights, gpu, evaluation, request, tried), tried
        tried.append(evaluation)
    return None, tried


def _plan_from(
    model: ModelSpec,
    weights: WeightFormat,
    gpu: GpuType,
    chosen: LayoutEvaluation,
    request: PlanRequest,
    tried: list[LayoutEvaluation],
) -> Plan:
    layout = chosen.layout
    binding = chosen.binding_stage
    tp = layout.tensor_parallel_size
    total_weights = total_weight_bytes(model, weights)
    reasons = [
        f"weights: {_gb(total_weights)} as {weights.description}",
        _tensor_parallel_reason(model, weights, request.gpus_per_node),
        *(f"too small: {evaluation.why_not(request)}" for evaluation in tried),
        _chosen_reason(chosen, request, gpu),
        _kv_reason(model, request, tp),
    ]
    if layout.nodes > 1:
        fabrics = sorted({m.scale_out_per_gpu for m in machine_types(gpu.id)})
        reasons.append(
            f"{layout.nodes} nodes: TP stays on {gpu.peer_link_description} inside each node, "
            f"PP stages cross the scale-out fabric ({'; '.join(fabrics) or 'RDMA'} per GPU): keep "
            "the replica in one zone and placement group with GPUDirect RDMA, or NCCL falls back "
            "to TCP"
        )
    if model.unverified_facts:
        reasons.append(
            f"unverified catalog facts for {model.id}: {', '.join(model.unverified_facts)}"
        )
    return Plan(
        model_id=model.id,
        model_name=model.name,
        gpu=gpu.id,
        ray_accelerator_type=gpu.ray_accelerator_type,
        gpus_per_node=request.gpus_per_node,
        machine_types=tuple(
            f"{m.cloud} {m.instance_type}"
            for m in machine_types(gpu.id)
            if m.gpus == request.gpus_per_node
        ),
        precision=weights.precision,
        checkpoint=weights.checkpoint.hf_repo if weights.checkpoint else None,
        weights_estimated=weights.exact_total_bytes is None,
        weights_description=weights.description,
        tensor_parallel_size=tp,
        pipeline_parallel_size=layout.pipeline_parallel_size,
        nodes=layout.nodes,
        gpus_per_replica=layout.gpus,
        layers_per_stage=tuple(stage.num_layers for stage in chosen.stages),
        context=request.context,
        concurrency=request.concurrency,
        max_num_seqs=request.concurrency,
        max_num_batched_tokens=request.max_num_batched_tokens,
        gpu_memory_utilization=request.gpu_memory_utilization,
        kv_cache_dtype=request.kv_cache_dtype,
        usable_memory_per_gpu_gb=_round_gb(chosen.usable_bytes),
        weights_total_gb=_round_gb(total_weights),
        weights_per_gpu_gb=_round_gb(max(s.weights_bytes for s in chosen.stages)),
        reserve_per_gpu_gb=_round_gb(max(s.reserve_bytes for s in chosen.stages)),
        kv_cache_per_gpu_gb=_round_gb(binding.kv_cache_bytes),
        kv_bytes_per_token=kv_bytes_per_token(model, request.kv_cache_dtype),
        kv_bytes_per_token_per_gpu=binding.num_layers
        * kv_bytes_per_token_per_layer(model, tp, request.kv_cache_dtype),
        kv_bytes_per_sequence_per_gpu=binding.kv_bytes_per_sequence,
        kv_cache_tokens=min(s.kv_cache_tokens for s in chosen.stages),
        max_concurrent_sequences=chosen.max_concurrent_sequences,
        cold_start=estimate_cold_start(total_weights, layout.pipeline_parallel_size, gpu.id),
        reasons=tuple(reasons),
        unverified_facts=model.unverified_facts,
    )


def _tensor_parallel_reason(model: ModelSpec, weights: WeightFormat, gpus_per_node: int) -> str:
    sizes = range(1, gpus_per_node + 1)
    allowed = [tp for tp in sizes if tensor_parallel_problem(model, weights, tp) is None]
    rejected = [
        f"TP{tp}: {tensor_parallel_problem(model, weights, tp)}"
        for tp in sizes
        if tp not in allowed and gpus_per_node % tp == 0
    ]
    text = f"TP sizes up to {gpus_per_node} GPUs per node: {', '.join(map(str, allowed))}"
    return text + (f" (not {'; '.join(rejected)})" if rejected else "")


def _chosen_reason(chosen: LayoutEvaluation, request: PlanRequest, gpu: GpuType) -> str:
    binding = chosen.binding_stage
    layers = "/".join(str(s.num_layers) for s in chosen.stages)
    return (
        f"chosen {chosen.layout.label}, layers per stage {layers}: per GPU "
        f"{_gb(chosen.usable_bytes)} usable "
        f"({request.gpu_memory_utilization:.2f} x {gpu.memory_gb:g} GB) = "
        f"{_gb(binding.weights_bytes)} weights + {_gb(binding.reserve_bytes)} reserve + "
        f"{_gb(binding.kv_cache_bytes)} KV cache, holding {chosen.max_concurrent_sequences} "
        f"sequences of {request.context:,} tokens ({request.concurrency} wanted)"
    )


def _kv_reason(model: ModelSpec, request: PlanRequest, tp: int) -> str:
    per_layer = kv_bytes_per_token_per_layer(model, tp, request.kv_cache_dtype)
    if model.mla is not None:
        text = (
            f"MLA: every TP rank caches the full {model.mla.cached_width}-wide latent "
            f"({per_layer:,} B per token and layer), so TP does not shrink the KV cache; PP does"
        )
    else:
        heads = kv_heads_per_rank(model, tp)
        text = (
            f"{model.attention.upper()}: {heads} of {model.num_key_value_heads} KV heads "
            f"per GPU at TP{tp}"
        )
        if tp > model.num_key_value_heads:
            text += " (TP beyond the KV heads replicates them: no further KV saving)"
    if model.sliding_window is not None:
        window = model.sliding_window
        text += (
            f"; sliding window {window.window} on all but every "
            f"{window.full_attention_every}th layer: vLLM's hybrid KV cache manager keeps only the "
            "window (plus one batch in flight) there"
        )
    return text


def _infeasibility(
    model: ModelSpec,
    weights: WeightFormat,
    gpu: GpuType,
    request: PlanRequest,
    tried: list[LayoutEvaluation],
) -> Infeasibility:
    alternatives = _alternatives(model, weights, gpu, request)
    closest = min(tried, key=lambda e: e.shortfall_bytes(request.concurrency), default=None)
    closest_text = closest.why_not(request) if closest else "no valid TP/PP layout on these nodes"
    shortfall = closest.shortfall_bytes(request.concurrency) if closest else 0
    fits = "; ".join(
        f"{p.nodes} x {p.gpus_per_node} {p.gpu} as "
        f"TP{p.tensor_parallel_size} x PP{p.pipeline_parallel_size}"
        for p in alternatives
    )
    nodes = f"{request.max_nodes} node{'s' if request.max_nodes > 1 else ''}"
    message = (
        f"{model.id} ({_gb(total_weight_bytes(model, weights))} of {weights.precision} weights) "
        f"does not fit {nodes} of {request.gpus_per_node} {gpu.id} for {request.concurrency} "
        f"sequences of {request.context:,} tokens. Closest: {closest_text}. "
        + (
            f"Smallest layouts that fit: {fits}."
            if fits
            else f"Nothing fits in {_NODE_SEARCH_LIMIT} nodes of {gpu.id} or {nodes} of other GPUs."
        )
    )
    return Infeasibility(
        model_id=model.id,
        gpu=gpu.id,
        message=message,
        closest=closest_text,
        shortfall_per_gpu_gb=_round_gb(shortfall),
        alternatives=alternatives,
    )


def _alternatives(
    model: ModelSpec, weights: WeightFormat, gpu: GpuType, request: PlanRequest
) -> tuple[Plan, ...]:
    """The same GPU with more nodes, and every other GPU type within max_nodes; smallest first."""
    attempts = [(gpu, request.model_copy(update={"max_nodes": _NODE_SEARCH_LIMIT}))] + [
        (other, request.model_copy(update={"gpu": other.id}))
        for other in gpus()
        if other.id != gpu.id
    ]
    found = [_search(model, weights, g, r)[0] for g, r in attempts]
    return tuple(
        sorted((p for p in found if p is not None), key=lambda p: (p.gpus_per_replica, p.gpu))
    )


def _stage_imbalance(num_layers: int, pipeline_parallel_size: int) -> float:
    largest = max(len(stage) for stage in pipeline_stage_layers(num_layers, pipeline_parallel_size))
    return largest / (num_layers / pipeline_parallel_size)


def _gb(num_bytes: float) -> str:
    return f"{num_bytes / _GB:.1f} GB"


def _round_gb(num_bytes: float) -> float:
    return round(num_bytes / _GB, 2)
