"""cluster.config_plan: a model config's own settings become the planner's request."""

from __future__ import annotations

import subprocess
import sys

import pytest

from cluster.catalog import Precision
from cluster.config_plan import (
    NotPlannableError,
    checkpoint_precision,
    plan_for_model,
    plan_request_for_model,
)
from deployments.config import ModelConfig


def _model(**overrides) -> ModelConfig:
    fields = {
        "name": "r1",
        "catalog_id": "deepseek-r1",
        "weights": {"hf_repo": "deepseek-ai/DeepSeek-R1"},
        "engine_args": {"max_model_len": 65536, "max_num_seqs": 8},
        "placement": {"accelerator": "H100", "gpus_per_node": 8},
    } | overrides
    return ModelConfig.model_validate(fields)


def test_the_request_carries_the_configs_load_and_hardware():
    model = _model(
        engine_args={
            "max_model_len": 65536,
            "max_num_seqs": 8,
            "gpu_memory_utilization": 0.95,
            "kv_cache_dtype": "fp8_e4m3",
            "max_num_batched_tokens": 32768,
        }
    )
    request = plan_request_for_model(model)
    assert (request.model, request.gpu, request.gpus_per_node) == ("deepseek-r1", "H100", 8)
    assert (request.context, request.concurrency) == (65536, 8)
    assert request.gpu_memory_utilization == 0.95
    assert request.kv_cache_dtype == "fp8"
    assert request.max_num_batched_tokens == 32768


def test_unset_engine_args_take_the_planners_defaults():
    request = plan_request_for_model(_model())
    assert (request.gpu_memory_utilization, request.kv_cache_dtype) == (0.90, "auto")
    assert request.max_num_batched_tokens == 8192


def test_the_precision_is_that_of_the_checkpoint_the_config_loads():
    nvfp4 = _model(weights={"hf_repo": "nvidia/DeepSeek-R1-0528-NVFP4-v2"})
    assert checkpoint_precision(nvfp4) is Precision.NVFP4
    assert checkpoint_precision(_model()) is Precision.FP8
    mirror = _model(weights={"path": "/shared/r1"})
    assert checkpoint_precision(mirror) == "native"


def test_the_plan_sizes_a_deepseek_r1_replica_on_h100_over_two_nodes():
    planned = plan_for_model(_model())
    layout = (planned.tensor_parallel_size, planned.pipeline_parallel_size, planned.nodes)
    assert layout == (8, 2, 2)
    assert planned.max_concurrent_sequences >= 8


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"catalog_id": None}, "no catalog_id"),
        ({"placement": {"accelerator": "CPU"}}, "CPU"),
        ({"engine_args": {"max_model_len": 4096}}, "max_num_seqs"),
        (
            {"engine_args": {"max_model_len": 4096, "max_num_seqs": 4, "kv_cache_dtype": "int8"}},
            "kv_cache_dtype",
        ),
    ],
)
def test_what_cannot_be_planned_says_why(overrides, message):
    with pytest.raises(NotPlannableError, match=message):
        plan_request_for_model(_model(**overrides))


def test_it_does_not_import_ray_or_vllm():
    code = (
        "import sys, cluster.config_plan, cluster.tfvars, cluster.cli_tfvars; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('ray', 'vllm')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
