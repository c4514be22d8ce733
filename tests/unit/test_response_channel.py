"""The direct stream channel, both ends in one event loop over real ZeroMQ on 127.0.0.1."""

from __future__ import annotations

import asyncio

import pytest

from deployments import response_channel
from deployments.response_channel import ChannelOutbox, RelayedStream, ResponseChannel
from deployments.stream_batching import StreamEnd


class ServeCall:
    """Stands in for Serve's response generator of one engine call."""

    def __init__(self, messages):
        self._messages = messages
        self.cancelled = False

    def __aiter__(self):
        return self

    async def __anext__(self):
        return await anext(self._messages)

    def cancel(self):
        self.cancelled = True


async def pieces(texts, every_s=0.0):
    for text in texts:
        await asyncio.sleep(every_s)
        yield text


async def read_all(stream) -> list:
    return [message async for message in stream]


async def relayed(channel, outbox, source):
    """The ingress's view of one stream: the first message from the call, then the relay."""
    inbox = channel.open()
    call = ServeCall(outbox.relay(source, inbox.reply_to))
    first = await anext(call)
    return first, RelayedStream(call, inbox), call, inbox


def test_pieces_after_the_first_travel_on_the_channel_and_the_end_counts_them():
    async def scenario():
        channel, outbox = ResponseChannel("127.0.0.1"), ChannelOutbox()
        first, stream, _, _ = await relayed(channel, outbox, pieces(["a", "b", "c", "d"], 0.01))
        return first, await read_all(stream), channel._inboxes

    first, rest, inboxes_left = asyncio.run(scenario())
    assert first == "a"
    assert "".join(rest[:-1]) == "bcd"
    assert rest[-1] == StreamEnd("", channel_pieces=3)
    assert not inboxes_left  # the ended stream's inbox was closed


def test_the_last_text_travels_with_the_end_after_the_pieces_before_it():
    # The end carries the engine's report: with [DONE] in the same message, the ingress
    # has the report before a client that has read [DONE] can leave.
    async def scenario():
        channel, outbox = ResponseChannel("127.0.0.1"), ChannelOutbox()

        async def batched():
            for text in ["a", "b", "c"]:
                await asyncio.sleep(0.01)
                yield text
            yield StreamEnd("d[DONE]")

        _, stream, _, _ = await relayed(channel, outbox, batched())
        return await read_all(stream)

    rest = asyncio.run(scenario())
    assert "".join(rest[:-1]) == "bc"
    assert rest[-1] == StreamEnd("d[DONE]", channel_pieces=2)


def test_streams_that_produce_in_the_same_turn_share_one_message():
    async def scenario():
        channel, outbox = ResponseChannel("127.0.0.1"), ChannelOutbox()
        sent = []
        socket_for = outbox._socket

        def counting_socket(address, now):
            socket = socket_for(address, now)

            class Counting:
                def send_multipart(self, frames, **options):
                    sent.append(len(frames) // 2)
                    return socket.send_multipart(frames, **options)

            return Counting()

        outbox._socket = counting_socket
        # Sixteen streams woken by the same tick, as vLLM's step wakes every request.
        tick = asyncio.Event()

        async def stepped(name):
            yield f"{name}0"
            await tick.wait()
            yield f"{name}1"

        streams = [await relayed(channel, outbox, stepped(n)) for n in range(16)]
        readers = [asyncio.ensure_future(read_all(s[1])) for s in streams]
        await asyncio.sleep(0.01)
        tick.set()
        return sent, [await reader for reader in readers]

    sent, results = asyncio.run(scenario())
    assert sent == [16]
    for index, messages in enumerate(results):
        assert messages == [f"{index}1", StreamEnd("", channel_pieces=1)]


def test_pieces_lost_on_the_way_end_the_stream_with_an_error(monkeypatch):
    monkeypatch.setattr(response_channel, "LATE_PIECES_S", 0.2)

    async def scenario():
        channel = ResponseChannel("127.0.0.1")
        inbox = channel.open()

        async def call_messages():
            yield StreamEnd("", channel_pieces=2)  # two pieces that never come

        stream = RelayedStream(ServeCall(call_messages()), inbox)
        with pytest.raises(ConnectionError, match="2 pieces of the stream were lost"):
            await asyncio.wait_for(read_all(stream), timeout=5)
        return channel._inboxes

    assert not asyncio.run(scenario())


def test_a_failed_call_ends_the_stream_after_the_pieces_that_arrived():
    async def scenario():
        channel, outbox = ResponseChannel("127.0.0.1"), ChannelOutbox()
        inbox = channel.open()
        died = asyncio.Event()

        async def call_messages():
            async for message in outbox.relay(pieces(["a", "b"]), inbox.reply_to):
                if message.__class__ is StreamEnd:
                    await died.wait()
                    raise ConnectionError("replica died")
                yield message

        call = ServeCall(call_messages())
        assert await anext(call) == "a"
        stream = RelayedStream(call, inbox)
        received = [await anext(stream)]
        died.set()
        with pytest.raises(ConnectionError, match="replica died"):
            await anext(stream)
        return received, channel._inboxes

    received, inboxes_left = asyncio.run(scenario())
    assert received == ["b"] and not inboxes_left


def test_cancelling_cancels_the_call_and_forgets_the_stream():
    async def scenario():
        channel, outbox = ResponseChannel("127.0.0.1"), ChannelOutbox()
        forever = asyncio.Event()

        async def endless():
            yield "a"
            await forever.wait()
            yield "never"

        _, stream, call, _ = await relayed(channel, outbox, endless())
        reader = asyncio.ensure_future(anext(stream))
        await asyncio.sleep(0.01)
        stream.cancel()
        with pytest.raises(asyncio.CancelledError):
            await reader
        return call.cancelled, channel._inboxes

    cancelled, inboxes_left = asyncio.run(scenario())
    assert cancelled and not inboxes_left
