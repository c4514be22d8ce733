"""Per-model request limits (`ModelConfig.limits`) checked on a body before it is sent."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from deployments.config import LimitsConfig
from deployments.errors import ErrorReply, bad_request
from deployments.rate_limits import estimate_prompt_tokens

# Chat accepts the older `max_tokens` and the newer `max_completion_tokens`.
_LENGTH_FIELDS = {"chat": ("max_completion_tokens", "max_tokens"), "completions": ("max_tokens",)}


@dataclass(frozen=True)
class Admitted:
    body: dict[str, Any]
    prompt_tokens_estimate: int
    max_tokens: int | None  # None: unset and no cap (the engine fills the context)


def check_limits(kind: str, body: dict[str, Any], limits: LimitsConfig) -> Admitted | ErrorReply:
    estimate = estimate_prompt_tokens(body)
    if limits.max_prompt_tokens is not None and estimate > limits.max_prompt_tokens:
        return bad_request(
            f"The prompt is about {estimate} tokens; this model accepts at most "
            f"{limits.max_prompt_tokens} (estimated as UTF-8 bytes / 4).",
            "messages" if kind == "chat" else "prompt",
        )
    fields = _LENGTH_FIELDS[kind]
    asked = next((body[f] for f in fields if body.get(f) is not None), None)
    cap = limits.max_tokens_cap
    if cap is not None:
        if asked is None:
            body = {**body, fields[-1]: cap}
            asked = cap
        elif isinstance(asked, int) and asked > cap:
            return bad_request(
                f"max_tokens={asked} is above this model's limit of {cap}.", fields[-1]
            )
    # A non-integer is vLLM's to refuse with its own message.
    return Admitted(body, estimate, asked if isinstance(asked, int) and asked > 0 else None)
