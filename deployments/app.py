"""The builder: `import_path: deployments.app:build_app` in a Serve config file.

Validates the application's `args` (see `deployments.config`), then wires one engine
deployment per model behind the one shared ingress.
"""

from __future__ import annotations

from typing import Any

from ray import serve
from ray.serve import Application

from deployments.config import AppConfig, ModelConfig
from deployments.engine import LLMEngine
from deployments.ingress import Ingress, api
from deployments.simulated_engine import SimulatedLLMEngine
from deployments.vllm_args import validate_engine_args

# The replica actor itself (the AsyncLLM front end) sits in bundle 0 beside worker 0.
_REPLICA_ACTOR_CPUS = 1.0


def engine_deployment_options(model: ModelConfig) -> dict[str, Any]:
    """Serve options of one model's engine deployment: replicas, resources, placement."""
    options: dict[str, Any] = {
        "name": model.deployment_name,
        "num_replicas": model.num_replicas,
        "max_ongoing_requests": model.max_ongoing_requests,
        "health_check_period_s": 10,
        "health_check_timeout_s": 30,
        # Streams in flight finish before a replica stops (scale-down, redeploy).
        "graceful_shutdown_timeout_s": 300,
    }
    placement = model.placement
    if placement.accelerator == "CPU":
        # vLLM's CPU workers are local processes of the replica: reserve their CPUs on it.
        options["ray_actor_options"] = {
            "num_cpus": _REPLICA_ACTOR_CPUS + placement.cpus_per_worker * model.parallelism.workers
        }
        return options
    # One 1-GPU bundle per vLLM worker, as vLLM's Ray executor expects.
    accelerator = {f"accelerator_type:{placement.accelerator}": 0.001}
    worker = {"CPU": placement.cpus_per_worker, "GPU": 1.0, **accelerator}
    bundles = [dict(worker) for _ in range(model.parallelism.workers)]
    bundles[0]["CPU"] += _REPLICA_ACTOR_CPUS
    options["ray_actor_options"] = {"num_cpus": _REPLICA_ACTOR_CPUS, "num_gpus": 0}
    options["placement_group_bundles"] = bundles
    options["placement_group_strategy"] = "PACK"
    return options


def build_app(args: dict[str, Any]) -> Application:
    config = AppConfig.model_validate(args)
    for model in config.models:
        validate_engine_args(model)
    engines = {
        model.name: serve.deployment(
            SimulatedLLMEngine if model.simulated_engine else LLMEngine,
            **engine_deployment_options(model),
        ).bind(model)
        for model in config.models
    }
    ingress = serve.deployment(
        serve.ingress(api)(Ingress),
        name="ingress",
        num_replicas=config.ingress.num_replicas,
        max_ongoing_requests=config.ingress.max_ongoing_requests,
        ray_actor_options={"num_cpus": 1},
    )
    return ingress.bind(config, engines)
