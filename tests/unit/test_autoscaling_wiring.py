"""A model's `autoscaling:` section becomes the engine deployment's Serve autoscaling_config."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import ValidationError

from autoscaling.config import POLICY_IMPORT_PATH
from autoscaling.signals import (
    METRIC_ARRIVALS_PER_S,
    METRIC_NUM_RUNNING,
    METRIC_NUM_WAITING,
    METRIC_TTFT_P90_S,
)
from deployments.app import engine_deployment_options
from deployments.config import ModelConfig
from deployments.simulated_engine import SimulatedLLMEngine
from deployments.twin import twin_model


def model(**overrides) -> ModelConfig:
    entry = {"name": "m", "weights": {"path": "/models/m"}}
    entry.update(overrides)
    return ModelConfig.model_validate(entry)


def test_num_replicas_and_autoscaling_together_are_refused_naming_the_field():
    with pytest.raises(ValidationError, match="num_replicas: set either"):
        model(num_replicas=2, autoscaling={"max_replicas": 3})


def test_an_unknown_autoscaling_knob_is_named():
    with pytest.raises(ValidationError) as caught:
        model(autoscaling={"max_replica": 3})
    assert ("autoscaling", "max_replica") in [e["loc"] for e in caught.value.errors()]


def test_a_fixed_fleet_keeps_num_replicas():
    options = engine_deployment_options(model(num_replicas=3))
    assert options["num_replicas"] == 3
    assert "autoscaling_config" not in options


def test_gpu_replica_facts_and_the_slo_reach_the_policy():
    entry = model(
        parallelism={"tensor_parallel_size": 8, "pipeline_parallel_size": 2},
        placement={"accelerator": "H200", "gpus_per_node": 8},
        slo={"ttft_target_s": 3.5},
        autoscaling={"min_replicas": 1, "max_replicas": 1},
    )
    options = engine_deployment_options(entry, stage_nodes=("node-a", "node-b"))
    assert "num_replicas" not in options
    serve_config = options["autoscaling_config"]
    assert serve_config["policy"]["policy_function"] == POLICY_IMPORT_PATH
    kwargs = serve_config["policy"]["policy_kwargs"]
    assert (kwargs["gpus_per_replica"], kwargs["gpus_per_stage"]) == (16, 8)
    assert kwargs["ttft_target_s"] == 3.5
    assert kwargs["capacity_source"] == "ray"  # GPU placement counts free gangs
    assert kwargs["autoscaler_headroom_gpus"] == 0  # one replica at most: the pool never grows


def test_a_gpu_model_may_ask_for_the_nodes_its_pool_can_still_add():
    def headroom(autoscaling, parallelism=None):
        entry = model(
            parallelism=parallelism or {"tensor_parallel_size": 8},
            placement={"accelerator": "H200", "gpus_per_node": 8},
            autoscaling=autoscaling,
        )
        options = engine_deployment_options(entry)
        return options["autoscaling_config"]["policy"]["policy_kwargs"]["autoscaler_headroom_gpus"]

    # Terraform sizes the pool for min..max replicas of one node each: 3 nodes may come.
    assert headroom({"min_replicas": 1, "max_replicas": 4}) == 3 * 8
    # Scaling to zero lets the pool go to zero nodes, and grow back to all of them.
    assert headroom({"max_replicas": 4, "scale_to_zero": True}) == 4 * 8
    # A TP 4 replica still gets a node of its own in the sizing (ceil(4 / 8) = 1).
    assert headroom({"max_replicas": 3}, {"tensor_parallel_size": 4}) == 2 * 8
    # A cluster that cannot grow says so, and is believed.
    assert headroom({"max_replicas": 4, "autoscaler_headroom_gpus": 0}) == 0


def test_cpu_placement_leaves_capacity_to_serve_unless_set():
    default = engine_deployment_options(model(autoscaling={"max_replicas": 3}))
    kwargs = default["autoscaling_config"]["policy"]["policy_kwargs"]
    assert kwargs["capacity_source"] == "unbounded"
    assert kwargs["autoscaler_headroom_gpus"] == 0  # no GPU pool to grow
    # Serve counts a burst's requests as queued until replicas take them: slots + queue.
    per_replica = model().max_ongoing_requests + model().limits.max_queued_requests_per_replica
    assert default["max_queued_requests"] == 3 * per_replica
    explicit = engine_deployment_options(
        model(autoscaling={"max_replicas": 3, "capacity_source": "ray"})
    )
    assert explicit["autoscaling_config"]["policy"]["policy_kwargs"]["capacity_source"] == "ray"


def test_scale_to_zero_lets_serve_reach_zero():
    options = engine_deployment_options(
        model(autoscaling={"scale_to_zero": True, "initial_replicas": 0, "max_replicas": 2})
    )
    assert options["autoscaling_config"]["min_replicas"] == 0
    assert options["autoscaling_config"]["initial_replicas"] == 0


def test_a_twin_runs_one_replica_whatever_the_autoscaling():
    entry = model(
        catalog_id="qwen3-8b",
        parallelism={"tensor_parallel_size": 8},
        placement={"accelerator": "H200", "gpus_per_node": 8},
        autoscaling={"max_replicas": 4},
    )
    twin = twin_model(entry)
    assert twin.autoscaling is None and twin.num_replicas == 1


def test_simulated_engine_reports_arrivals_and_ttft():
    engine = SimulatedLLMEngine(
        model(weights=None, simulated_engine={"ttft_s": 0.01, "tokens_per_s": 1000})
    )
    before = engine.record_autoscaling_stats()
    assert before[METRIC_ARRIVALS_PER_S] == 0 and METRIC_TTFT_P90_S not in before

    async def one_request():
        return [item async for item in engine.chat({"max_tokens": 2})]

    asyncio.run(one_request())
    after = engine.record_autoscaling_stats()
    assert after[METRIC_ARRIVALS_PER_S] > 0
    assert after[METRIC_TTFT_P90_S] >= 0.01
    assert after[METRIC_NUM_RUNNING] == after[METRIC_NUM_WAITING] == 0


def test_the_node_pool_spans_the_autoscaling_bounds():
    from pathlib import Path

    from cluster.tfvars import TfvarsError, planned_model, sizing_variables
    from deployments.config import load_app_config

    repo = Path(__file__).resolve().parents[2]
    kimi = planned_model(load_app_config(repo / "configs/kimi.yaml"))
    entry = kimi.model_dump(exclude_unset=True, exclude={"num_replicas"})
    scaled = type(kimi).model_validate(entry | {"autoscaling": {"max_replicas": 6}})
    variables = sizing_variables(scaled, "gke")
    assert (variables.min_replicas, variables.max_replicas) == (1, 6)
    with pytest.raises(TfvarsError, match="sets autoscaling; --max-replicas 2 disagrees"):
        sizing_variables(scaled, "gke", max_replicas=2)
    to_zero = type(kimi).model_validate(
        entry | {"autoscaling": {"max_replicas": 6, "scale_to_zero": True}}
    )
    assert sizing_variables(to_zero, "gke").min_replicas == 0
