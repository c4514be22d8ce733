"""KV-cache arithmetic the way vLLM (0.32, V1 engine) does it.

Per token and layer a GPU caches:

* GQA/MHA: K and V for the KV heads on that rank, max(1, kv_heads // TP) of them. Past
  TP = kv_heads the heads are replicated, so the per-GPU cost stops shrinking.
* MLA: one latent of kv_lora_rank + qk_rope_head_dim values. vLLM treats it as a single KV
  head, so every TP rank keeps the full latent for every sequence; TP does not divide it,
  only PP does (each stage caches its own layers).

vLLM turns a worker's KV memory into blocks of `block_size` tokens across all of the worker's
layers (`available_memory // bytes_per_block`), takes the smallest block count over all workers,
and reports "KV cache size: N tokens" as max_concurrency x max_model_len, where max_concurrency is
blocks / blocks one request of max_model_len needs. Sliding-window layers (with the hybrid KV
cache manager vLLM enables on GPUs) hold at most window - 1 + one batch of in-flight tokens, plus
one block for the window's ragged start.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field

from cluster.catalog import Frozen, ModelSpec

KvCacheDtype = Literal["auto", "fp8"]

_DTYPE_BYTES = {"bfloat16": 2}


class KvCacheCapacity(Frozen):
    num_blocks: int
    blocks_per_sequence: int
    bytes_per_sequence: int = Field(
        description="one sequence of max_model_len tokens, in whole blocks"
    )
    max_concurrency: float
    tokens: int


def kv_dtype_bytes(model: ModelSpec, kv_cache_dtype: KvCacheDtype) -> int:
    """'auto' caches in the model's compute dtype."""
    return 1 if kv_cache_dtype == "fp8" else _DTYPE_BYTES[model.torch_dtype]


def kv_heads_per_rank(model: ModelSpec, tensor_parallel_size: int) -> int:
    if model.mla is not None:
        return 1
    return max(1, model.num_key_value_heads // tensor_parallel_size)


def kv_bytes_per_token_per_layer(
    model: ModelSpec, tensor_parallel_size: int, kv_cache_dtype: KvCacheDtype
) -> int:
    """Bytes one GPU caches per token for one layer."""
    dtype = kv_dtype_bytes(model, kv_cache_dtype)
    if model.mla is not None:
        return model.mla.cached_width * dtype
    assert model.head_dim is not None
    return 2 * kv_heads_per_rank(model, tensor_parallel_size) * model.head_dim * dtype


def kv_bytes_per_token(model: ModelSpec, kv_cache_dtype: KvCacheDtype = "auto") -> int:
    """The whole model's bytes per token on one GPU, every layer caching every token."""
    return model.num_hidden_layers * kv_bytes_per_token_per_layer(model, 1, kv_cache_dtype)


def kv_cache_capacity(
    model: ModelSpec,
    kv_cache_memory_bytes: int,
    *,
    max_model_len: int,
    layers: range | None = None,
    tensor_parallel_size: int = 1,
    kv_cache_dtype: KvCacheDtype = "auto",
    block_size: int = 16,
    max_num_batched_tokens: int = 8192,
) -> KvCacheCapacity:
    """What vLLM fits in one worker's `kv_cache_memory_bytes` (its --kv-cache-memory-bytes, or
    what profiling leaves): blocks, and tokens as vLLM reports them ("KV cache size: N tokens").

    `layers` are the worker's layers (its pipeline stage; all layers by default)."""
    layers = layers if layers is not None else range(model.num_hidden_layers)
    group_size, blocks_per_sequence = _block_groups(
        model, layers, max_model_len, block_size, max_num_batched_tokens
    )
    page = block_size * kv_bytes_per_token_per_layer(model, tensor_parallel_size, kv_cache_dtype)
    num_blocks = kv_cache_memory_bytes // (group_size * page)
    max_concurrency = num_blocks / blocks_per_sequence
    return KvCacheCapacity(
        num_blocks=num_blocks,
        blocks_per_sequence=blocks_per_sequence,
        bytes_per_sequence=blocks_per_sequence * group_size * page,
        max_concurrency=max_concurrency,
        tokens=int(max_concurrency * max_model_len),
    )


def _block_groups(
    model: ModelSpec,
    layers: range,
    max_model_len: int,
    block_size: int,
    max_num_batched_tokens: int,
) -> tuple[int, int]:
    """(layers per block group, block ids one sequence of max_model_len takes over all groups).

    vLLM puts the layers of each attention type into equal-size groups sharing one pool of block
    ids; a block id costs one page in every layer of a group."""
    sliding = sum(_is_sliding(model, layer) for layer in layers)
    full = len(layers) - sliding
    group_size = math.gcd(full, sliding)
    blocks = (full // group_size) * math.ceil(max_model_len / block_size)
    if sliding:
        assert model.sliding_window is not None
        held = min(model.sliding_window.window - 1 + max_num_batched_tokens, max_model_len)
        blocks += (sliding // group_size) * (math.ceil(held / block_size) + 1)
    return group_size, blocks


def _is_sliding(model: ModelSpec, layer: int) -> bool:
    window = model.sliding_window
    return window is not None and window.is_sliding(layer, model.num_hidden_layers)
