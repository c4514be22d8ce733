"""The planner's question that a Serve config's model asks: the PlanRequest its settings imply.

A config states its load in vLLM's own terms (max_model_len, max_num_seqs,
gpu_memory_utilization, kv_cache_dtype, max_num_batched_tokens) and its hardware in `placement`.
Sizing the replica for exactly that load is what makes the config's parallelism, the planner's
layout and the Terraform node pool (`python -m cluster tfvars`) agree. Pure and free of Ray and
vLLM: it runs wherever the config is edited.
"""

from __future__ import annotations

from typing import Literal

from cluster.catalog import Precision, get_model
from cluster.cold_start import ColdStartEstimate, estimate_cold_start
from cluster.kv_cache import KvCacheDtype
from cluster.planner import Plan, PlanRequest, plan
from cluster.weights import total_weight_bytes, weight_format
from deployments.config import ModelConfig


class NotPlannableError(ValueError):
    """The model config lacks what the planner needs (a catalog id, a GPU, its load)."""


def plan_request_for_model(model_config: ModelConfig) -> PlanRequest:
    """The PlanRequest that sizes `model_config`'s replica for the load its engine_args allow."""
    if model_config.catalog_id is None:
        raise NotPlannableError(f"{model_config.name}: no catalog_id, so nothing to plan")
    if model_config.placement.accelerator == "CPU":
        raise NotPlannableError(f"{model_config.name}: placement.accelerator is CPU, not a GPU")
    engine_args = model_config.engine_args
    missing = [key for key in ("max_model_len", "max_num_seqs") if key not in engine_args]
    if missing:
        # Without them vLLM sizes the load itself, and no layout can be said to hold it.
        raise NotPlannableError(
            f"{model_config.name}: engine_args needs {' and '.join(missing)} to be planned"
        )
    defaults = PlanRequest.model_fields
    return PlanRequest(
        model=model_config.catalog_id,
        gpu=model_config.placement.accelerator,
        gpus_per_node=model_config.placement.gpus_per_node,
        precision=checkpoint_precision(model_config),
        context=engine_args["max_model_len"],
        concurrency=engine_args["max_num_seqs"],
        gpu_memory_utilization=engine_args.get(
            "gpu_memory_utilization", defaults["gpu_memory_utilization"].default
        ),
        kv_cache_dtype=_planner_kv_cache_dtype(engine_args.get("kv_cache_dtype", "auto")),
        max_num_batched_tokens=engine_args.get(
            "max_num_batched_tokens", defaults["max_num_batched_tokens"].default
        ),
    )


def plan_for_model(model_config: ModelConfig) -> Plan:
    """The planner's layout for `model_config` (raises as `planner.plan` does)."""
    return plan(plan_request_for_model(model_config))


def checkpoint_precision(model_config: ModelConfig) -> Precision | Literal["native"]:
    """The precision of the catalog checkpoint the config loads; native when it is not one the
    catalog knows (a fine-tune or a mirror keeps the native format)."""
    repo = model_config.weights.hf_repo if model_config.weights else None
    model = get_model(model_config.catalog_id or "")
    for checkpoint in model.checkpoints:
        if repo is not None and checkpoint.hf_repo.lower() == repo.lower():
            return checkpoint.precision
    return "native"


def weight_bytes_for_model(model_config: ModelConfig) -> int | None:
    """The checkpoint's size from the catalog, at the precision the config loads; None without
    a catalog_id."""
    if model_config.catalog_id is None:
        return None
    spec = get_model(model_config.catalog_id)
    return total_weight_bytes(spec, weight_format(spec, checkpoint_precision(model_config)))


def cold_start_for_model(model_config: ModelConfig) -> ColdStartEstimate | None:
    """The cold start of one replica of `model_config` as configured (its PP and accelerator);
    None where the catalog's checkpoint is not what the replica loads: no catalog_id, a twin's
    random weights, or a simulated engine."""
    weights = model_config.weights
    if weights is None or weights.twin is not None or model_config.simulated_engine is not None:
        return None
    weight_bytes = weight_bytes_for_model(model_config)
    if weight_bytes is None:
        return None
    return estimate_cold_start(
        weight_bytes,
        model_config.parallelism.pipeline_parallel_size,
        model_config.placement.accelerator,
    )


def _planner_kv_cache_dtype(kv_cache_dtype: str) -> KvCacheDtype:
    # vLLM's fp8 variants (fp8, fp8_e4m3, fp8_e5m2) all store one byte per value.
    if kv_cache_dtype.startswith("fp8"):
        return "fp8"
    if kv_cache_dtype in ("auto", "bfloat16"):
        return "auto"
    raise NotPlannableError(f"kv_cache_dtype {kv_cache_dtype!r} is not one the planner sizes")
