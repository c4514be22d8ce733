"""What a client gets while a model that scaled to zero starts again: a bounded hold, then 503.

At zero replicas Serve queues the request at the handle and starts a replica (its
scale-from-zero path), which takes `expected_cold_start_s`. A client must not hang that
long: the ingress waits for the engine's first reply at most `cold_request_hold_s`, then
answers 503 with a Retry-After saying when a replica should be up. The ingress keeps one
`ColdStartGate` per model; it counts a model as possibly cold on the same rule the policy
scales to zero by (no request answered for `scale_to_zero_idle_s`), so a warm model's
requests are never cut short by the hold.
"""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict

from autoscaling.config import AutoscalingConfig

# Clients retrying sooner than this only add load to a proxy that cannot help them yet.
MIN_RETRY_AFTER_S = 5


class ColdStartNotice(BaseModel):
    model_config = ConfigDict(frozen=True)

    status: int = 503
    message: str
    retry_after_s: int


class ColdStartGate:
    """Per model at the ingress: how long to hold a request, and the 503 once it waited enough."""

    def __init__(self, model_name: str, config: AutoscalingConfig) -> None:
        self._model_name = model_name
        self._config = config
        self._last_reply_at: float | None = None
        self._cold_since: float | None = None

    def hold_s(self, now: float) -> float | None:
        """Seconds to wait for the engine's first reply; None: no limit (the model is warm)."""
        config = self._config
        if not config.scale_to_zero:
            return None
        answered_lately = (
            self._last_reply_at is not None
            and now - self._last_reply_at < config.scale_to_zero_idle_s
        )
        if answered_lately:
            return None
        if self._cold_since is None:
            self._cold_since = now
        return config.cold_request_hold_s

    def replied(self, now: float) -> None:
        self._last_reply_at = now
        self._cold_since = None

    def notice(self, now: float) -> ColdStartNotice:
        """The 503 for a request that waited `hold_s` without a replica."""
        elapsed = now - (self._cold_since if self._cold_since is not None else now)
        left_s = self._config.expected_cold_start_s - elapsed
        retry_after = max(MIN_RETRY_AFTER_S, math.ceil(left_s))
        return ColdStartNotice(
            message=f"The model {self._model_name!r} is starting after scaling to zero; "
            f"a replica should be ready in about {retry_after} s. Retry after that.",
            retry_after_s=retry_after,
        )
