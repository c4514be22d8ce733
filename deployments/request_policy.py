"""Model-card request policies (`ModelConfig.request_policy`) applied to a request body.

Only fields the client left unset are filled: an explicit `temperature` (even 0), an
explicit mode switch or a system prompt the policy would not fold are the client's call.
A body of an unexpected shape is returned unchanged: vLLM validates it afterwards and
answers with its own error.
"""

from __future__ import annotations

import copy
from typing import Any

from deployments.config import RequestPolicy


def apply_request_policy(
    kind: str, body: dict[str, Any], policy: RequestPolicy | None
) -> dict[str, Any]:
    """A new body for `kind` ("chat" or "completions"); `body` itself is not modified."""
    if policy is None:
        return body
    body = copy.copy(body)
    sampling = policy.sampling.values()
    if kind == "chat" and policy.mode is not None:
        sampling.update(_mode_sampling(body, policy))
    for name, value in sampling.items():
        if body.get(name) is None:
            body[name] = value
    if kind == "chat" and isinstance(body.get("messages"), list):
        messages = body["messages"]
        if policy.system_prompt == "fold_into_first_user":
            messages = fold_system_into_first_user(messages)
        if policy.math_instruction:
            messages = append_to_last_user(messages, policy.math_instruction)
        body["messages"] = messages
    return body


def _mode_sampling(body: dict[str, Any], policy: RequestPolicy) -> dict[str, Any]:
    """The sampling of the mode this request runs in; sets the switch when unset, so the
    chat template and the sampling always agree on the mode."""
    mode = policy.mode
    assert mode is not None
    kwargs = body.get("chat_template_kwargs")
    if kwargs is None:
        kwargs = {}
    if not isinstance(kwargs, dict):
        return {}
    kwargs = dict(kwargs)
    on = kwargs.get(mode.kwarg)
    if on is None:
        on = kwargs[mode.kwarg] = mode.default
    body["chat_template_kwargs"] = kwargs
    return (mode.when_on if on else mode.when_off).values()


def _text_of(content: Any) -> str | None:
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(
        isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)
        for part in content
    ):
        return "\n".join(part["text"] for part in content)
    return None


def fold_system_into_first_user(messages: list[Any]) -> list[Any]:
    """System messages removed; their text leads the first user message (DeepSeek-R1:
    "avoid adding a system prompt; all instructions should be contained within the user
    prompt"). Unchanged when there is no system message or a part is not plain text."""
    if not all(isinstance(m, dict) for m in messages):
        return messages
    system = [m for m in messages if m.get("role") in ("system", "developer")]
    if not system:
        return messages
    texts = [_text_of(m.get("content")) for m in system]
    first_user = next((i for i, m in enumerate(messages) if m.get("role") == "user"), None)
    if any(t is None for t in texts) or first_user is None:
        return messages
    user_text = _text_of(messages[first_user].get("content"))
    if user_text is None:
        return messages
    folded = []
    for index, message in enumerate(messages):
        if message in system:
            continue
        if index == first_user:
            message = {**message, "content": "\n\n".join([*texts, user_text])}
        folded.append(message)
    return folded


def append_to_last_user(messages: list[Any], instruction: str) -> list[Any]:
    """`instruction` after the last user message's text, unless already there."""
    for index in range(len(messages) - 1, -1, -1):
        message = messages[index]
        if isinstance(message, dict) and message.get("role") == "user":
            text = _text_of(message.get("content"))
            if text is None or instruction in text:
                return messages
            updated = list(messages)
            updated[index] = {**message, "content": f"{text}\n{instruction}"}
            return updated
    return messages
