"""SimulatedLLMEngine: a token-timing test double with the engine deployment's interface.

Not a model: it answers every request with `max_tokens` copies of one token, at a set
time to first token and a set rate per request, with the same replies as `LLMEngine`
(an `ErrorReply`, a whole-response dict, or SSE pieces). It isolates the serving layer
(proxy, ingress, Ray transport) for overhead benchmarks, and gives the autoscaling tests
replicas that start fast. Enabled per model by `simulated_engine:` in a config.
On a GPU placement it also holds the replica's other bundles with placeholder workers
(`deployments.simulated_workers`), so a lost node fails it as it fails vLLM.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from autoscaling.signals import RecentRequests, autoscaling_stats
from deployments.config import ModelConfig, SimulatedEngineConfig
from deployments.errors import bad_request
from deployments.simulated_workers import PlaceholderWorkers
from deployments.response_channel import ReplyTo, StreamSender

_TOKEN = " token"


class SimulatedLLMEngine:
    def __init__(self, model: ModelConfig):
        self.model = model
        self.timing: SimulatedEngineConfig = model.simulated_engine  # type: ignore[assignment]
        self._slots = asyncio.Semaphore(self.timing.max_running)
        self._running = 0
        self._waiting = 0
        self._recent = RecentRequests()
        self._streams = StreamSender(model.stream_batching)
        self._workers = (
            None if model.placement.accelerator == "CPU" else PlaceholderWorkers.for_this_replica()
        )

    async def chat(self, body: dict[str, Any], reply_to: ReplyTo | None = None) -> AsyncIterator[Any]:
        async for item in self._serve("chat.completion", body, reply_to):
            yield item

    async def completions(
        self, body: dict[str, Any], reply_to: ReplyTo | None = None
    ) -> AsyncIterator[Any]:
        async for item in self._serve("text_completion", body, reply_to):
            yield item

    async def _serve(self, kind: str, body: dict[str, Any], reply_to: ReplyTo | None) -> AsyncIterator[Any]:
        max_tokens = body.get("max_tokens", body.get("max_completion_tokens", 16))
        if not isinstance(max_tokens, int) or max_tokens < 1:
            yield bad_request("max_tokens must be a positive integer", "max_tokens")
            return
        arrived_at = time.monotonic()
        self._recent.arrived(arrived_at)
        self._waiting += 1
        async with self._slots:
            self._waiting -= 1
            self._running += 1
            try:
                await self._decode(self.timing.ttft_s)
                now = time.monotonic()
                self._recent.first_token(now - arrived_at, now)
                if body.get("stream"):
                    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
                    pieces = simulated_stream(
                        kind, self.model.name, max_tokens, self.timing.tokens_per_s,
                        include_usage, self._decode,
                    )  # fmt: skip
                    async for message in self._streams.messages(pieces, reply_to):
                        yield message
                else:
                    await self._decode((max_tokens - 1) / self.timing.tokens_per_s)
                    yield simulated_response(kind, self.model.name, max_tokens)
            finally:
                self._running -= 1

    async def _decode(self, seconds: float) -> None:
        # With placeholder workers, a worker lost meanwhile fails the request at once, as a
        # dead vLLM worker does; the ingress turns that into a 503 or a stream's error event.
        if self._workers is None:
            await asyncio.sleep(seconds)
        else:
            await self._workers.run_for(seconds)

    def record_autoscaling_stats(self) -> dict[str, float]:
        """Serve's custom-metrics hook, as `LLMEngine`'s."""
        now = time.monotonic()
        return autoscaling_stats(
            num_waiting=self._waiting,
            num_running=self._running,
            kv_cache_usage=self._running / self.timing.max_running,
            ttft_p90_s=self._recent.ttft_p90_s(now),
            arrivals_per_s=self._recent.arrivals_per_s(now),
        )

    async def engine_stats(self) -> dict[str, Any]:
        return {
            "unfinished_requests": self._running + self._waiting,
            "running": self._running,
            "waiting": self._waiting,
            "kv_cache_usage": self._running / self.timing.max_running,
        }

    async def check_health(self) -> None:
        # Raises once a placeholder worker is dead; Serve then replaces this replica.
        if self._workers is not None:
            await self._workers.check()


async def simulated_stream(
    kind: str, model_name: str, max_tokens: int, tokens_per_s: float, include_usage: bool,
    decode: Callable[[float], Awaitable[None]],
) -> AsyncIterator[str]:
    """The SSE pieces of a streamed answer, one token each `1 / tokens_per_s` seconds
    (`decode` waits); `kind` is "chat.completion" or "text_completion"."""
    ident, created = f"sim-{uuid.uuid4().hex}", int(time.time())
    interval = 1.0 / tokens_per_s
    chunk_kind = "chat.completion.chunk" if kind == "chat.completion" else kind
    started = time.monotonic()
    for index in range(max_tokens):
        if index:
            # Absolute schedule: a late wake-up does not slow the rest of the stream.
            await decode(max(0.0, started + index * interval - time.monotonic()))
        last = index == max_tokens - 1
        choice = {"index": 0, "finish_reason": "length" if last else None}
        if chunk_kind == "chat.completion.chunk":
            choice["delta"] = {"content": _TOKEN}
        else:
            choice["text"] = _TOKEN
        chunk = {"id": ident, "object": chunk_kind, "created": created,
                 "model": model_name, "choices": [choice]}  # fmt: skip
        yield f"data: {json.dumps(chunk)}\n\n"
    if include_usage:
        usage = {"id": ident, "object": chunk_kind, "created": created, "model": model_name,
                 "choices": [], "usage": _usage(max_tokens)}  # fmt: skip
        yield f"data: {json.dumps(usage)}\n\n"
    yield "data: [DONE]\n\n"


def simulated_response(kind: str, model_name: str, max_tokens: int) -> dict:
    """The whole answer of a request that is not streamed."""
    text = _TOKEN * max_tokens
    choice: dict[str, Any] = {"index": 0, "finish_reason": "length"}
    if kind == "chat.completion":
        choice["message"] = {"role": "assistant", "content": text}
    else:
        choice["text"] = text
    return {
        "id": f"sim-{uuid.uuid4().hex}",
        "object": kind,
        "created": int(time.time()),
        "model": model_name,
        "choices": [choice],
        "usage": _usage(max_tokens),
    }


def _usage(completion_tokens: int) -> dict:
    # The double does not tokenize prompts; it reports one prompt token.
    return {"prompt_tokens": 1, "completion_tokens": completion_tokens,
            "total_tokens": completion_tokens + 1}  # fmt: skip
