"""The sizing variables of terraform/modules/sizing, derived from one model of a Serve config.

The node pool must carry exactly the replica the config deploys, so the numbers come from the
config through the planner, never by hand: the model's GPU and GPUs per node, its TP x PP (which
must be the planner's layout for the config's own load), its replica bounds, and the cloud's
machine type for that GPU from the catalog. Pure: config in, variables (or HCL/JSON text) out.
"""

from __future__ import annotations

import json
from typing import Literal

from cluster.catalog import Frozen, machine_types
from cluster.config_plan import plan_for_model
from deployments.config import AppConfig, ModelConfig

# Terraform names clusters by their Kubernetes service; the catalog names the cloud.
Cloud = Literal["gke", "eks"]
CATALOG_CLOUD: dict[str, str] = {"gke": "gcp", "eks": "aws"}

# What the examples use when the config fixes no replica count: one replica kept, room for one
# more while a second one starts.
DEFAULT_MIN_REPLICAS = 1
DEFAULT_MAX_REPLICAS = 2


class TfvarsError(ValueError):
    """The config cannot be turned into a node pool as asked."""


class SizingVariables(Frozen):
    """Exactly the variables of every example's sizing.auto.tfvars, in that file's order."""

    gpu_type: str
    gpus_per_node: int
    tensor_parallel_size: int
    pipeline_parallel_size: int
    min_replicas: int
    max_replicas: int
    machine_type: str


def sizing_variables(
    model_config: ModelConfig,
    cloud: Cloud,
    min_replicas: int | None = None,
    max_replicas: int | None = None,
    machine_type: str | None = None,
) -> SizingVariables:
    """The node pool for `model_config` on `cloud`.

    Replica bounds: a config that sets num_replicas fixes both, and one with autoscaling
    takes its min (0 with scale_to_zero) and max (flags may only repeat them); otherwise the flags, defaulting to 1 and 2. Machine type: the catalog's first for the
    cloud, GPU and GPUs per node, or `machine_type` if it is one of those."""
    planned = plan_for_model(model_config)
    configured = model_config.parallelism
    planned_layout = (planned.tensor_parallel_size, planned.pipeline_parallel_size)
    if (configured.tensor_parallel_size, configured.pipeline_parallel_size) != planned_layout:
        raise TfvarsError(
            f"{model_config.name}: parallelism TP{configured.tensor_parallel_size} x "
            f"PP{configured.pipeline_parallel_size} is not the planner's "
            f"TP{planned.tensor_parallel_size} x PP{planned.pipeline_parallel_size} for its "
            f"{planned.concurrency} sequences of {planned.context:,} tokens on {planned.gpu}: "
            "fix the config (python -m cluster plan shows why)"
        )
    low, high = _replica_bounds(model_config, min_replicas, max_replicas)
    placement = model_config.placement
    return SizingVariables(
        gpu_type=placement.accelerator,
        gpus_per_node=placement.gpus_per_node,
        tensor_parallel_size=planned.tensor_parallel_size,
        pipeline_parallel_size=planned.pipeline_parallel_size,
        min_replicas=low,
        max_replicas=high,
        machine_type=_machine_type(
            cloud, placement.accelerator, placement.gpus_per_node, machine_type
        ),
    )


def planned_model(app: AppConfig, model_name: str | None = None) -> ModelConfig:
    """The model a node pool is for: the named one, or the app's only GPU model."""
    if model_name is not None:
        for model in app.models:
            if model_name in model.served_names:
                return model
        raise TfvarsError(f"no model named {model_name!r} in the config")
    on_gpus = [m for m in app.models if m.placement.accelerator != "CPU"]
    if len(on_gpus) != 1:
        names = ", ".join(m.name for m in on_gpus) or "none"
        raise TfvarsError(
            f"one node pool sizes one GPU model; the config has {len(on_gpus)} ({names}): "
            "name one with --model"
        )
    return on_gpus[0]


def format_hcl(variables: SizingVariables) -> str:
    """`key = value` lines, aligned as `terraform fmt` aligns them."""
    values = variables.model_dump()
    width = max(map(len, values))
    return "\n".join(f"{key:<{width}} = {json.dumps(value)}" for key, value in values.items())


def format_json(variables: SizingVariables) -> str:
    return json.dumps(variables.model_dump(), indent=2)


def _replica_bounds(
    model_config: ModelConfig, min_replicas: int | None, max_replicas: int | None
) -> tuple[int, int]:
    autoscaling = model_config.autoscaling
    if autoscaling is not None:
        # The node pool spans what the policy may ask for; at zero replicas, zero nodes.
        configured = (0 if autoscaling.scale_to_zero else autoscaling.min_replicas,
                      autoscaling.max_replicas)  # fmt: skip
        source = "autoscaling"
    elif "num_replicas" in model_config.model_fields_set:
        configured = (model_config.num_replicas, model_config.num_replicas)
        source = f"num_replicas: {model_config.num_replicas}"
    else:
        configured = None
    if configured is not None:
        for flag, value, bound in (
            ("--min-replicas", min_replicas, configured[0]),
            ("--max-replicas", max_replicas, configured[1]),
        ):
            if value is not None and value != bound:
                raise TfvarsError(f"{model_config.name} sets {source}; {flag} {value} disagrees")
        return configured
    low = DEFAULT_MIN_REPLICAS if min_replicas is None else min_replicas
    high = max(DEFAULT_MAX_REPLICAS, low) if max_replicas is None else max_replicas
    if low < 0 or high < 1 or high < low:
        raise TfvarsError(f"replica bounds {low}..{high}: need 0 <= min <= max and max >= 1")
    return low, high


def _machine_type(cloud: Cloud, gpu: str, gpus_per_node: int, wanted: str | None) -> str:
    offered = [
        m.instance_type
        for m in machine_types(gpu)
        if m.cloud == CATALOG_CLOUD[cloud] and m.gpus == gpus_per_node
    ]
    if not offered:
        raise TfvarsError(f"the catalog has no {cloud} machine type with {gpus_per_node} {gpu}")
    if wanted is None:
        return offered[0]
    if wanted not in offered:
        raise TfvarsError(
            f"machine type {wanted!r} is not one of the {cloud} machines with {gpus_per_node} "
            f"{gpu} (catalog: {', '.join(offered)})"
        )
    return wanted
