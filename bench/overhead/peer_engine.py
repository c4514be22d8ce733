"""Ray Serve LLM's serving layer around the simulated token engine, for the overhead bench.

Ray Serve LLM's engine deployment (`LLMServer`) builds its engine from a class it is given
(`_default_engine_cls`); this one answers as `deployments.simulated_engine` does, with the
same SSE pieces at the same times, so the bench sets the peer's proxy, ingress and
`LLMServer` against ours with nothing else different. Ray Serve LLM's own code is used
unchanged (its `build_openai_app`, ingress, stream batching and Serve settings).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from ray.serve.llm import LLMConfig, LLMServer

from bench.ray_serve_llm import ray_serve_llm_cpu_app
from deployments.simulated_engine import simulated_response, simulated_stream

class SimulatedPeerEngine:
    """The parts of Ray Serve LLM's engine interface that `LLMServer` calls for chat and
    completions; requests arrive as vLLM's protocol objects, streams leave as SSE text."""

    def __init__(self, llm_config: LLMConfig):
        self._tokens_per_s = float(llm_config.experimental_configs["simulated_tokens_per_s"])
        self._model = llm_config.model_id

    async def start(self) -> None:
        pass

    async def check_health(self) -> None:
        pass

    def routing_stats(self) -> dict:
        return {}

    async def chat(self, request: Any, raw_request_info: Any = None) -> AsyncIterator[Any]:
        from vllm.entrypoints.openai.chat_completion.protocol import ChatCompletionResponse

        async for item in self._answer("chat.completion", request, ChatCompletionResponse):
            yield item

    async def completions(self, request: Any, raw_request_info: Any = None) -> AsyncIterator[Any]:
        from vllm.entrypoints.openai.completion.protocol import CompletionResponse

        async for item in self._answer("text_completion", request, CompletionResponse):
            yield item

    async def _answer(self, kind: str, request: Any, response_cls: type) -> AsyncIterator[Any]:
        max_tokens = request.max_tokens or 16
        if request.stream:
            include_usage = bool(request.stream_options and request.stream_options.include_usage)
            async for piece in simulated_stream(
                kind, self._model, max_tokens, self._tokens_per_s, include_usage, asyncio.sleep
            ):
                yield piece
        else:
            await asyncio.sleep((max_tokens - 1) / self._tokens_per_s)
            yield response_cls.model_validate(simulated_response(kind, self._model, max_tokens))


class SimulatedPeerServer(LLMServer):
    _default_engine_cls = SimulatedPeerEngine


def peer_app(model: str, tokens_per_s: float):
    """Ray Serve LLM's OpenAI app (ingress + one `LLMServer` replica) on the simulated
    engine; its own limits (no bound on ongoing requests) stand."""
    return ray_serve_llm_cpu_app(
        {"model_id": model},
        server_cls=SimulatedPeerServer,
        experimental_configs={"simulated_tokens_per_s": tokens_per_s},
    )
