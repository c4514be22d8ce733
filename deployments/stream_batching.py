"""Groups a stream's SSE pieces into fewer Ray messages once a replica is busy.

Each message an engine replica yields crosses three processes (engine replica, ingress,
Serve's proxy) and costs about the same CPU on each whatever its size; at a few
thousand tokens per second that cost, not the engine, bounds a replica. So:
- the first piece of a stream leaves at once (time to first token is never delayed);
- after a message, the next one waits `StreamBatchingConfig.delay_s(streams in flight)`
  gathering pieces, so a lone stream goes token by token and a busy replica sends a
  bounded number of messages per second;
- the end of the stream (or an error) is sent at once, with what was gathered.

The stream's last message is a `StreamEnd`: the ingress learns that the client has
everything from it, and the engine replica hangs its report for the ingress on it, so
the report cannot arrive after a client that read `[DONE]` has gone.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from deployments.config import StreamBatchingConfig


@dataclass(slots=True)
class StreamEnd:
    """A stream's last message: its last text (maybe empty) and the engine's report."""

    text: str
    # Pieces sent on the direct channel (deployments.response_channel), not on the call.
    channel_pieces: int = 0
    report: Any = None  # deployments.observability.engine_side.EngineReport, set by the engine


class Wakeup:
    """Sleep until woken, or for at most a timeout: a future and a timer callback, not a
    task or a wait_for (one of those per message would cost)."""

    __slots__ = ("_future",)

    def __init__(self) -> None:
        self._future: asyncio.Future | None = None

    def wake(self) -> None:
        if self._future is not None and not self._future.done():
            self._future.set_result(None)

    async def wait(self, timeout_s: float | None = None) -> None:
        loop = asyncio.get_running_loop()
        self._future = loop.create_future()
        timer = loop.call_later(timeout_s, self.wake) if timeout_s is not None else None
        try:
            await self._future
        finally:
            if timer is not None:
                timer.cancel()
            self._future = None


class StreamBatcher:
    """One per engine replica: it counts the streams in flight to size the delay."""

    def __init__(self, config: StreamBatchingConfig):
        self._config = config
        self.streams_in_flight = 0

    async def batched(self, stream: AsyncIterator[str]) -> AsyncIterator[str | StreamEnd]:
        """The stream's pieces in fewer messages, the last one a `StreamEnd`; a failure
        of the stream is raised after the pieces read before it."""
        self.streams_in_flight += 1
        gathered = _Gathered(stream)
        try:
            sent_at = None
            while True:
                await gathered.wait_for_piece()
                if sent_at is not None and not gathered.ended:
                    hold_s = self._config.delay_s(self.streams_in_flight)
                    await gathered.wait_for_end(sent_at + hold_s - time.monotonic())
                # Read before the yield: while this generator waits at the yield the
                # stream may add its last pieces and end; those go out on the next turn.
                ended = gathered.ended
                if ended and not gathered.failed:
                    yield StreamEnd(gathered.take())
                    return
                if gathered.pieces:
                    yield gathered.take()
                    sent_at = time.monotonic()
                if ended:
                    gathered.raise_failure()
                    return
        finally:
            self.streams_in_flight -= 1
            # Cancelling the pump (client gone) closes vLLM's generator, which aborts the request.
            gathered.close()


class _Gathered:
    """The pieces a background task has read from the stream and not yet sent."""

    def __init__(self, stream: AsyncIterator[str]):
        self.pieces: list[str] = []
        self.ended = False
        self._failure: BaseException | None = None
        self._wakeup = Wakeup()
        self._wake_on_piece = True
        self._pump = asyncio.create_task(self._read(stream))

    async def _read(self, stream: AsyncIterator[str]) -> None:
        try:
            async for piece in stream:
                self.pieces.append(piece)
                if self._wake_on_piece:
                    self._wakeup.wake()
        except Exception as error:  # raised in the consumer by raise_failure
            self._failure = error
        self.ended = True
        self._wakeup.wake()

    async def wait_for_piece(self) -> None:
        if not self.pieces and not self.ended:
            self._wake_on_piece = True
            await self._wakeup.wait(None)

    async def wait_for_end(self, timeout_s: float) -> None:
        """Gather more pieces for up to `timeout_s`; an ended stream returns at once."""
        if timeout_s > 0 and not self.ended:
            self._wake_on_piece = False
            await self._wakeup.wait(timeout_s)

    def take(self) -> str:
        text = "".join(self.pieces)
        self.pieces.clear()
        return text

    @property
    def failed(self) -> bool:
        return self._failure is not None

    def raise_failure(self) -> None:
        if self._failure is not None:
            raise self._failure

    def close(self) -> None:
        self._pump.cancel()
