"""The shared OpenAI-compatible ingress: one FastAPI app in front of every model.

It parses only what routing needs (a JSON object with a `model`), sends the body to
that model's engine deployment, and turns the engine's first reply into the HTTP
response: an error with its status, a JSON body, or an SSE stream that is passed
through piece by piece (after the first, the pieces come on the replica's direct channel
unless `direct_streams` is off: deployments.response_channel). Protocol validation
happens once, in the engine, with vLLM's own request models.

Before a request leaves, in order: its API key (deployments.auth; 401), the model and
whether the key may use it (404 either way), the model's limits (deployments.admission;
400), its model-card request policy (deployments.request_policy), the key's rate limits
(deployments.rate_limits; 429 + Retry-After). Serve's bounded handle queue answers a full
model with BackPressureError (503 + Retry-After), and `limits.request_timeout_s` bounds
the whole request, streams included (504, or an error event once streaming).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ray.serve.exceptions import BackPressureError
from ray.util import get_node_ip_address

from autoscaling.cold_start import ColdStartGate
from deployments.admission import Admitted, check_limits
from deployments.auth import Principal, load_key_ring
from deployments.config import AppConfig, ModelConfig
from deployments.errors import (
    ErrorReply,
    bad_request,
    engine_unavailable,
    overloaded,
    rate_limited,
    timed_out,
    unauthorized,
    unknown_model,
)
from deployments.observability.request import CLIENT_GONE, RequestObservation
from deployments.rate_limits import RateLimiter
from deployments.request_policy import apply_request_policy
from deployments.response_channel import RelayedStream, ResponseChannel, StreamInbox
from deployments.stream_batching import StreamEnd

logger = logging.getLogger("giantserve.ingress")

# Routing affinity for clients that keep a conversation on one replica (see deployments.routing).
SESSION_HEADER = "x-session-id"

api = FastAPI(title="giantserve", description="OpenAI-compatible API for every model served here")


def error_response(reply: ErrorReply) -> JSONResponse:
    headers = {"Retry-After": str(reply.retry_after_s)} if reply.retry_after_s else None
    return JSONResponse(reply.body(), status_code=reply.status, headers=headers)


@api.exception_handler(StarletteHTTPException)
async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    return error_response(ErrorReply(exc.status_code, str(exc.detail)))


@api.exception_handler(RequestValidationError)
async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    return error_response(bad_request(str(exc.errors()[:3])))


@api.exception_handler(Exception)
async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    # Log the traceback for operators; the client gets a clean body, never a trace.
    logger.exception("unexpected error on %s %s", request.method, request.url.path)
    return error_response(ErrorReply(500, "Internal server error."))


class Ingress:
    """Serve deployment class wrapped by `serve.ingress(api)` in `deployments.app`."""

    def __init__(self, config: AppConfig, engines: dict[str, Any]):
        self._config = config
        self._models_by_name: dict[str, ModelConfig] = {
            name: model for model in config.models for name in model.served_names
        }
        # One streaming handle per model, made once: `.options()` per request costs.
        self._engines = {
            model.name: engines[model.name].options(stream=True) for model in config.models
        }
        # Scale-to-zero models only: a request waits a bounded time for a replica to start.
        self._cold_gates = {
            model.name: ColdStartGate(model.name, model.autoscaling)
            for model in config.models
            if model.autoscaling is not None and model.autoscaling.scale_to_zero
        }
        self._created = int(time.time())
        self._keys = load_key_ring(config.ingress.auth, config.ingress.rate_limits)
        self._rate_limiter = RateLimiter(replicas=config.ingress.num_replicas)
        self._channel: ResponseChannel | None = None

    @api.get("/health")
    async def health(self) -> dict:
        return {"status": "ok"}

    @api.get("/v1/models")
    async def list_models(self, request: Request) -> Response:
        caller = self._keys.verify(request.headers.get("authorization"))
        if caller is None:
            return error_response(unauthorized())
        names = [name for name in self._models_by_name if self._visible(caller, name)]
        return JSONResponse({"object": "list", "data": [self._model_card(n) for n in names]})

    @api.get("/v1/models/{model_id:path}")
    async def get_model(self, model_id: str, request: Request) -> Response:
        caller = self._keys.verify(request.headers.get("authorization"))
        if caller is None:
            return error_response(unauthorized())
        if not self._visible(caller, model_id):
            return error_response(self._unknown(caller, model_id))
        return JSONResponse(self._model_card(model_id))

    @api.post("/v1/chat/completions")
    async def chat_completions(self, request: Request) -> Response:
        observation = RequestObservation("chat")
        return observation.respond(await self._forward("chat", request, observation))

    @api.post("/v1/completions")
    async def completions(self, request: Request) -> Response:
        observation = RequestObservation("completions")
        return observation.respond(await self._forward("completions", request, observation))

    def _model_card(self, name: str) -> dict:
        model = self._models_by_name[name]
        return {
            "id": name,
            "object": "model",
            "created": self._created,
            "owned_by": "giantserve",
            "root": model.name,
            "max_model_len": model.engine_args.get("max_model_len"),
            "request_policy": (
                model.request_policy.model_dump(exclude_none=True) if model.request_policy else None
            ),
        }

    def _visible(self, caller: Principal, name: str) -> bool:
        model = self._models_by_name.get(name)
        return model is not None and (caller.may_use(name) or caller.may_use(model.name))

    def _unknown(self, caller: Principal, name: object) -> ErrorReply:
        # A model the key may not use does not exist, as far as that key can tell.
        return unknown_model(name, [n for n in self._models_by_name if self._visible(caller, n)])

    async def _forward(
        self, kind: str, request: Request, observation: RequestObservation
    ) -> Response:
        caller = self._keys.verify(request.headers.get("authorization"))
        if caller is None:
            return error_response(unauthorized())
        observation.identify(caller.name)
        body = await self._read_json_object(request)
        if isinstance(body, ErrorReply):
            return error_response(body)
        if not self._visible(caller, body["model"]):
            return error_response(self._unknown(caller, body["model"]))
        model = self._models_by_name[body["model"]]
        admitted = check_limits(kind, body, model.limits)
        if isinstance(admitted, ErrorReply):
            return error_response(admitted)
        body = apply_request_policy(kind, admitted.body, model.request_policy)
        session = request.headers.get(SESSION_HEADER)
        if session and not body.get("user"):
            body["user"] = session
        reserved = _token_reservation(admitted)
        wait_s = self._rate_limiter.admit(caller.name, caller.limits, reserved, time.monotonic())
        if wait_s > 0:
            return error_response(rate_limited(wait_s))
        settle = self._settler(caller, reserved)
        timeout_s = model.limits.request_timeout_s
        deadline = time.monotonic() + timeout_s
        body = observation.to_engine(model.name, body)
        inbox = self._stream_inbox() if body.get("stream") is True else None
        try:
            return await self._call_engine(
                kind, model, body, inbox, settle, observation, timeout_s, deadline
            )
        finally:
            if inbox is not None and not inbox.relayed:
                inbox.close()

    def _stream_inbox(self) -> StreamInbox | None:
        if not self._config.ingress.direct_streams:
            return None
        if self._channel is None:  # made on the replica's loop, at its first stream
            self._channel = ResponseChannel(get_node_ip_address())
        return self._channel.open()

    async def _call_engine(
        self,
        kind: str,
        model: ModelConfig,
        body: dict,
        inbox: StreamInbox | None,
        settle: Callable[[int | None], None],
        observation: RequestObservation,
        timeout_s: float,
        deadline: float,
    ) -> Response:
        replies = getattr(self._engines[model.name], kind).remote(
            body, inbox.reply_to if inbox else None
        )
        gate = self._cold_gates.get(model.name)
        hold_s = gate.hold_s(time.monotonic()) if gate else None
        cold_hold = hold_s is not None and hold_s < timeout_s
        try:
            first = await asyncio.wait_for(replies.__anext__(), hold_s if cold_hold else timeout_s)
        except StopAsyncIteration:
            return error_response(engine_unavailable("the engine ended the request without a reply"))
        except TimeoutError:
            replies.cancel()
            if cold_hold:
                # The request already made Serve start a replica; the client comes back then.
                settle(0)
                notice = gate.notice(time.monotonic())
                return error_response(
                    ErrorReply(notice.status, notice.message, retry_after_s=notice.retry_after_s)
                )
            return error_response(timed_out(timeout_s))
        except BackPressureError:
            settle(0)
            return error_response(overloaded(model.name, model.limits.retry_after_s))
        except Exception as error:  # replica dead or restarting
            logger.warning("engine %s failed before replying: %r", model.name, error)
            return error_response(engine_unavailable(type(error).__name__))
        if gate:
            gate.replied(time.monotonic())
        observation.first_reply(first)
        if isinstance(first, ErrorReply):
            settle(0)
            return error_response(first)
        if isinstance(first, dict):
            settle(_total_tokens(first))
            return JSONResponse(first)
        if inbox is not None and first.__class__ is not StreamEnd:
            replies = RelayedStream(replies, inbox)
        return StreamingResponse(
            _stream(first, replies, model.name, deadline, timeout_s, settle, observation),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    def _settler(self, caller: Principal, reserved: int) -> Callable[[int | None], None]:
        """Corrects the caller's token reservation once the real usage is known (None: unknown)."""

        def settle(used: int | None) -> None:
            if used is not None:
                self._rate_limiter.settle(
                    caller.name, caller.limits, reserved, used, time.monotonic()
                )

        return settle

    async def _read_json_object(self, request: Request) -> dict | ErrorReply:
        limit = self._config.ingress.max_body_bytes
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            return ErrorReply(413, f"Request body is larger than {limit} bytes.")
        raw = await request.body()
        if len(raw) > limit:
            return ErrorReply(413, f"Request body is larger than {limit} bytes.")
        try:
            body = json.loads(raw)
        except ValueError as error:
            return bad_request(f"Request body is not valid JSON: {error}")
        if not isinstance(body, dict):
            return bad_request("Request body must be a JSON object.")
        if not isinstance(body.get("model"), str):
            return bad_request("'model' is required and must be a string.", "model")
        return body


def _token_reservation(admitted: Admitted) -> int:
    return admitted.prompt_tokens_estimate + (admitted.max_tokens or 0)


def _total_tokens(response: dict) -> int | None:
    usage = response.get("usage")
    total = usage.get("total_tokens") if isinstance(usage, dict) else None
    return total if isinstance(total, int) else None


def _usage_in(piece: str) -> int | None:
    """total_tokens of a usage event among SSE pieces (a cheap substring test first)."""
    if '"total_tokens"' not in piece:
        return None
    for line in piece.splitlines():
        if line.startswith("data: {") and '"total_tokens"' in line:
            try:
                return _total_tokens(json.loads(line[len("data: ") :]))
            except ValueError:
                return None
    return None


async def _stream(
    first: str | StreamEnd,
    rest: Any,
    model_name: str,
    deadline: float,
    timeout_s: float,
    settle: Callable[[int | None], None],
    observation: RequestObservation,
) -> AsyncIterator[str]:
    """Pass the engine's SSE pieces through; `rest` is Serve's response generator."""
    finished = False
    status = 200
    # One timer per request, not a wait_for (a task) per token: at the deadline it
    # cancels the engine call, and the loop below turns that into a timeout event.
    loop = asyncio.get_running_loop()
    expired = []
    watchdog = loop.call_at(
        loop.time() + (deadline - time.monotonic()), lambda: (expired.append(True), rest.cancel())
    )
    try:
        message = first
        while True:
            if message.__class__ is StreamEnd:
                observation.engine_report(message.report)
                # Decided before the last text leaves: a client that has read `[DONE]`
                # may close at once, and it has lost nothing.
                finished = True
                text = message.text
            else:
                text = message
            used = _usage_in(text)
            if used is not None:
                settle(used)
            if text:
                yield text
            if finished:
                # Not waiting for Serve's end of the call lets the response end a message sooner.
                return
            try:
                message = await rest.__anext__()
            except StopAsyncIteration:
                break
            except (Exception, asyncio.CancelledError):
                if expired:
                    raise TimeoutError from None
                raise
        finished = True
    except TimeoutError:
        logger.warning("stream from engine %s passed its %g s timeout", model_name, timeout_s)
        status = 504
        yield timed_out(timeout_s).sse_event()
        finished = True
    except Exception as error:
        # The status line is gone already: end the stream with an error event, never hang.
        logger.warning("stream from engine %s broke: %r", model_name, error)
        status = 503
        yield engine_unavailable(f"the stream broke ({type(error).__name__})").sse_event()
        finished = True
    finally:
        watchdog.cancel()
        if not finished:
            # The client went away: cancel the engine call so vLLM aborts the request.
            rest.cancel()
        observation.finish(status if finished else CLIENT_GONE)
