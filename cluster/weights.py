"""Bytes of a model's weights: which checkpoint a precision means, the total, and each GPU's share.

The parameter count is rebuilt from the architecture, piece by piece, and each piece is split
the way vLLM shards it over tensor-parallel (TP) ranks:

* sharded over TP: q/o projections, MLA up-projections (q_b, kv_b), MLP and expert weights
  (experts are TP-sharded, not expert-parallel), embeddings and LM head (vocab-parallel);
* K/V projections: each rank holds max(1, kv_heads // TP) heads, so beyond TP = kv_heads they
  are replicated, like the KV cache;
* replicated on every rank: MLA down-projections (q_a, kv_a; vLLM builds them with TP disabled),
  norms, MoE routers.

A pipeline-parallel (PP) stage holds its layers, plus the embedding (and vision encoder) on the
first stage and the LM head on the last. The rebuilt total equals the catalog's `params.total` for
every model (a test checks this, which also guards the architecture numbers in the catalog).

Where the catalog knows a checkpoint's exact size, per-GPU shares are scaled to it, so quantization
scales and other small tensors the rebuild ignores are spread over the GPUs in proportion.
"""

from __future__ import annotations

from typing import Literal

from cluster.catalog import Checkpoint, Frozen, ModelSpec, Precision, QkNorm

NATIVE = "native"

# AWQ/GPTQ default group: one bf16 scale per 128 weights.
_DEFAULT_INT4_GROUP = 128
# NVFP4: 4-bit values with one fp8 scale per 16 values.
_NVFP4_BYTES_PER_WEIGHT = 0.5 + 1 / 16


class PrecisionNotAvailableError(ValueError):
    """The requested precision makes no sense for this model (it would not be smaller than the
    native checkpoint and no checkpoint at that precision is known)."""


class WeightFormat(Frozen):
    """The weights a plan loads: a known checkpoint, or the model quantized to a precision."""

    precision: Precision
    checkpoint: Checkpoint | None = None
    linear_bytes_per_param: float
    expert_bytes_per_param: float

    @property
    def exact_total_bytes(self) -> int | None:
        return self.checkpoint.weight_bytes if self.checkpoint else None

    @property
    def fp8_weight_block(self) -> tuple[int, int] | None:
        return self.checkpoint.fp8_weight_block if self.checkpoint else None

    @property
    def description(self) -> str:
        if self.checkpoint is None:
            how = (
                "vLLM --quantization fp8 on the bf16 checkpoint"
                if self.precision is Precision.FP8
                else "no published checkpoint known: quantize it yourself"
            )
            return f"{self.precision} ({how}; size estimated)"
        size = "exact size" if self.checkpoint.weight_bytes else "size estimated"
        return f"{self.precision} checkpoint {self.checkpoint.hf_repo} ({size})"


class ShardParams(Frozen):
    """Parameters one TP rank holds, grouped by how a quantization scheme stores them."""

    linear: float = 0.0  # attention, dense MLP and shared-expert linears
    routed_experts: float = 0.0
    unquantized: float = 0.0  # embeddings, head, norms, biases, routers, vision encoder: bf16

    def __add__(self, other: ShardParams) -> ShardParams:
        return ShardParams(
            linear=self.linear + other.linear,
            routed_experts=self.routed_experts + other.routed_experts,
            unquantized=self.unquantized + other.unquantized,
        )

    @property
    def total(self) -> float:
        return self.linear + self.routed_experts + self.unquantized

    def bytes_in(self, weights: WeightFormat) -> float:
        return (
            self.linear * weights.linear_bytes_per_param
            + self.routed_experts * weights.expert_bytes_per_param
            + self.unquantized * 2
        )


def weight_format(model: ModelSpec, precision: Precision | Literal["native"]) -> WeightFormat:
    """The weights `precision` means for `model`: its native checkpoint, a published checkpoint
    at that precision, or (only when it is smaller than native) the model quantized to it."""
    if precision == NATIVE:
        return _format_of(model.native_checkpoint)
    precision = Precision(precision)
    for checkpoint in model.checkpoints:
        if checkpoint.precision is precision:
            return _format_of(checkpoint)
    native = model.native_checkpoint.precision
    if precision.bits >= native.bits:
        known = ", ".join(f"{c.precision} ({c.hf_repo})" for c in model.checkpoints)
        raise PrecisionNotAvailableError(
            f"{model.id} ships {native} weights natively; {precision} would not be smaller and "
            f"no {precision} checkpoint is known (known: {known})"
        )
    per_param = _bytes_per_quantized_param(precision, fp8_block=None, int4_group=None)
    return WeightFormat(
        precision=precision, linear_bytes_per_param=per_param, expert_bytes_per_param=per_param
    )


def layer_params(model: ModelSpec, layer: int, tensor_parallel_size: int) -> ShardParams:
    """The parameters of decoder layer `layer` that one of `tensor_parallel_size` ranks holds."""
    tp = tensor_parallel_size
    hidden = model.hidden_size
    params = _attention_params(model, tp) + ShardParams(unquantized=2 * hidden)  # two RMSNorms
    if layer < model.dense_layers:
        return params + ShardParams(linear=3 * hidden * model.intermediate_size / tp)
    moe = model.moe
    assert moe is not None
    expert = 3 * hidden * moe.moe_intermediate_size  # gate, up, down
    router = moe.num_routed_experts * hidden + (
        moe.num_routed_experts if moe.router_has_bias else 0
    )
    return params + ShardParams(
        linear=moe.num_shared_experts * expert / tp,
        routed_experts=moe.num_routed_experts * expert / tp,
        unquantized=router,
    )


def stage_params(
    model: ModelSpec, layers: range, tensor_parallel_size: int, *, first: bool, last: bool
) -> ShardParams:
    """Parameters one TP rank of a pipeline stage holds: its layers plus the stage's extras."""
    tp = tensor_parallel_size
    params = ShardParams()
    for layer in layers:
        params += layer_params(model, layer, tp)
    table = model.vocab_size * model.hidden_size / tp
    if first:
        params += ShardParams(unquantized=table + model.params.vision / tp)
    if last:
        # A tied head reuses the embedding, unless the embedding sits on another stage.
        head = 0 if (model.tie_word_embeddings and first) else table
        params += ShardParams(unquantized=head + model.hidden_size)  # + final norm
    return params


def total_params(model: ModelSpec) -> int:
    """Decoder, embeddings and head, rebuilt from the architecture (vision encoder excluded)."""
    whole = stage_params(model, range(model.num_hidden_layers), 1, first=True, last=True)
    return round(whole.total) - model.params.vision


def total_weight_bytes(model: ModelSpec, weights: WeightFormat) -> int:
    """Bytes of all weights vLLM loads (vision encoder included, MTP layers not)."""
    if weights.exact_total_bytes:
        return weights.exact_total_bytes
    whole = stage_params(model, range(model.num_hidden_layers), 1, first=True, last=True)
    return round(whole.bytes_in(weights))


def stage_weight_bytes_per_gpu(
    model: ModelSpec,
    weights: WeightFormat,
    layers: range,
    tensor_parallel_size: int,
    *,
    first: bool,
    last: bool,
) -> int:
    """Bytes of weights on each GPU of a pipeline stage."""
    estimate = stage_params(model, layers, tensor_parallel_size, first=first, last=last).bytes_in(
        weights
    )
    if weights.exact_total_bytes:
        whole = stage_params(model, range(model.num_hidden_layers), 1, first=True, last=True)
        estimate *= weights.exact_total_bytes / whole.bytes_in(weights)
    return round(estimate)


def _format_of(checkpoint: Checkpoint) -> WeightFormat:
    per_param = _bytes_per_quantized_param(
        checkpoint.precision, checkpoint.fp8_weight_block, checkpoint.int4_group_size
    )
    only_experts = checkpoint.quantized_parts == "routed_experts"
    return WeightFormat(
        precision=checkpoint.precision,
        checkpoint=checkpoint,
        linear_bytes_per_param=2.0 if only_experts else per_param,
        expert_bytes_per_param=per_param,
    )


def _bytes_per_quantized_param(
    precision: Precision, fp8_block: tuple[int, int] | None, int4_group: int | None
) -> float:
    if precision is Precision.BF16:
        return 2.0
    if precision is Precision.FP8:
        # Block-quantized checkpoints carry one fp32 scale per block.
        return 1.0 + (4 / (fp8_block[0] * fp8_block[1]) if fp8_block else 0.0)
    if precision is Precision.INT4:
        # One bf16 scale per group of weights.
        return 0.5 + 2 / (int4_group or _DEFAULT_INT4_GROUP)
    return _NVFP4_BYTES_PER_WEIGHT


def _attention_params(model: ModelSpec, tp: int) -> ShardParams:
    hidden, heads = model.hidden_size, model.num_attention_heads
    if model.mla is not None:
        mla = model.mla
        down = hidden * mla.q_lora_rank + hidden * (mla.kv_lora_rank + mla.qk_rope_head_dim)
        up = (
            mla.q_lora_rank * heads * mla.qk_head_dim
            + mla.kv_lora_rank * heads * (mla.qk_nope_head_dim + mla.v_head_dim)
            + heads * mla.v_head_dim * hidden
        )
        return ShardParams(linear=down + up / tp, unquantized=mla.q_lora_rank + mla.kv_lora_rank)
    head_dim, kv_heads = model.head_dim, model.num_key_value_heads
    assert head_dim is not None
    kv_share = max(1, kv_heads // tp) / kv_heads
    q_and_o = 2 * hidden * heads * head_dim
    k_and_v = 2 * hidden * kv_heads * head_dim
    bias = (heads * head_dim / tp + 2 * kv_heads * head_dim * kv_share) if model.qkv_bias else 0
    qk_norm = {
        QkNorm.NONE: 0,
        QkNorm.PER_HEAD: 2 * head_dim,
        QkNorm.FULL: (heads + kv_heads) * head_dim,
    }[model.qk_norm]
    return ShardParams(linear=q_and_o / tp + k_and_v * kv_share, unquantized=bias + qk_norm)
