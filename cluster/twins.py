"""The config.json of a model's twin: the same vLLM architecture class, scaled down.

A twin keeps what selects code paths in vLLM (architectures, model_type, attention kind,
MoE routing method, shared experts, dense-first layers, QK norm, sliding window) and
shrinks what only sets sizes (layers, widths, expert count, vocabulary), so that a CPU
runs the serving path of a model that a GPU node would need for the real one.

Pure: catalog facts in, a dict out (`cluster.twin_models` writes it to disk).
"""

from __future__ import annotations

from typing import Any

from cluster.catalog import AttentionKind, ModelSpec

# Sizes of every twin. 64 is a head size the CPU attention backend supports (16 is not).
TWIN_HIDDEN = 256
TWIN_HEAD_DIM = 64
TWIN_HEADS = TWIN_HIDDEN // TWIN_HEAD_DIM
TWIN_INTERMEDIATE = 512
TWIN_LAYERS = 3
TWIN_EXPERTS = 8
TWIN_EXPERT_INTERMEDIATE = 128
# Long enough for the ingress tests, short enough to keep the KV cache and RoPE tables small.
TWIN_MAX_POSITIONS = 4096
# Small enough that a twin's prompt + answer crosses it: the sliding path really runs.
TWIN_SLIDING_WINDOW = 128

# CPU MLA supports only DeepSeek's latent ranks (kv_lora_rank + qk_rope_head_dim = 576),
# so an MLA twin keeps them; the other MLA widths shrink.
_CPU_MLA_KV_LORA_RANK = 512
_CPU_MLA_ROPE_HEAD_DIM = 64
_TWIN_Q_LORA_RANK = 128

# vLLM's Kimi K2.5 class wraps a DeepSeek-V3 text model (`text_config`) and MoonViT.
_KIMI_K25 = "kimi_k25"


def twin_config(spec: ModelSpec, vocab_size: int, bos_token_id: int, eos_token_id: int) -> dict[str, Any]:
    """config.json of `spec`'s twin for a tokenizer of `vocab_size` tokens."""
    text = _text_config(spec, vocab_size, bos_token_id, eos_token_id)
    if spec.model_type != _KIMI_K25:
        return text
    return {
        "architectures": list(spec.architectures),
        "model_type": _KIMI_K25,
        "text_config": text | {"model_type": "deepseek_v3", "architectures": ["DeepseekV3ForCausalLM"]},
        "vision_config": {
            "patch_size": 14,
            "num_hidden_layers": 1,
            "hidden_size": 128,
            "num_attention_heads": 2,
            "intermediate_size": 256,
            "merge_kernel_size": [2, 2],
        },
        "projection_hidden_size": 128,
        "tie_word_embeddings": False,
        "bos_token_id": bos_token_id,
        "eos_token_id": eos_token_id,
        "torch_dtype": "bfloat16",
    }


def _text_config(spec: ModelSpec, vocab_size: int, bos: int, eos: int) -> dict[str, Any]:
    config: dict[str, Any] = {
        "architectures": list(spec.architectures),
        "model_type": spec.model_type,
        "hidden_size": TWIN_HIDDEN,
        "intermediate_size": TWIN_INTERMEDIATE,
        "num_hidden_layers": TWIN_LAYERS,
        "num_attention_heads": TWIN_HEADS,
        "vocab_size": vocab_size,
        "max_position_embeddings": min(spec.max_position_embeddings, TWIN_MAX_POSITIONS),
        "rms_norm_eps": 1e-6,
        "rope_theta": 10000.0,
        "hidden_act": "silu",
        "tie_word_embeddings": spec.tie_word_embeddings,
        "attention_bias": spec.qkv_bias,
        "bos_token_id": bos,
        "eos_token_id": eos,
        "torch_dtype": "bfloat16",
    }
    config |= _attention(spec)
    if spec.mtp_layers:
        # The checkpoint's multi-token-prediction layers, which MTP speculative decoding runs.
        config["num_nextn_predict_layers"] = spec.mtp_layers
    if "MistralLarge3ForCausalLM" in spec.architectures:
        # Mistral Large 3 scales queries by position (Llama 4 style); vLLM requires the
        # setting for this class. A short original length makes twin prompts reach it.
        config["llama_4_scaling"] = {"original_max_position_embeddings": 256, "beta": 0.1}
    if spec.moe is not None:
        config |= _moe(spec)
    if spec.sliding_window is not None:
        config["sliding_window"] = TWIN_SLIDING_WINDOW
        config["layer_types"] = [
            "sliding_attention" if spec.sliding_window.is_sliding(i, TWIN_LAYERS) else "full_attention"
            for i in range(TWIN_LAYERS)
        ]
    return config


def _attention(spec: ModelSpec) -> dict[str, Any]:
    if spec.attention is AttentionKind.MLA:
        return {
            "num_key_value_heads": TWIN_HEADS,
            "q_lora_rank": _TWIN_Q_LORA_RANK if spec.mla.q_lora_rank else None,
            "kv_lora_rank": _CPU_MLA_KV_LORA_RANK,
            "qk_rope_head_dim": _CPU_MLA_ROPE_HEAD_DIM,
            "qk_nope_head_dim": TWIN_HEAD_DIM,
            "v_head_dim": TWIN_HEAD_DIM,
        }
    # Keep the real model's grouping: MHA stays MHA, GQA shares each KV head between 2.
    kv_heads = TWIN_HEADS if spec.attention is AttentionKind.MHA else TWIN_HEADS // 2
    return {"num_key_value_heads": kv_heads, "head_dim": TWIN_HEAD_DIM}


def _moe(spec: ModelSpec) -> dict[str, Any]:
    moe = spec.moe
    top_k = min(moe.num_experts_per_token, 2)
    if spec.model_type.startswith("qwen3"):
        return {
            "num_experts": TWIN_EXPERTS,
            "num_experts_per_tok": top_k,
            "moe_intermediate_size": TWIN_EXPERT_INTERMEDIATE,
            "decoder_sparse_step": 1,
            "mlp_only_layers": [],
            "norm_topk_prob": True,
        }
    # DeepSeek-V3 style (R1, Kimi, Mistral Large 3, GLM-4.7-Flash): dense first layers,
    # shared experts, grouped routing with a score-correction bias for noaux_tc.
    return {
        "n_routed_experts": TWIN_EXPERTS,
        "n_shared_experts": moe.num_shared_experts,
        "num_experts_per_tok": top_k,
        "moe_intermediate_size": TWIN_EXPERT_INTERMEDIATE,
        "first_k_dense_replace": min(moe.first_dense_layers, 1),
        "moe_layer_freq": 1,
        "n_group": 1,
        "topk_group": 1,
        "topk_method": moe.topk_method or "greedy",
        "scoring_func": "sigmoid" if moe.router_has_bias else "softmax",
        "norm_topk_prob": True,
        "routed_scaling_factor": 1.0,
    }
