"""The engine deployment: one vLLM AsyncLLM per replica, served through vLLM's own
OpenAI serving code (`OpenAIServingChat`, `OpenAIServingCompletion`).

Calls from the ingress are Serve streaming calls. Each yields, in order:
- an `ErrorReply` and nothing else, for a request the engine refuses;
- a `dict` (the whole response) and nothing else, for a non-streamed request;
- for a streamed one, `str` pieces of the SSE stream and last a `StreamEnd`: all of them
  grouped into fewer messages once the replica is busy (deployments.stream_batching), or,
  when the call names a `reply_to`, only the first piece, the rest going to the ingress
  on its direct channel (deployments.response_channel).
Both a whole response (under `REPORT_KEY`) and a `StreamEnd` carry this replica's
`EngineReport` for the ingress: see deployments.observability.engine_side.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import AsyncIterator
from typing import Any

from pydantic import ValidationError

from autoscaling.signals import RecentRequests, autoscaling_stats
from deployments.config import ModelConfig
from deployments.errors import ErrorReply, bad_request
from deployments.observability.engine_side import EngineObserver, RequestStatsProbe
from deployments.response_channel import ReplyTo, StreamSender
from deployments.stream_batching import StreamEnd
from deployments.vllm_args import build_vllm_args

logger = logging.getLogger("giantserve.engine")


class SchedulerStatsProbe:
    """Keeps the latest scheduler numbers vLLM reports (running, waiting, KV usage)."""

    def __init__(self) -> None:
        self.latest = None

    def factory(self):
        from vllm.v1.metrics.loggers import StatLoggerBase

        probe = self

        class _Logger(StatLoggerBase):
            def __init__(self, vllm_config, engine_index: int = 0):
                pass

            def record(self, scheduler_stats, iteration_stats, mm_cache_stats=None, engine_idx=0):
                if scheduler_stats is not None:
                    probe.latest = scheduler_stats

            def log_engine_initialized(self):
                pass

        return _Logger


class LLMEngine:
    """Serve deployment class; `deployments.app` binds one per model."""

    async def __init__(self, model: ModelConfig):
        # First, before vLLM's slow imports: a node without a complete staged copy of the
        # weights refuses at once, naming the `stage` command (WeightsNotStagedError).
        model_path = model.weights.resolve()

        from ray.util.placement_group import get_current_placement_group
        from vllm.usage.usage_lib import UsageContext
        from vllm.v1.engine.async_llm import AsyncLLM
        from starlette.datastructures import State

        from deployments.vllm_compat import init_app_state_fn

        init_app_state = init_app_state_fn()

        self.model = model
        on_gpu = model.placement.accelerator != "CPU"
        engine_args, namespace = build_vllm_args(
            model, model_path, on_ray_executor=on_gpu
        )
        vllm_config = engine_args.create_engine_config(usage_context=UsageContext.OPENAI_API_SERVER)
        if on_gpu:
            # vLLM's Ray executor puts one worker in each bundle of this replica's group.
            vllm_config.parallel_config.placement_group = get_current_placement_group()
            from cluster.gpu_stats_actor import ensure_gpu_stats_actors, placement_group_nodes

            ensure_gpu_stats_actors(placement_group_nodes(get_current_placement_group()))
        self._stats = SchedulerStatsProbe()
        self._recent = RecentRequests()
        self._streams = StreamSender(model.stream_batching)
        request_stats = RequestStatsProbe()
        self.engine = AsyncLLM.from_vllm_config(
            vllm_config,
            usage_context=UsageContext.OPENAI_API_SERVER,
            stat_loggers=[self._stats.factory(), request_stats.factory()],
            enable_log_requests=engine_args.enable_log_requests,
            disable_log_stats=False,
        )
        state = State()
        await init_app_state(
            self.engine, state, namespace, supported_tasks=await self.engine.get_supported_tasks()
        )
        self._chat = state.openai_serving_chat
        self._completion = state.openai_serving_completion
        self._request_models = _request_models()
        self._observer = EngineObserver(
            model.name, request_stats, self.engine.output_processor.get_num_unfinished_requests
        )
        logger.info("engine for %s ready (pid %d)", model.name, os.getpid())

    async def chat(self, body: dict[str, Any], reply_to: ReplyTo | None = None) -> AsyncIterator[Any]:
        async for item in self._serve("chat", body, reply_to):
            yield item

    async def completions(
        self, body: dict[str, Any], reply_to: ReplyTo | None = None
    ) -> AsyncIterator[Any]:
        async for item in self._serve("completions", body, reply_to):
            yield item

    async def _serve(self, kind: str, body: dict[str, Any], reply_to: ReplyTo | None) -> AsyncIterator[Any]:
        observed = self._observer.begin(kind, body)
        arrived_at = time.monotonic()
        self._recent.arrived(arrived_at)
        request_cls, serving, create = {
            "chat": (self._request_models.chat, self._chat, "create_chat_completion"),
            "completions": (self._request_models.completion, self._completion, "create_completion"),
        }[kind]
        if serving is None:
            yield bad_request(f"{self.model.name} does not serve /{kind}")
            return
        try:
            request = request_cls.model_validate(body)
            result = await getattr(serving, create)(request, raw_request=None)
        except ValidationError as error:
            yield _validation_error(error)
            return
        except (ValueError, *self._request_models.client_errors) as error:
            # vLLM's own mapping from its exception types to status codes.
            result = serving.create_error_response(error)
        except TypeError as error:
            # vLLM's validators and preprocessing raise TypeError on some bodies of the
            # wrong shape (seen with generated hostile input): the request is at fault.
            yield bad_request(f"Invalid request: {error}")
            return
        if isinstance(result, self._request_models.error):
            # Plain types: vLLM's code may be an HTTPStatus; replies cross process borders.
            yield ErrorReply(int(result.error.code), str(result.error.message), result.error.param)
        elif hasattr(result, "model_dump"):
            # A whole response: its first token's time is unknown, its last one's is an
            # upper bound, which errs towards more replicas.
            self._first_token(arrived_at)
            yield observed.attach(result.model_dump(mode="json", exclude_none=True))
        else:
            first = True
            async for message in self._streams.messages(result, reply_to):
                if first:
                    # vLLM sends nothing before the first token is out (the role chunk
                    # comes with it): one timestamp per request, none per token.
                    self._first_token(arrived_at)
                    first = False
                if message.__class__ is StreamEnd:
                    message.report = observed.report()
                yield message

    def _first_token(self, arrived_at: float) -> None:
        now = time.monotonic()
        self._recent.first_token(now - arrived_at, now)

    def record_autoscaling_stats(self) -> dict[str, float]:
        """Serve's custom-metrics hook: what `autoscaling.policy` decides on."""
        latest = self._stats.latest
        now = time.monotonic()
        return autoscaling_stats(
            num_waiting=latest.num_waiting_reqs if latest else 0,
            num_running=latest.num_running_reqs if latest else 0,
            kv_cache_usage=latest.kv_cache_usage if latest else 0.0,
            ttft_p90_s=self._recent.ttft_p90_s(now),
            arrivals_per_s=self._recent.arrivals_per_s(now),
        )

    async def engine_stats(self) -> dict[str, Any]:
        """What the engine holds now: unfinished requests and the scheduler's last numbers."""
        latest = self._stats.latest
        return {
            "unfinished_requests": self.engine.output_processor.get_num_unfinished_requests(),
            "running": latest.num_running_reqs if latest else 0,
            "waiting": latest.num_waiting_reqs if latest else 0,
            "kv_cache_usage": latest.kv_cache_usage if latest else 0.0,
            "kv_cache_tokens": self._kv_cache_tokens(),
        }

    def _kv_cache_tokens(self) -> int:
        """The KV-cache size vLLM allocated, in tokens (what it logs at start-up)."""
        cache = self.engine.vllm_config.cache_config
        return (cache.num_gpu_blocks or 0) * cache.block_size

    async def check_health(self) -> None:
        # Raises once the engine core process is dead; Serve then replaces this replica.
        await self.engine.check_health()

    def __del__(self):
        engine = getattr(self, "engine", None)
        if engine is not None:
            engine.shutdown()


class _RequestModels:
    def __init__(self, chat, completion, error, client_errors):
        self.chat, self.completion, self.error = chat, completion, error
        self.client_errors = client_errors


def _request_models() -> _RequestModels:
    from vllm.entrypoints.openai.chat_completion.protocol import ChatCompletionRequest
    from vllm.entrypoints.openai.completion.protocol import CompletionRequest

    from deployments.vllm_compat import client_error_types, error_response_cls

    return _RequestModels(
        ChatCompletionRequest, CompletionRequest, error_response_cls(), client_error_types()
    )


def _validation_error(error: ValidationError) -> ErrorReply:
    problems = error.errors(include_url=False, include_input=False)
    first = problems[0]
    param = ".".join(str(part) for part in first.get("loc", ())) or None
    message = "; ".join(
        f"{'.'.join(str(p) for p in problem.get('loc', ())) or 'body'}: {problem['msg']}"
        for problem in problems[:5]
    )
    return bad_request(message, param)
