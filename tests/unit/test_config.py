"""The Serve application schema: valid configs load, bad ones name the bad field."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from deployments.app import engine_deployment_options
from deployments.config import AppConfig, ModelConfig, load_app_config
from deployments.vllm_args import UnknownEngineArgument, validate_engine_args

REPO = Path(__file__).resolve().parents[2]


def model(**overrides) -> dict:
    entry = {"name": "m", "weights": {"path": "/models/m"}}
    entry.update(overrides)
    return entry


def error_locations(error: ValidationError) -> list[str]:
    return [".".join(str(p) for p in e["loc"]) for e in error.errors()]


@pytest.mark.parametrize("path", ["configs/local.yaml", "configs/local-two-models.yaml"])
def test_local_configs_validate(path):
    config = load_app_config(REPO / path)
    assert config.models and all(m.placement.accelerator == "CPU" for m in config.models)
    for entry in config.models:
        validate_engine_args(entry)


def test_unknown_key_is_named():
    with pytest.raises(ValidationError) as caught:
        AppConfig.model_validate({"models": [model(paralelism={"tensor_parallel_size": 2})]})
    assert "models.0.paralelism" in error_locations(caught.value)


def test_tensor_parallel_larger_than_a_node_is_refused():
    with pytest.raises(ValidationError) as caught:
        ModelConfig.model_validate(
            model(
                parallelism={"tensor_parallel_size": 16},
                placement={"accelerator": "H200", "gpus_per_node": 8},
            )
        )
    assert "must sit inside one node" in str(caught.value)


@pytest.mark.parametrize(
    "weights, message",
    [
        ({}, "exactly one"),
        ({"path": "/a", "hf_repo": "org/m"}, "exactly one"),
        ({"path": "/a", "revision": "main"}, "only to hf_repo"),
        ({"local": "not-a-local-model"}, "weights.local"),
    ],
)
def test_weights_need_exactly_one_source(weights, message):
    with pytest.raises(ValidationError) as caught:
        ModelConfig.model_validate(model(weights=weights))
    assert message in str(caught.value)


@pytest.mark.parametrize("key", ["model", "tensor_parallel_size", "served_model_name"])
def test_engine_args_owned_by_the_schema_are_refused(key):
    with pytest.raises(ValidationError) as caught:
        ModelConfig.model_validate(model(engine_args={key: 1}))
    assert f"engine_args.{key}" in str(caught.value)


def test_dashed_engine_arg_is_refused_with_the_right_spelling():
    with pytest.raises(ValidationError) as caught:
        ModelConfig.model_validate(model(engine_args={"max-model-len": 10}))
    assert "max_model_len" in str(caught.value)


def test_unknown_engine_arg_fails_at_deploy_time_naming_it():
    entry = ModelConfig.model_validate(model(engine_args={"max_modle_len": 10}))
    with pytest.raises(UnknownEngineArgument, match="engine_args.max_modle_len"):
        validate_engine_args(entry)


def test_frontend_args_are_accepted():
    entry = ModelConfig.model_validate(
        model(engine_args={"tool_call_parser": "hermes", "enable_auto_tool_choice": True})
    )
    validate_engine_args(entry)


def test_model_names_and_aliases_must_be_unique():
    with pytest.raises(ValidationError, match="used by both"):
        AppConfig.model_validate(
            {"models": [model(name="a", aliases=["x"]), model(name="b", aliases=["x"])]}
        )


def test_invalid_model_name_is_refused():
    with pytest.raises(ValidationError, match="not a valid model name"):
        ModelConfig.model_validate(model(name="has space"))


def test_cpu_engine_reserves_its_workers_cpus_on_the_replica():
    entry = ModelConfig.model_validate(model(parallelism={"tensor_parallel_size": 2}))
    options = engine_deployment_options(entry)
    assert options["ray_actor_options"]["num_cpus"] == 3  # the replica + 2 workers
    assert "placement_group_bundles" not in options


def test_gpu_engine_gets_one_gpu_bundle_per_worker_with_the_replica_in_bundle_0():
    entry = ModelConfig.model_validate(
        model(
            parallelism={"tensor_parallel_size": 8, "pipeline_parallel_size": 2},
            placement={"accelerator": "H100", "gpus_per_node": 8},
        )
    )
    options = engine_deployment_options(entry, stage_nodes=("node-a", "node-b"))
    bundles = options["placement_group_bundles"]
    assert len(bundles) == 16
    assert all(b["GPU"] == 1 and "accelerator_type:H100" in b for b in bundles)
    assert bundles[0]["CPU"] == 2 and bundles[1]["CPU"] == 1
    assert options["ray_actor_options"]["num_gpus"] == 0
    # Each TP group pinned to its stage's node (cluster/placement.py says why).
    selectors = options["placement_group_bundle_label_selector"]
    assert [s["ray.io/node-id"] for s in selectors] == ["node-a"] * 8 + ["node-b"] * 8
