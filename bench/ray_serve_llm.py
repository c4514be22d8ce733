"""The peer in every comparison: Ray Serve LLM's OpenAI app for one model, with exactly our engine arguments."""

from __future__ import annotations


def ray_serve_llm_app(model_id: str, model_source: str, engine_args: dict, *, on_cpu: bool):
    """`build_openai_app` with one replica of one model; on a GPU node it keeps Ray Serve LLM's own defaults."""
    from ray.serve.llm import LLMConfig, build_openai_app

    # Without a CPU accelerator config Ray Serve LLM asks for a GPU bundle and waits forever on CPU.
    hardware = {"accelerator_config": {"kind": "cpu"}} if on_cpu else {}
    llm_config = LLMConfig(
        model_loading_config={"model_id": model_id, "model_source": model_source},
        engine_kwargs=dict(engine_args),
        deployment_config={"num_replicas": 1},
        **hardware,
    )
    return build_openai_app({"llm_configs": [llm_config]})
