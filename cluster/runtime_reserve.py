"""GPU memory vLLM keeps for itself besides weights and KV cache.

vLLM sizes the KV cache as gpu_memory_utilization x GPU memory minus what a profiling run
consumed: the weights, the activation peak of one forward pass over max_num_batched_tokens
tokens, a dummy sampler pass over max_num_seqs sequences, memory outside PyTorch's allocator
(CUDA context, NCCL and cuBLAS workspaces) and, since vLLM 0.21, the CUDA-graph pool. The planner
estimates everything but the weights as

    reserve = 2 GiB                                          fixed: context, workspaces, graph pool
            + max_num_batched_tokens x 2 B x (4 x hidden + mlp_width)     activations (bf16)
            + 2 x max_num_seqs x vocab x 4 B                 fp32 logits and probabilities

where mlp_width is what one TP rank materialises per token in the widest layer: gate, up and
their product for a dense MLP (3 x intermediate / TP); the fused-MoE buffers for an MoE layer
(top_k x (3 x moe_intermediate / TP + hidden)). 4 x hidden covers the residual stream, norm
output and attention input/output.

The fixed 2 GiB is an estimate, not a measurement. Check against the one published data point:
the Kimi-K2-Thinking recipe (same text backbone as Kimi K2.5) reports 715,072 KV tokens at TP8 on
8x H200. With this reserve (3.7 GB at max_num_seqs 16, 5.0 GB at vLLM's default 1024) the planner
predicts 667,696 and 648,896 tokens: 7% and 9% under, the safe side (it also counts the H200 as
the vendor's 141 GB where CUDA reports 150 GB).
"""

from __future__ import annotations

from cluster.catalog import ModelSpec

FIXED_OVERHEAD_BYTES = 2 * 1024**3
_ACTIVATION_BYTES = 2
_LOGIT_BYTES = 4


def runtime_reserve_bytes(
    model: ModelSpec,
    tensor_parallel_size: int,
    layers: range,
    *,
    max_num_batched_tokens: int,
    max_num_seqs: int,
) -> int:
    """Reserve on each GPU of a pipeline stage holding `layers`."""
    mlp_width = max(_mlp_width_per_rank(model, layer, tensor_parallel_size) for layer in layers)
    activations = max_num_batched_tokens * _ACTIVATION_BYTES * (4 * model.hidden_size + mlp_width)
    sampler = 2 * max_num_seqs * model.vocab_size * _LOGIT_BYTES
    return FIXED_OVERHEAD_BYTES + activations + sampler


def _mlp_width_per_rank(model: ModelSpec, layer: int, tensor_parallel_size: int) -> int:
    if layer < model.dense_layers:
        return 3 * model.intermediate_size // tensor_parallel_size
    moe = model.moe
    assert moe is not None
    per_expert = 3 * moe.moe_intermediate_size // tensor_parallel_size + model.hidden_size
    return moe.num_experts_per_token * per_expert
