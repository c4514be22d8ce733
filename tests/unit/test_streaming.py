"""The two streaming helpers: the engine's coalescing and the ingress pass-through."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from deployments.engine import _coalesce
from deployments.ingress import _stream
from deployments.observability.request import RequestObservation


async def collect(stream) -> list[str]:
    return [piece async for piece in stream]


def test_coalesce_yields_the_first_piece_without_waiting_for_more():
    async def scenario():
        release = asyncio.Event()

        async def source():
            yield "a"
            await release.wait()
            yield "b"

        stream = _coalesce(source())
        first = await asyncio.wait_for(stream.__anext__(), timeout=1)
        release.set()
        rest = await collect(stream)
        return first, rest

    first, rest = asyncio.run(scenario())
    assert first == "a" and rest == ["b"]


def test_coalesce_joins_pieces_that_piled_up():
    async def scenario():
        async def source():
            for piece in "abcdef":
                yield piece

        stream = _coalesce(source())
        await asyncio.sleep(0.05)  # let the source run ahead of the consumer
        return await collect(stream)

    pieces = asyncio.run(scenario())
    assert "".join(pieces) == "abcdef"
    assert len(pieces) < 6


def test_coalesce_reraises_a_source_failure_after_its_pieces():
    async def scenario():
        async def source():
            yield "a"
            raise RuntimeError("engine died")

        seen = []
        with pytest.raises(RuntimeError, match="engine died"):
            async for piece in _coalesce(source()):
                seen.append(piece)
        return seen

    assert asyncio.run(scenario()) == ["a"]


def test_coalesce_cancels_the_source_when_the_consumer_leaves():
    async def scenario():
        cancelled = asyncio.Event()

        async def source():
            try:
                yield "a"
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                cancelled.set()
                raise

        stream = _coalesce(source())
        await stream.__anext__()
        await stream.aclose()
        await asyncio.wait_for(cancelled.wait(), timeout=1)
        return cancelled.is_set()

    assert asyncio.run(scenario())


class FakeServeStream:
    """Stands in for Serve's DeploymentResponseGenerator."""

    def __init__(self, pieces, failure=None):
        self._pieces, self._failure = list(pieces), failure
        self.cancelled = False

    def __aiter__(self):
        return self

    async def __anext__(self):
        if self._pieces:
            return self._pieces.pop(0)
        if self._failure:
            raise self._failure
        raise StopAsyncIteration

    def cancel(self):
        self.cancelled = True


def passthrough(first, rest):
    """The ingress pass-through with a far deadline and no rate-limit settlement."""
    return _stream(
        first, rest, "m", time.monotonic() + 60, 60, lambda used: None, RequestObservation("chat")
    )


def test_stream_passes_pieces_through_in_order():
    rest = FakeServeStream(["b", "c"])
    assert asyncio.run(collect(passthrough("a", rest))) == ["a", "b", "c"]
    assert not rest.cancelled


def test_a_broken_stream_ends_with_an_error_event_and_done():
    rest = FakeServeStream(["b"], failure=ConnectionError("replica died"))
    pieces = asyncio.run(collect(passthrough("a", rest)))
    assert pieces[:2] == ["a", "b"]
    events = [line[6:] for line in pieces[2].splitlines() if line.startswith("data: ")]
    assert json.loads(events[0])["error"]["code"] == 503
    assert events[-1] == "[DONE]"


def test_a_client_leaving_cancels_the_engine_call():
    rest = FakeServeStream(["b", "c"])

    async def leave_after_first():
        stream = passthrough("a", rest)
        await stream.__anext__()
        await stream.aclose()

    asyncio.run(leave_after_first())
    assert rest.cancelled
