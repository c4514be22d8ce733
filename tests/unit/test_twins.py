"""The twin of a model keeps what selects vLLM code paths and shrinks the rest."""

from __future__ import annotations

from pathlib import Path

import pytest

from cluster.catalog import get_model
from cluster.twins import TWIN_EXPERTS, TWIN_HIDDEN, twin_config
from deployments.config import AppConfig, load_app_config
from deployments.twin import TWIN_MAX_MODEL_LEN, twin_app_config, twin_engine_args

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "catalog_id",
    ["deepseek-r1", "kimi-k2.5", "mistral-large-3", "glm-4.7-flash", "qwen3-235b-a22b", "olmo-3-32b"],
)
def test_twin_keeps_architecture_and_shrinks(catalog_id):
    spec = get_model(catalog_id)
    config = twin_config(spec, 49216, 1, 2)
    assert config["architectures"] == list(spec.architectures)
    assert config["model_type"] == spec.model_type
    text = config.get("text_config", config)
    assert text["hidden_size"] == TWIN_HIDDEN
    assert text["num_hidden_layers"] < spec.num_hidden_layers
    if spec.mla is not None:
        # CPU MLA runs only DeepSeek's latent ranks.
        assert (text["kv_lora_rank"], text["qk_rope_head_dim"]) == (512, 64)
    if spec.moe is not None:
        experts = text.get("n_routed_experts", text.get("num_experts"))
        assert experts == TWIN_EXPERTS


def test_olmo_twin_has_sliding_and_full_layers():
    layer_types = twin_config(get_model("olmo-3-32b"), 49216, 1, 2)["layer_types"]
    assert set(layer_types) == {"sliding_attention", "full_attention"}


def test_twin_engine_args_keep_parsers_and_drop_mistral_formats():
    args = twin_engine_args(
        {
            "tokenizer_mode": "mistral",
            "config_format": "mistral",
            "load_format": "mistral",
            "tool_call_parser": "mistral",
            "max_model_len": 65536,
            "gpu_memory_utilization": 0.9,
            "kv_cache_dtype": "fp8",
        }
    )
    assert args["kv_cache_dtype"] == "auto"
    assert "tokenizer_mode" not in args and "config_format" not in args
    assert "gpu_memory_utilization" not in args
    assert args["load_format"] == "dummy"
    assert args["tool_call_parser"] == "mistral"
    assert args["max_model_len"] == TWIN_MAX_MODEL_LEN


def test_twin_switch_replaces_weights_parallelism_and_placement():
    config = load_app_config(REPO / "configs" / "kimi.yaml")
    twin = twin_app_config(AppConfig.model_validate(config.model_dump() | {"twin": True}))
    (model,) = twin.models
    assert model.weights.twin == "kimi-k2.5"
    assert model.parallelism.tensor_parallel_size == 1
    assert model.placement.accelerator == "CPU"
    assert model.name == config.models[0].name
    assert model.aliases == config.models[0].aliases
    assert model.engine_args["reasoning_parser"] == config.models[0].engine_args["reasoning_parser"]
    assert not twin.twin
