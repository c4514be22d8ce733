"""The overhead bench's peer engine answers Ray Serve LLM as our simulated engine answers
our ingress: same SSE events, same whole responses (bench/overhead/peer_engine.py)."""

from __future__ import annotations

import asyncio
import json

import pytest

# Ray Serve LLM imports pyarrow, which only the `bench` extra installs.
pytest.importorskip("pyarrow", reason="the bench extra (pip install .[bench]) is not installed")

from ray.serve.llm import LLMConfig  # noqa: E402
from vllm.entrypoints.openai.chat_completion.protocol import ChatCompletionRequest  # noqa: E402
from vllm.entrypoints.openai.completion.protocol import (  # noqa: E402
    CompletionRequest,
    CompletionResponse,
)

from bench.overhead.peer_engine import SimulatedPeerEngine, SimulatedPeerServer  # noqa: E402


def peer_engine() -> SimulatedPeerEngine:
    config = LLMConfig(
        model_loading_config={"model_id": "sim"},
        server_cls=SimulatedPeerServer,
        accelerator_config={"kind": "cpu"},
        experimental_configs={"simulated_tokens_per_s": 10_000.0},
    )
    return SimulatedPeerEngine(config)


async def answers(stream) -> list:
    return [item async for item in stream]


def events(pieces: list[str]) -> list:
    assert all(piece.startswith("data: ") and piece.endswith("\n\n") for piece in pieces)
    return [piece[len("data: "):].strip() for piece in pieces]


def test_a_streamed_chat_has_the_tokens_usage_and_done():
    request = ChatCompletionRequest(
        model="sim", messages=[{"role": "user", "content": "x"}], max_tokens=4, stream=True,
        stream_options={"include_usage": True},
    )  # fmt: skip
    *chunks, usage, done = events(asyncio.run(answers(peer_engine().chat(request))))
    assert done == "[DONE]"
    assert [json.loads(c)["choices"][0]["delta"]["content"] for c in chunks] == [" token"] * 4
    assert json.loads(chunks[-1])["choices"][0]["finish_reason"] == "length"
    assert json.loads(usage)["usage"]["completion_tokens"] == 4


def test_a_whole_completion_is_vllms_response_type():
    request = CompletionRequest(model="sim", prompt="x", max_tokens=3)
    (response,) = asyncio.run(answers(peer_engine().completions(request)))
    assert isinstance(response, CompletionResponse)
    assert response.choices[0].text == " token" * 3
    assert response.usage.completion_tokens == 3
