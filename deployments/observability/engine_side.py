"""The engine replica's side: its own timing of each request, reported to the ingress.

Design (no per-token cost): vLLM already computes each finished request's token counts
and queue / prefill / decode times for its own stats (`FinishedRequestStats`, delivered
to stat loggers in the same step that delivers the request's last output). A stat
logger keeps them by request id; when the request has ended, the engine adds one
`EngineReport` (its own time from arrival in this replica to the end, plus vLLM's
numbers) to the last message: on a stream's `StreamEnd`, or under `REPORT_KEY` in a
whole-response dict. The ingress subtracts the engine's time from its
own end-to-end time: that difference is the serving layer's overhead.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from collections.abc import Callable
from typing import Any

from deployments.observability import tracing
from deployments.observability.metrics import EngineNumbers, record_engine

REPORT_KEY = "_giantserve_report"
# Finished-request stats waiting to be claimed; bounded because an aborted request never
# claims its entry. Far more than the requests one replica holds at once.
_KEEP_FINISHED = 8192
EXPORT_INTERVAL_S = 5.0


@dataclass(slots=True)
class EngineReport:
    """One request as the engine replica saw it (None: vLLM's stats were not available)."""

    replica: str
    engine_s: float
    prompt_tokens: int | None = None
    generated_tokens: int | None = None
    inter_token_s: float | None = None


def replica_id() -> str:
    from ray import serve

    try:
        return serve.get_replica_context().replica_id.unique_id
    except RuntimeError:  # not inside a Serve replica (unit tests, scripts)
        return ""


class RequestStatsProbe:
    """A vLLM stat logger's state: finished requests by id, prefix-cache totals, scheduler."""

    def __init__(self) -> None:
        self.finished: OrderedDict[str, list[Any]] = OrderedDict()
        self.latest_scheduler = None
        self.prefix_queries = 0
        self.prefix_hits = 0

    def record(self, scheduler_stats: Any, iteration_stats: Any) -> None:
        if scheduler_stats is not None:
            self.latest_scheduler = scheduler_stats
            self.prefix_queries += scheduler_stats.prefix_cache_stats.queries
            self.prefix_hits += scheduler_stats.prefix_cache_stats.hits
        if iteration_stats is not None:
            for finished in iteration_stats.finished_requests:
                self.finished.setdefault(finished.request_id, []).append(finished)
            while len(self.finished) > _KEEP_FINISHED:
                self.finished.popitem(last=False)

    def claim(self, request_id: str) -> list[Any]:
        claimed = self.finished.pop(request_id, [])
        # A completion with several prompts finishes as `<id>-0`, `<id>-1`, ...
        index = 0
        while (part := self.finished.pop(f"{request_id}-{index}", None)) is not None:
            claimed.extend(part)
            index += 1
        return claimed

    def factory(self) -> type:
        from vllm.v1.metrics.loggers import StatLoggerBase

        probe = self

        class _Logger(StatLoggerBase):
            def __init__(self, vllm_config, engine_index: int = 0):
                pass

            def record(self, scheduler_stats, iteration_stats, mm_cache_stats=None, engine_idx=0):
                probe.record(scheduler_stats, iteration_stats)

            def log_engine_initialized(self):
                pass

        return _Logger


class EngineRequest:
    """One request in the engine replica, from arrival to its report."""

    __slots__ = ("_observer", "_started", "_start_ns", "_traceparent", "_vllm_id")

    def __init__(self, observer: EngineObserver, kind: str, body: dict[str, Any]):
        self._observer = observer
        self._started = time.perf_counter()
        self._start_ns = time.time_ns()
        self._traceparent = body.pop(tracing.TRACE_KEY, None)
        if "request_id" not in body:
            # Our id, so that vLLM's finished-request stats can be found by it.
            body["request_id"] = uuid.uuid4().hex
        # vLLM's own id of the request (a non-string id fails vLLM's validation anyway).
        self._vllm_id = ("chatcmpl-" if kind == "chat" else "cmpl-") + str(body["request_id"])

    def report(self) -> EngineReport:
        """Call once, when the request has ended, for its last message."""
        engine_s = time.perf_counter() - self._started
        report = EngineReport(self._observer.replica, engine_s)
        finished = self._observer.probe.claim(self._vllm_id)
        if finished:
            report.prompt_tokens = sum(f.num_prompt_tokens for f in finished)
            report.generated_tokens = sum(f.num_generation_tokens for f in finished)
            report.inter_token_s = finished[0].mean_time_per_output_token or None
        if tracing.tracer() is not None:
            self._trace(finished[0] if finished else None)
        return report

    def attach(self, response: dict[str, Any]) -> dict[str, Any]:
        """A whole-response dict with this request's report under REPORT_KEY."""
        response[REPORT_KEY] = self.report()
        return response

    def _trace(self, finished: Any) -> None:
        from opentelemetry.trace import SpanKind

        end_ns = time.time_ns()
        span = tracing.tracer().start_span(
            "engine",
            context=tracing.context_from_traceparent(self._traceparent),
            kind=SpanKind.SERVER,
            start_time=self._start_ns,
            attributes={"giantserve.replica": self._observer.replica,
                        "giantserve.model": self._observer.model},
        )  # fmt: skip
        if finished is not None:
            # vLLM gives durations; the decode phase ends at the last token, just before
            # the last piece left: lay the phases out backwards from there.
            decode_start = end_ns - int(finished.decode_time * 1e9)
            prefill_start = decode_start - int(finished.prefill_time * 1e9)
            queue_start = max(prefill_start - int(finished.queued_time * 1e9), self._start_ns)
            tracing.closed_child(span, "queue", queue_start, max(prefill_start, queue_start))
            tracing.closed_child(span, "prefill", max(prefill_start, queue_start), decode_start)
            tracing.closed_child(span, "decode", decode_start, end_ns)
            span.set_attribute("gen_ai.usage.input_tokens", finished.num_prompt_tokens)
            span.set_attribute("gen_ai.usage.output_tokens", finished.num_generation_tokens)
        span.end(end_time=end_ns)


class EngineObserver:
    """Per engine replica: starts EngineRequests, exports the engine gauges periodically."""

    def __init__(self, model: str, probe: RequestStatsProbe, unfinished: Callable[[], int]):
        self.model = model
        self.probe = probe
        self._unfinished = unfinished
        self.replica = replica_id()
        self._exported_queries = 0
        self._exported_hits = 0
        self._task = asyncio.get_running_loop().create_task(self._export_forever())

    def begin(self, kind: str, body: dict[str, Any]) -> EngineRequest:
        return EngineRequest(self, kind, body)

    def engine_numbers(self) -> EngineNumbers:
        # vLLM reports scheduler numbers only with outputs: once idle, the last ones are stale.
        latest = self.probe.latest_scheduler if self._unfinished() else None
        queries, hits = self.probe.prefix_queries, self.probe.prefix_hits
        numbers = EngineNumbers(
            running=latest.num_running_reqs if latest else 0,
            waiting=latest.num_waiting_reqs if latest else 0,
            kv_cache_usage=latest.kv_cache_usage if latest else 0.0,
            prefix_queries=queries - self._exported_queries,
            prefix_hits=hits - self._exported_hits,
        )
        self._exported_queries, self._exported_hits = queries, hits
        return numbers

    async def _export_forever(self) -> None:
        while True:
            record_engine(self.model, self.replica, self.engine_numbers())
            await asyncio.sleep(EXPORT_INTERVAL_S)
