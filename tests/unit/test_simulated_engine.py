"""The token-timing test double answers like the real engine deployment."""

from __future__ import annotations

import asyncio
import json

import pytest
from pydantic import ValidationError

from deployments.config import ModelConfig
from deployments.errors import ErrorReply
from deployments.simulated_engine import SimulatedLLMEngine
from deployments.stream_batching import StreamEnd


def engine(**timing) -> SimulatedLLMEngine:
    config = {"ttft_s": 0.0, "tokens_per_s": 10_000.0, **timing}
    return SimulatedLLMEngine(ModelConfig(name="sim", simulated_engine=config))


async def replies(method, body) -> list:
    return [item async for item in method(body)]


def test_a_model_needs_weights_unless_simulated():
    with pytest.raises(ValidationError, match="weights: required"):
        ModelConfig(name="m")


def test_stream_has_the_requested_tokens_usage_and_done():
    items = asyncio.run(
        replies(
            engine().chat,
            {"max_tokens": 5, "stream": True, "stream_options": {"include_usage": True}},
        )
    )
    # Several SSE events may travel in one item (deployments.stream_batching).
    assert items[-1].__class__ is StreamEnd
    texts = items[:-1] + [items[-1].text]
    events = [line[len("data: ") :] for text in texts for line in text.splitlines() if line]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert sum(1 for c in chunks if c["choices"]) == 5
    assert chunks[-1]["usage"]["completion_tokens"] == 5
    assert chunks[-2]["choices"][0]["finish_reason"] == "length"


def test_non_streamed_completion_is_one_dict_with_usage():
    (reply,) = asyncio.run(replies(engine().completions, {"max_tokens": 3}))
    assert reply["object"] == "text_completion"
    assert reply["usage"]["completion_tokens"] == 3


def test_bad_max_tokens_is_a_400():
    (reply,) = asyncio.run(replies(engine().chat, {"max_tokens": -1}))
    assert isinstance(reply, ErrorReply) and reply.status == 400


def test_requests_beyond_max_running_wait():
    async def scenario():
        sim = engine(max_running=1, tokens_per_s=20.0)
        first = asyncio.create_task(replies(sim.chat, {"max_tokens": 4}))
        second = asyncio.create_task(replies(sim.chat, {"max_tokens": 4}))
        await asyncio.sleep(0.05)
        stats = await sim.engine_stats()
        await asyncio.gather(first, second)
        return stats, await sim.engine_stats()

    during, after = asyncio.run(scenario())
    assert during["running"] == 1 and during["waiting"] == 1
    assert after["unfinished_requests"] == 0
