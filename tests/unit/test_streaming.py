"""The two streaming helpers: the engine's stream batching and the ingress pass-through."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from deployments.config import StreamBatchingConfig
from deployments.ingress import _stream
from deployments.observability.request import RequestObservation
from deployments.observability.engine_side import EngineReport
from deployments.stream_batching import StreamBatcher, StreamEnd


async def collect(stream) -> list:
    return [piece async for piece in stream]


async def texts(batched) -> list[str]:
    """A batched stream's texts, after checking that its last message, and only that, ends it."""
    *pieces, end = await collect(batched)
    assert end.__class__ is StreamEnd and all(piece.__class__ is str for piece in pieces)
    return pieces + [end.text] if end.text else pieces


def text_of(message) -> str:
    return message.text if message.__class__ is StreamEnd else message


def batcher(messages_per_s: float = 1000.0, max_delay_ms: float = 50.0) -> StreamBatcher:
    return StreamBatcher(StreamBatchingConfig(messages_per_s=messages_per_s, max_delay_ms=max_delay_ms))


async def ticking(pieces: str, every_s: float):
    for index, piece in enumerate(pieces):
        if index:
            await asyncio.sleep(every_s)
        yield piece


def test_delay_grows_with_streams_in_flight_up_to_the_cap():
    config = StreamBatchingConfig(messages_per_s=100, max_delay_ms=50)
    assert config.delay_s(1) == 0  # a lone stream goes token by token
    assert config.delay_s(3) == pytest.approx(0.02)
    assert config.delay_s(1000) == pytest.approx(0.05)
    assert StreamBatchingConfig(max_delay_ms=0).delay_s(1000) == 0


def test_the_first_piece_leaves_without_waiting_for_more():
    async def scenario():
        release = asyncio.Event()

        async def source():
            yield "a"
            await release.wait()
            yield "b"

        stream = batcher().batched(source())
        first = await asyncio.wait_for(stream.__anext__(), timeout=1)
        release.set()
        return first, await texts(stream)

    first, rest = asyncio.run(scenario())
    assert first == "a" and rest == ["b"]


def test_a_lone_stream_is_sent_piece_by_piece():
    pieces = asyncio.run(texts(batcher().batched(ticking("abcde", 0.01))))
    assert pieces == list("abcde")


def test_a_busy_replica_gathers_pieces_and_sends_the_end_at_once():
    async def scenario():
        shared = batcher(messages_per_s=10, max_delay_ms=100)
        # Nine other streams in flight: each stream may send one message per 100 ms.
        shared.streams_in_flight = 9
        started = time.monotonic()
        pieces = await texts(shared.batched(ticking("abcdefghij", 0.01)))
        return pieces, time.monotonic() - started, shared.streams_in_flight

    pieces, took_s, left_in_flight = asyncio.run(scenario())
    assert "".join(pieces) == "abcdefghij"
    assert pieces[0] == "a"
    assert 2 <= len(pieces) <= 3  # "a", then ~100 ms of pieces, then the rest at the end
    assert took_s < 0.2  # the last pieces did not wait out a full delay
    assert left_in_flight == 9


def test_pieces_that_piled_up_travel_together_without_a_delay():
    async def scenario():
        async def source():
            for piece in "abcdef":
                yield piece

        stream = batcher(max_delay_ms=0).batched(source())
        await asyncio.sleep(0.05)  # let the source run ahead of the consumer
        return await texts(stream)

    pieces = asyncio.run(scenario())
    assert "".join(pieces) == "abcdef"
    assert len(pieces) < 6


def test_pieces_that_arrive_while_the_consumer_is_away_are_all_sent():
    # Serve may resume the generator long after a yield (replica code on its main loop):
    # the stream can add its last pieces and end meanwhile; none may be lost.
    async def scenario():
        async def source():
            yield "a"
            await asyncio.sleep(0)
            for piece in "bcd":
                yield piece

        shared = batcher()
        shared.streams_in_flight = 3
        received = []
        async for message in shared.batched(source()):
            received.append(text_of(message))
            await asyncio.sleep(0.02)  # the consumer is away; the source ends meanwhile
        return received

    received = asyncio.run(scenario())
    assert "".join(received) == "abcd"


def test_a_source_failure_is_raised_after_its_pieces():
    async def scenario():
        async def source():
            yield "a"
            await asyncio.sleep(0.01)
            yield "b"
            raise RuntimeError("engine died")

        seen = []
        shared = batcher(messages_per_s=1, max_delay_ms=10_000)
        shared.streams_in_flight = 5
        with pytest.raises(RuntimeError, match="engine died"):
            async for piece in shared.batched(source()):
                seen.append(piece)
        return seen

    assert asyncio.run(asyncio.wait_for(scenario(), timeout=2)) == ["a", "b"]


def test_the_source_is_cancelled_when_the_consumer_leaves():
    async def scenario():
        cancelled = asyncio.Event()

        async def source():
            try:
                yield "a"
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                cancelled.set()
                raise

        shared = batcher()
        stream = shared.batched(source())
        await stream.__anext__()
        await stream.aclose()
        await asyncio.wait_for(cancelled.wait(), timeout=1)
        return cancelled.is_set(), shared.streams_in_flight

    assert asyncio.run(scenario()) == (True, 0)


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


def passthrough(first, rest, observation=None, settle=lambda used: None):
    """The ingress pass-through with a far deadline."""
    return _stream(
        first, rest, "m", time.monotonic() + 60, 60, settle, observation or RequestObservation("chat")
    )


class SeenByIngress:
    """Records what the pass-through tells the request's observation."""

    def __init__(self):
        self.report, self.statuses = None, []

    def engine_report(self, report):
        self.report = report

    def finish(self, status):
        self.statuses.append(status)


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


def test_a_client_leaving_right_after_the_last_piece_has_been_answered_in_full():
    # A client that has read `[DONE]` may close before the ingress is resumed: the
    # request is answered (200) with the engine's report, and the engine call is left be.
    report = EngineReport("replica-1", 0.5, prompt_tokens=3, generated_tokens=2)
    rest = FakeServeStream([StreamEnd('data: {"usage": {"total_tokens": 5}}\n\ndata: [DONE]\n\n', report=report)])
    seen, settled = SeenByIngress(), []

    async def leave_after_done():
        stream = passthrough("data: a\n\n", rest, seen, settled.append)
        received = [await stream.__anext__(), await stream.__anext__()]
        await stream.aclose()
        return received

    received = asyncio.run(leave_after_done())
    assert received[-1].endswith("data: [DONE]\n\n")
    assert seen.statuses == [200] and seen.report is report
    assert settled == [5] and not rest.cancelled


def test_a_stream_whose_first_message_ends_it_is_settled_and_reported():
    report = EngineReport("replica-1", 0.1)
    end = StreamEnd('data: {"usage": {"total_tokens": 7}}\n\ndata: [DONE]\n\n', report=report)
    seen, settled = SeenByIngress(), []
    pieces = asyncio.run(collect(passthrough(end, FakeServeStream([]), seen, settled.append)))
    assert pieces == [end.text]
    assert seen.statuses == [200] and seen.report is report and settled == [7]
