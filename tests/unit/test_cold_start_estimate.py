"""The cold-start estimate: its arithmetic, its constants against the measurements they cite,
the planner and `plan` showing it, and the autoscaling builder using it."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from cluster.cold_start import (
    CPU_STARTUP,
    GPU_STARTUP,
    describe,
    estimate_cold_start,
    network_bytes_per_s,
)
from cluster.config_plan import cold_start_for_model, weight_bytes_for_model
from cluster.planner import PlanRequest, plan
from deployments.app import engine_deployment_options
from deployments.config import ModelConfig, load_app_config

REPO = Path(__file__).resolve().parents[2]


def test_load_time_is_bytes_per_node_over_bandwidth_plus_engine_init():
    one_node = estimate_cold_start(84 * 10**9, 1, "H200")
    assert one_node.load_bytes_per_node == 84 * 10**9
    assert one_node.load_s == pytest.approx(84e9 / GPU_STARTUP.load_bytes_per_s, abs=0.05)
    assert one_node.total_s == pytest.approx(one_node.load_s + GPU_STARTUP.engine_init_s, abs=0.1)
    # Two pipeline stages load on two nodes at once, half each; staging still copies it all.
    two_nodes = estimate_cold_start(84 * 10**9, 2, "H200")
    assert two_nodes.load_bytes_per_node == 42 * 10**9
    assert two_nodes.load_s == pytest.approx(one_node.load_s / 2, abs=0.05)
    assert two_nodes.fetch_bytes_per_node == 84 * 10**9


def test_an_unstaged_node_adds_the_fetch_at_the_slowest_nic_of_its_gpu_type():
    # gpus.yaml: every H200 machine has 400 Gb/s per GPU; H100 on GCP ~100-200 Gb/s; A100 50 Gb/s.
    assert network_bytes_per_s("H200") == 50e9
    assert network_bytes_per_s("H100") == 12.5e9
    assert network_bytes_per_s("A100") == 6.25e9
    estimate = estimate_cold_start(125 * 10**9, 1, "H100")
    assert estimate.fetch_s == 10.0
    assert ">= 10 s at 100 Gb/s line rate" in describe(estimate)


def test_cpu_uses_the_cpu_constants_and_has_no_network_figure():
    estimate = estimate_cold_start(420 * 10**6, 1, "CPU")
    assert estimate.engine_init_s == CPU_STARTUP.engine_init_s
    assert estimate.fetch_s is None and "fetches" not in describe(estimate)


def test_the_constants_are_the_measured_numbers_they_cite():
    cold = json.loads((REPO / "bench/cold_start/results.json").read_text())["summary"]["staged"]
    assert GPU_STARTUP.load_bytes_per_s == CPU_STARTUP.load_bytes_per_s
    assert CPU_STARTUP.load_bytes_per_s == pytest.approx(cold["load_bytes_per_s_median"], rel=1e-3)
    assert CPU_STARTUP.engine_init_s == pytest.approx(
        cold["import_s"]["median"] + cold["engine_init_s"]["median"]
    )
    gpu = json.loads((REPO / "bench/gpu/results.json").read_text())
    assert GPU_STARTUP.engine_init_s == gpu["stack"]["deploy_s"]


def test_the_plan_carries_the_estimate_and_plan_prints_it(capsys):
    from cluster.__main__ import main

    planned = plan(PlanRequest(model="deepseek-r1", gpu="H100", context=16384, concurrency=8))
    assert planned.pipeline_parallel_size == 2
    total = planned.cold_start.fetch_bytes_per_node
    assert total == pytest.approx(planned.weights_total_gb * 1e9, abs=1e7)
    assert planned.cold_start.load_bytes_per_node == math.ceil(total / 2)

    assert main(["plan", "deepseek-r1", "--gpu", "H100", "--context", "16384",
                 "--concurrency", "8"]) == 0
    out = capsys.readouterr().out
    assert f"  cold start          {describe(planned.cold_start)}\n" in out


def test_a_configured_model_gets_its_estimate_unless_the_catalog_cannot_tell():
    local = load_app_config(REPO / "configs/local.yaml").models[0]
    estimate = cold_start_for_model(local)
    assert weight_bytes_for_model(local) == 269_030_016  # SmolLM2-135M bf16 in the catalog
    assert estimate == estimate_cold_start(269_030_016, 1, "CPU")
    unplanned = {"name": "m", "weights": {"path": "/models/m"}}
    assert cold_start_for_model(ModelConfig.model_validate(unplanned)) is None
    twin = {"name": "m", "catalog_id": "kimi-k2.5", "weights": {"twin": "kimi-k2.5"}}
    assert cold_start_for_model(ModelConfig.model_validate(twin)) is None
    simulated = {"name": "m", "catalog_id": "kimi-k2.5", "simulated_engine": {}}
    assert cold_start_for_model(ModelConfig.model_validate(simulated)) is None


def _kimi(**autoscaling) -> ModelConfig:
    return ModelConfig.model_validate(
        {
            "name": "kimi",
            "catalog_id": "kimi-k2.5",
            "weights": {"hf_repo": "moonshotai/Kimi-K2.5"},
            "parallelism": {"tensor_parallel_size": 8},
            "placement": {"accelerator": "H200", "gpus_per_node": 8},
            "autoscaling": {"max_replicas": 3, **autoscaling},
        }
    )


def test_the_autoscaling_policy_gets_the_estimate_unless_the_config_sets_one():
    kwargs = engine_deployment_options(_kimi())["autoscaling_config"]["policy"]["policy_kwargs"]
    expected = cold_start_for_model(_kimi()).total_s
    assert kwargs["expected_cold_start_s"] == expected
    assert expected > 1000  # 595 GB per node: far from the generic 600 s default
    options = engine_deployment_options(_kimi(expected_cold_start_s=300))
    assert options["autoscaling_config"]["policy"]["policy_kwargs"]["expected_cold_start_s"] == 300
