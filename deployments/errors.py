"""OpenAI error bodies: every failure a client sees has this shape and a real status."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from http import HTTPStatus

_TYPE_BY_STATUS = {
    400: "BadRequestError",
    401: "AuthenticationError",
    403: "PermissionDeniedError",
    404: "NotFoundError",
    408: "TimeoutError",
    413: "RequestTooLargeError",
    422: "UnprocessableEntityError",
    429: "RateLimitError",
    503: "ServiceUnavailableError",
    504: "TimeoutError",
}


@dataclass(frozen=True)
class ErrorReply:
    """A failure crossing from an engine replica to the ingress, or made by the ingress."""

    status: int
    message: str
    param: str | None = None
    retry_after_s: int | None = None

    def body(self) -> dict:
        return {
            "error": {
                "message": self.message,
                "type": _TYPE_BY_STATUS.get(self.status, HTTPStatus(self.status).phrase.replace(" ", "")),
                "param": self.param,
                "code": self.status,
            }
        }

    def sse_event(self) -> str:
        """The same error as the last event of a stream that already started."""
        return f"data: {json.dumps(self.body())}\n\ndata: [DONE]\n\n"


def bad_request(message: str, param: str | None = None) -> ErrorReply:
    return ErrorReply(400, message, param)


def unknown_model(name: object, known: list[str]) -> ErrorReply:
    return ErrorReply(
        404,
        f"The model {name!r} does not exist. Models served here: {', '.join(known)}.",
        "model",
    )


def engine_unavailable(detail: str, retry_after_s: int = 5) -> ErrorReply:
    return ErrorReply(503, f"The model's engine is unavailable: {detail}", retry_after_s=retry_after_s)


def unauthorized() -> ErrorReply:
    # Same answer for a missing and a wrong key: nothing to learn from the difference.
    return ErrorReply(
        401, "Missing or invalid API key. Send it as 'Authorization: Bearer <key>'."
    )


def rate_limited(retry_after_s: float) -> ErrorReply:
    return ErrorReply(
        429,
        "Rate limit reached for this API key; retry after the Retry-After seconds.",
        retry_after_s=max(1, math.ceil(retry_after_s)),
    )


def overloaded(model: str, retry_after_s: int) -> ErrorReply:
    return ErrorReply(
        503,
        f"The model {model!r} is at capacity (its request queue is full); retry later.",
        retry_after_s=retry_after_s,
    )


def timed_out(timeout_s: float) -> ErrorReply:
    return ErrorReply(504, f"The request did not finish within {timeout_s:g} s and was cancelled.")
