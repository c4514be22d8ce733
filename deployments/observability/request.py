"""The ingress's view of one request: metrics, trace spans and the log line, once.

Life cycle (each call once, from deployments.ingress): `RequestObservation(kind)` on
arrival, `identify(key_id)` after auth, `to_engine(model, body)` before the engine call,
`first_reply(first)` when the engine's first reply arrives, `respond(response)` on the
way out, and for a stream `engine_report(report)` from the engine's last message and
`finish(status)` when the stream ends. Nothing here runs per token.
"""

from __future__ import annotations

import time
from typing import Any

from deployments.observability import tracing
from deployments.observability.engine_side import REPORT_KEY, EngineReport
from deployments.observability.metrics import RequestNumbers, record_request
from deployments.observability.request_log import log_request, prompt_text, prompts_logged

TRACE_ID_HEADER = "x-trace-id"
# nginx's code for "the client closed the connection before the response ended".
CLIENT_GONE = 499


def serve_request_id() -> str | None:
    """The id Serve gives the request (also its `x-request-id` response header)."""
    from ray.serve.context import _get_serve_request_context

    return _get_serve_request_context().request_id or None


class RequestObservation:
    __slots__ = (
        "kind", "key_id", "model", "request_id", "_started", "_ttft_s", "_report",
        "_prompt", "_span", "_route", "_done",
    )  # fmt: skip

    def __init__(self, kind: str):
        self.kind = kind
        self.key_id: str | None = None
        self.model = ""
        self.request_id = serve_request_id()
        self._started = time.perf_counter()
        self._ttft_s: float | None = None
        self._report: EngineReport | None = None
        self._prompt: Any = None
        self._route = None
        self._done = False
        tracer = tracing.tracer()
        self._span = None
        if tracer is not None:
            from opentelemetry.trace import SpanKind

            self._span = tracer.start_span(f"POST /v1/{kind}", kind=SpanKind.SERVER)
            self._span.set_attribute("giantserve.request_id", self.request_id or "")

    def identify(self, key_id: str | None) -> None:
        """The API key's id (its entry name, never the key), once auth knows it."""
        self.key_id = key_id

    def to_engine(self, model: str, body: dict[str, Any]) -> dict[str, Any]:
        """Routed to `model` (its canonical name): the body to send, trace context added."""
        self.model = model
        if prompts_logged():
            self._prompt = prompt_text(body)
        if self._span is not None:
            self._route = tracing.child_span(self._span, "route", time.time_ns())
            self._route.set_attribute("giantserve.model", model)
            body[tracing.TRACE_KEY] = tracing.traceparent_of(self._route)
        return body

    def first_reply(self, first: Any) -> None:
        self._ttft_s = time.perf_counter() - self._started
        self._end_route()
        if isinstance(first, dict):
            self._report = first.pop(REPORT_KEY, None)

    def engine_report(self, report: EngineReport | None) -> None:
        self._report = report

    def respond(self, response: Any) -> Any:
        """The HTTP response on its way out; a stream calls `finish` when it ends."""
        from fastapi.responses import StreamingResponse

        if self._span is not None:
            response.headers[TRACE_ID_HEADER] = tracing.trace_id_hex(self._span)
        if not isinstance(response, StreamingResponse):
            self.finish(response.status_code, streamed=False)
        return response

    def finish(self, status: int, streamed: bool = True) -> None:
        if self._done:
            return
        self._done = True
        latency_s = time.perf_counter() - self._started
        report = self._report
        numbers = RequestNumbers(
            model=self.model,
            replica=report.replica if report else "",
            status=status,
            latency_s=latency_s,
            ttft_s=self._ttft_s if streamed else None,
            inter_token_s=report.inter_token_s if report else None,
            overhead_s=latency_s - report.engine_s if report else None,
            prompt_tokens=report.prompt_tokens if report else None,
            generated_tokens=report.generated_tokens if report else None,
        )
        record_request(numbers)
        self._log(numbers, streamed, report)
        self._end_spans(numbers)

    def _log(self, numbers: RequestNumbers, streamed: bool, report: EngineReport | None) -> None:
        fields: dict[str, Any] = {
            "event": "request",
            "request_id": self.request_id,
            "trace_id": tracing.trace_id_hex(self._span) if self._span is not None else None,
            "kind": self.kind,
            "model": self.model or None,
            "key_id": self.key_id,
            "status": numbers.status,
            "stream": streamed,
            "replica": numbers.replica or None,
            "prompt_tokens": numbers.prompt_tokens,
            "generated_tokens": numbers.generated_tokens,
            "latency_s": round(numbers.latency_s, 6),
            "ttft_s": _rounded(numbers.ttft_s),
            "inter_token_s": _rounded(numbers.inter_token_s),
            "engine_s": _rounded(report.engine_s if report else None),
            "overhead_s": _rounded(numbers.overhead_s),
        }
        if self._prompt is not None:
            fields["prompt"] = self._prompt
        log_request(fields)

    def _end_route(self) -> None:
        if self._route is not None and self._route.is_recording():
            self._route.end()

    def _end_spans(self, numbers: RequestNumbers) -> None:
        if self._span is None:
            return
        self._end_route()
        span = self._span
        span.set_attribute("http.response.status_code", numbers.status)
        span.set_attribute("giantserve.model", self.model)
        if numbers.overhead_s is not None:
            span.set_attribute("giantserve.serving_overhead_s", numbers.overhead_s)
        if numbers.status >= 500:
            from opentelemetry.trace import Status, StatusCode

            span.set_status(Status(StatusCode.ERROR))
        span.end()


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 6)
