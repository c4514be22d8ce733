"""Per-key rate limits: requests per minute and tokens per minute, as token buckets.

Tokens are charged in two steps because the ingress does not tokenize. At admission a
request reserves an estimate: its prompt at UTF-8 bytes / 4 (about 4 bytes per token for
English BPE vocabularies; cheap, no tokenizer in the ingress) plus its `max_tokens` (the
most it can produce). When the engine reports `usage`, the reservation is settled against
the real `total_tokens`: the difference is refunded (or charged). A request whose usage
never arrives (a stream without `include_usage`, a broken stream) keeps its reservation,
which errs towards the limit, not past it.

Pure state machines over an explicit clock: the ingress passes `time.monotonic()`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from deployments.config import RateLimits

BYTES_PER_TOKEN = 4


def estimate_prompt_tokens(body: dict[str, Any]) -> int:
    """A cheap upper-ish estimate of a chat or completion request's prompt tokens."""
    size = 0
    messages = body.get("messages")
    for message in messages if isinstance(messages, list) else []:
        if isinstance(message, dict):
            size += _text_bytes(message.get("content"))
    size += _text_bytes(body.get("prompt"))
    return math.ceil(size / BYTES_PER_TOKEN)


def _text_bytes(value: Any) -> int:
    """Bytes of a string, or of a list's strings and text parts (one level: the shapes
    OpenAI allows; token-id prompts count nothing, their length is the engine's to check)."""
    if isinstance(value, str):
        return len(value.encode())
    if not isinstance(value, list):
        return 0
    size = 0
    for item in value:
        if isinstance(item, dict):
            item = item.get("text")
        if isinstance(item, str):
            size += len(item.encode())
    return size


@dataclass
class TokenBucket:
    """`capacity` units, refilled continuously at capacity per minute."""

    capacity: float
    level: float = field(init=False)
    updated: float = field(init=False, default=-math.inf)

    def __post_init__(self) -> None:
        self.level = self.capacity

    def _refill(self, now: float) -> None:
        if self.updated != -math.inf:
            refill = (now - self.updated) * self.capacity / 60.0
            self.level = min(self.capacity, self.level + refill)
        self.updated = now

    def wait_s(self, amount: float, now: float) -> float:
        """Seconds until `amount` fits (0: fits now). Amounts above capacity are capped to
        capacity, so a single large request waits for a full bucket instead of forever."""
        self._refill(now)
        missing = min(amount, self.capacity) - self.level
        return 0.0 if missing <= 0 else missing * 60.0 / self.capacity

    def take(self, amount: float, now: float) -> None:
        self._refill(now)
        self.level -= amount  # may go negative: a settled overrun delays the next request

    def give_back(self, amount: float, now: float) -> None:
        self._refill(now)
        self.level = min(self.capacity, self.level + amount)


@dataclass
class _KeyBuckets:
    requests: TokenBucket | None
    tokens: TokenBucket | None


class RateLimiter:
    """All keys' buckets in one of `replicas` ingress replicas.

    Each replica enforces 1/replicas of every limit: HAProxy balances connections across
    the replicas (least connections), so a key's traffic, and its allowance, split about
    evenly without the replicas sharing state on the request path.
    """

    def __init__(self, replicas: int = 1) -> None:
        self._share = 1.0 / replicas
        self._buckets: dict[str, _KeyBuckets] = {}

    def _for(self, key: str, limits: RateLimits) -> _KeyBuckets:
        buckets = self._buckets.get(key)
        if buckets is None:
            share = self._share
            buckets = _KeyBuckets(
                TokenBucket(limits.requests_per_min * share) if limits.requests_per_min else None,
                TokenBucket(limits.tokens_per_min * share) if limits.tokens_per_min else None,
            )
            self._buckets[key] = buckets
        return buckets

    def admit(self, key: str, limits: RateLimits, tokens: int, now: float) -> float:
        """0 and charged when the request may go now, else the seconds to wait (nothing charged)."""
        buckets = self._for(key, limits)
        waits = [
            bucket.wait_s(amount, now)
            for bucket, amount in ((buckets.requests, 1), (buckets.tokens, tokens))
            if bucket is not None
        ]
        wait = max(waits, default=0.0)
        if wait > 0:
            return wait
        if buckets.requests:
            buckets.requests.take(1, now)
        if buckets.tokens:
            buckets.tokens.take(tokens, now)
        return 0.0

    def settle(self, key: str, limits: RateLimits, reserved: int, used: int, now: float) -> None:
        """Correct a reservation of `reserved` tokens to the `used` the engine reported."""
        bucket = self._for(key, limits).tokens
        if bucket is None or used == reserved:
            return
        if used < reserved:
            bucket.give_back(reserved - used, now)
        else:
            bucket.take(used - reserved, now)
