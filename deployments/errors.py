"""OpenAI error bodies: every failure a client sees has this shape and a real status."""

from __future__ import annotations

import json
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
