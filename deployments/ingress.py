"""The shared OpenAI-compatible ingress: one FastAPI app in front of every model.

It parses only what routing needs (a JSON object with a `model`), sends the body to
that model's engine deployment, and turns the engine's first reply into the HTTP
response: an error with its status, a JSON body, or an SSE stream that is passed
through piece by piece. Protocol validation happens once, in the engine, with vLLM's
own request models.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from deployments.config import AppConfig, ModelConfig
from deployments.errors import ErrorReply, bad_request, engine_unavailable, unknown_model

logger = logging.getLogger("giantserve.ingress")

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
        self._created = int(time.time())

    @api.get("/health")
    async def health(self) -> dict:
        return {"status": "ok"}

    @api.get("/v1/models")
    async def list_models(self) -> dict:
        return {"object": "list", "data": [self._model_card(name) for name in self._models_by_name]}

    @api.get("/v1/models/{model_id:path}")
    async def get_model(self, model_id: str) -> Response:
        if model_id not in self._models_by_name:
            return error_response(unknown_model(model_id, list(self._models_by_name)))
        return JSONResponse(self._model_card(model_id))

    @api.post("/v1/chat/completions")
    async def chat_completions(self, request: Request) -> Response:
        return await self._forward("chat", request)

    @api.post("/v1/completions")
    async def completions(self, request: Request) -> Response:
        return await self._forward("completions", request)

    def _model_card(self, name: str) -> dict:
        model = self._models_by_name[name]
        return {
            "id": name,
            "object": "model",
            "created": self._created,
            "owned_by": "giantserve",
            "root": model.name,
            "max_model_len": model.engine_args.get("max_model_len"),
        }

    async def _forward(self, kind: str, request: Request) -> Response:
        body = await self._read_json_object(request)
        if isinstance(body, ErrorReply):
            return error_response(body)
        model = self._models_by_name.get(body.get("model"))
        if model is None:
            return error_response(unknown_model(body.get("model"), list(self._models_by_name)))
        engine = getattr(self._engines[model.name], kind)
        replies = engine.remote(body)
        try:
            first = await replies.__anext__()
        except StopAsyncIteration:
            return error_response(engine_unavailable("the engine ended the request without a reply"))
        except Exception as error:  # replica dead, restarting, or Serve back-pressure
            logger.warning("engine %s failed before replying: %r", model.name, error)
            return error_response(engine_unavailable(type(error).__name__))
        if isinstance(first, ErrorReply):
            return error_response(first)
        if isinstance(first, dict):
            return JSONResponse(first)
        return StreamingResponse(
            _stream(first, replies, model.name),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

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


async def _stream(first: str, rest: Any, model_name: str) -> AsyncIterator[str]:
    """Pass the engine's SSE pieces through; `rest` is Serve's response generator."""
    finished = False
    try:
        yield first
        async for piece in rest:
            yield piece
        finished = True
    except Exception as error:
        # The status line is gone already: end the stream with an error event, never hang.
        logger.warning("stream from engine %s broke: %r", model_name, error)
        yield engine_unavailable(f"the stream broke ({type(error).__name__})").sse_event()
        finished = True
    finally:
        if not finished:
            # The client went away: cancel the engine call so vLLM aborts the request.
            rest.cancel()
