"""The peer in the CPU comparisons: Ray Serve LLM's OpenAI app, one replica of one model."""

from __future__ import annotations


def ray_serve_llm_cpu_app(model_loading_config: dict, **llm_config):
    """`build_openai_app` for one replica on this machine's CPU; `llm_config` adds
    `LLMConfig` fields (engine arguments, a server class, ...)."""
    # Imported here: Ray Serve LLM needs pyarrow, which only the bench extra installs.
    from ray.serve.llm import LLMConfig, build_openai_app

    config = LLMConfig(
        model_loading_config=model_loading_config,
        # Without this Ray Serve LLM asks for a GPU bundle and waits forever on CPU.
        accelerator_config={"kind": "cpu"},
        deployment_config={"num_replicas": 1},
        **llm_config,
    )
    return build_openai_app({"llm_configs": [config]})
