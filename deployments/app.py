"""The builder: `import_path: deployments.app:build_app` in a Serve config file.

Validates the application's `args` (see `deployments.config`), then wires one engine
deployment per model behind the one shared ingress.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ray import serve
from ray.serve import Application
from ray.serve.config import RequestRouterConfig

from autoscaling.capacity import node_pool_growth_gpus
from autoscaling.config import AutoscalingConfig
from cluster.config_plan import cold_start_for_model
from cluster.placement import REPLICA_ACTOR_CPUS, ReplicaLayout, placement_options
from deployments.config import AppConfig, ModelConfig
from deployments.engine import LLMEngine
from deployments.ingress import Ingress, api
from deployments.routing import PrefixAffinityRouter
from deployments.simulated_engine import SimulatedLLMEngine
from deployments.twin import twin_app_config
from deployments.vllm_args import validate_engine_args


def engine_deployment_options(
    model: ModelConfig, stage_nodes: Sequence[str] | None = None
) -> dict[str, Any]:
    """Serve options of one model's engine deployment: replicas, resources, placement.

    Serve creates each replica's placement group (the replica actor in bundle 0, where vLLM's
    driver must be), so the TP-inside-one-node rule goes into Serve's options: STRICT_PACK
    for a replica that fits one node; for one spanning nodes, `stage_nodes` (a node id per
    pipeline stage, from `cluster.placement_ray.live_stage_nodes`) pins each TP group
    with per-bundle label selectors, as Serve 2.60 has no per-TP-group constraint (see
    `cluster.placement`)."""
    options: dict[str, Any] = {
        "name": model.deployment_name,
        "max_ongoing_requests": model.max_ongoing_requests,
        "health_check_period_s": 10,
        "health_check_timeout_s": 30,
        # Streams in flight finish before a replica stops (scale-down, redeploy).
        "graceful_shutdown_timeout_s": 300,
        # Admission control: past this many queued requests (Serve counts them per caller,
        # i.e. per ingress replica) the handle raises BackPressureError at once and the
        # ingress answers 503 with Retry-After. Serve counts a request as queued until a
        # replica takes it, so a burst that free slots would take at once counts in full:
        # the bound covers the replicas' slots too, or a burst of more than the queue's
        # length into an idle fleet is refused (80 of 768 at c=256 on the H200).
        "max_queued_requests": (
            model.max_ongoing_requests + model.limits.max_queued_requests_per_replica
        )
        * _most_replicas(model),
    }
    autoscaling = serve_autoscaling(model)
    if autoscaling is None:
        options["num_replicas"] = model.num_replicas
    else:
        options["autoscaling_config"] = autoscaling.to_serve_autoscaling_config()
    if model.routing == "prefix_affinity":
        options["request_router_config"] = RequestRouterConfig(
            request_router_class=PrefixAffinityRouter
        )
    placement = model.placement
    if placement.accelerator == "CPU":
        # vLLM's CPU workers are local processes of the replica: reserve their CPUs on it.
        options["ray_actor_options"] = {
            "num_cpus": REPLICA_ACTOR_CPUS + placement.cpus_per_worker * model.parallelism.workers
        }
        return options
    options["ray_actor_options"] = {"num_cpus": REPLICA_ACTOR_CPUS, "num_gpus": 0}
    options.update(
        placement_options(ReplicaLayout.from_model(model), stage_nodes).serve_options()
    )
    return options


def serve_autoscaling(model: ModelConfig) -> AutoscalingConfig | None:
    """The model's autoscaling knobs with the facts only the model knows filled in."""
    if model.autoscaling is None:
        return None
    config = model.autoscaling
    if model.placement.accelerator == "CPU" and "capacity_source" not in config.model_fields_set:
        # CPU replicas hold no GPUs: a count of free GPU gangs would always be zero.
        config = config.model_copy(update={"capacity_source": "unbounded"})
    if (
        model.placement.accelerator != "CPU"
        and config.capacity_source == "ray"
        and "autoscaler_headroom_gpus" not in config.model_fields_set
    ):
        # A waiting replica is what makes the Ray autoscaler add a node: the policy may ask for
        # the nodes the pool can still add (Terraform sizes it from these same bounds).
        growth = node_pool_growth_gpus(
            min_replicas=0 if config.scale_to_zero else config.min_replicas,
            max_replicas=config.max_replicas,
            gpus_per_replica=model.parallelism.workers,
            gpus_per_node=model.placement.gpus_per_node,
        )
        config = config.model_copy(update={"autoscaler_headroom_gpus": growth})
    cold_start = cold_start_for_model(model)
    if cold_start is not None and "expected_cold_start_s" not in config.model_fields_set:
        # The policy sizes the fleet one cold start ahead: this model's, not a generic one.
        config = config.model_copy(update={"expected_cold_start_s": cold_start.total_s})
    tp = model.parallelism.tensor_parallel_size
    return config.for_replica(
        gpus_per_replica=model.parallelism.workers,
        gpus_per_stage=tp,
        ttft_target_s=model.slo.ttft_target_s,
    )


def _most_replicas(model: ModelConfig) -> int:
    return model.autoscaling.max_replicas if model.autoscaling else model.num_replicas


def _live_stage_nodes(model: ModelConfig) -> tuple[str, ...] | None:
    """For a replica spanning nodes: the nodes free now for each of its TP groups."""
    layout = ReplicaLayout.from_model(model)
    if model.placement.accelerator == "CPU" or not layout.spans_nodes:
        return None
    if _most_replicas(model) > 1:
        # Every replica of a deployment gets the same selectors: a second one pinned to the
        # first one's nodes would wait forever.
        raise ValueError(
            f"{model.name}: up to {_most_replicas(model)} replicas, but a replica spanning nodes "
            f"({layout.label}) is pinned to named nodes: use num_replicas 1"
        )
    from cluster.placement_ray import live_stage_nodes

    return live_stage_nodes(layout)


def build_app(args: dict[str, Any]) -> Application:
    config = AppConfig.model_validate(args)
    if config.twin:
        config = twin_app_config(config)
    for model in config.models:
        validate_engine_args(model)
    engines = {
        model.name: serve.deployment(
            SimulatedLLMEngine if model.simulated_engine else LLMEngine,
            **engine_deployment_options(model, _live_stage_nodes(model)),
        ).bind(model)
        for model in config.models
    }
    ingress = serve.deployment(
        serve.ingress(api)(Ingress),
        name="ingress",
        num_replicas=config.ingress.num_replicas,
        max_ongoing_requests=config.ingress.max_ongoing_requests,
        ray_actor_options={"num_cpus": 1, "label_selector": config.ingress.node_labels or None},
    )
    return ingress.bind(config, engines)
