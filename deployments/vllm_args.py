"""Turn a ModelConfig into the arguments vLLM's own server would have parsed.

The engine is built from vLLM's `AsyncEngineArgs` and the OpenAI layer from vLLM's
`FrontendArgs`, exactly the two halves of `vllm serve`, so a config means the same
thing here as on vLLM's command line (and a benchmark against `vllm serve` compares
the same engine).
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from deployments.config import ModelConfig


class UnknownEngineArgument(ValueError):
    pass


def split_engine_args(engine_args: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(engine kwargs, frontend kwargs); an argument neither half knows is an error."""
    from vllm.engine.arg_utils import AsyncEngineArgs

    from deployments.vllm_compat import frontend_args_cls

    FrontendArgs = frontend_args_cls()

    engine_fields = {f.name for f in dataclasses.fields(AsyncEngineArgs)}
    frontend_fields = {f.name for f in dataclasses.fields(FrontendArgs)}
    engine, frontend = {}, {}
    for key, value in engine_args.items():
        if key in engine_fields:
            engine[key] = value
        elif key in frontend_fields:
            frontend[key] = value
        else:
            raise UnknownEngineArgument(
                f"engine_args.{key} is not a vLLM engine or frontend argument "
                "(see `vllm serve --help`, with underscores)"
            )
    return engine, frontend


def build_vllm_args(model: ModelConfig, model_path: str, on_ray_executor: bool):
    """(AsyncEngineArgs, argparse.Namespace of engine + frontend args) for one replica."""
    from vllm.engine.arg_utils import AsyncEngineArgs

    from deployments.vllm_compat import frontend_args_cls

    FrontendArgs = frontend_args_cls()

    engine_kwargs, frontend_kwargs = split_engine_args(model.engine_args)
    if model.weights is not None and model.weights.load_format is not None:
        engine_kwargs["load_format"] = model.weights.load_format
    engine_args = AsyncEngineArgs(
        model=model_path,
        served_model_name=model.served_names,
        tensor_parallel_size=model.parallelism.tensor_parallel_size,
        pipeline_parallel_size=model.parallelism.pipeline_parallel_size,
        # On GPUs every worker runs in a bundle of the replica's placement group;
        # vLLM refuses the Ray executor on CPU, where workers are local processes.
        distributed_executor_backend="ray" if on_ray_executor else None,
        **engine_kwargs,
    )
    frontend_args = FrontendArgs(**frontend_kwargs)
    namespace = argparse.Namespace(**(vars(frontend_args) | vars(engine_args)))
    return engine_args, namespace


def validate_engine_args(model: ModelConfig) -> None:
    """Fail at deploy time, not inside a replica minutes later, on an unknown argument.

    Values are checked by vLLM itself when the replica builds its engine: building
    `AsyncEngineArgs` here would resolve the model, which the head node may not hold.
    """
    split_engine_args(model.engine_args)
