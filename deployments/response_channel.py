"""Streamed pieces from engine replicas to the ingress over direct sockets, many streams
to a message.

Why: a Ray message costs about 0.5 ms of CPU in the engine replica and 0.7 ms in the
ingress whatever it carries, and Serve's streaming calls need one per stream. With 16
streams decoding together that is 16 messages per engine step, CPU taken from the
engine. vLLM's own front end and engine core share one socket and send one message per
step for every request; Dynamo's workers stream back to the front end over TCP. Here:
- each ingress replica binds one ZeroMQ PULL socket on its node's address;
- each engine replica keeps one PUSH socket per ingress replica it answers, and what its
  streams produce in one event-loop turn (one vLLM step, for every stream) leaves as one
  multipart message of (stream id, piece) pairs; a stream's pieces are still batched
  first (deployments.stream_batching), as that bounds the ingress's HTTP writes;
- the Serve call stays the control path: it carries a stream's first piece (status and
  time to first token as before) and its end, or its failure. The end, a `StreamEnd`,
  counts the pieces sent on the socket and carries the last text with the engine's report. Serve's routing, back-pressure, request counts and
  cancellation are unchanged.
`IngressConfig.direct_streams: false` keeps every piece on Ray (deployments.stream_batching).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

import zmq
import zmq.asyncio

from deployments.config import StreamBatchingConfig
from deployments.stream_batching import StreamBatcher, StreamEnd, Wakeup

logger = logging.getLogger("giantserve.response_channel")

# Where an engine replica sends a stream's pieces: the ingress socket's address and the
# stream's id there.
ReplyTo = tuple[str, bytes]

# After the Serve call has ended, how long the ingress waits for pieces still on the way
# before it ends the stream with an error (they can only be lost with a dead socket).
LATE_PIECES_S = 10.0
# Messages an engine replica queues for one ingress that does not read: ZeroMQ drops
# beyond this (the streams concerned then end with an error), memory stays bounded.
SEND_HIGH_WATER_MARK = 100_000
# An engine replica closes its socket to an ingress replica that it has not answered for
# this long (a replaced ingress never comes back under the same port).
IDLE_SOCKET_S = 600.0


class ResponseChannel:
    """The ingress replica's socket: it hands each stream's pieces to that stream's inbox."""

    def __init__(self, host: str):
        self._socket = zmq.asyncio.Context.instance().socket(zmq.PULL)
        self._socket.setsockopt(zmq.LINGER, 0)
        self._socket.setsockopt(zmq.RCVHWM, 0)  # the senders bound the queues
        port = self._socket.bind_to_random_port(f"tcp://{host}")
        self.address = f"tcp://{host}:{port}"
        self._inboxes: dict[bytes, StreamInbox] = {}
        self._reader = asyncio.get_running_loop().create_task(self._receive_forever())
        self._reader.add_done_callback(_log_reader_end)

    def open(self) -> StreamInbox:
        """A new stream's inbox, open before the engine call (pieces may beat the call's reply)."""
        # Unguessable, so that nothing else on the node's network can write into a stream.
        stream_id = secrets.token_bytes(8)
        inbox = StreamInbox(self, (self.address, stream_id))
        self._inboxes[stream_id] = inbox
        return inbox

    def _forget(self, stream_id: bytes) -> None:
        self._inboxes.pop(stream_id, None)

    async def _receive_forever(self) -> None:
        inboxes = self._inboxes
        while True:
            frames = await self._socket.recv_multipart()
            for index in range(0, len(frames) - 1, 2):
                inbox = inboxes.get(frames[index])
                if inbox is not None:  # else the stream has ended (its client left)
                    inbox.put(frames[index + 1])


def _log_reader_end(reader: asyncio.Task) -> None:
    # Streams then end with a "pieces lost" error event each: say why once, loudly.
    if not reader.cancelled() and reader.exception() is not None:
        logger.error("the response channel stopped reading", exc_info=reader.exception())


class StreamInbox:
    """One stream's pieces that arrived on the channel and were not passed on yet."""

    __slots__ = ("_channel", "reply_to", "pieces", "received", "relayed", "wakeup")

    def __init__(self, channel: ResponseChannel, reply_to: ReplyTo):
        self._channel = channel
        self.reply_to = reply_to
        self.pieces: list[bytes] = []
        self.received = 0
        self.relayed = False  # a RelayedStream reads it and will close it
        self.wakeup = Wakeup()

    def put(self, piece: bytes) -> None:
        self.pieces.append(piece)
        self.received += 1
        self.wakeup.wake()

    def take(self) -> str:
        text = b"".join(self.pieces).decode()
        self.pieces.clear()
        return text

    def close(self) -> None:
        self._channel._forget(self.reply_to[1])


class RelayedStream:
    """A streamed Serve call as the ingress reads it: pieces from the inbox, the end (or
    failure) from the call. Same interface as Serve's response generator: `__anext__`
    and `cancel()`; it yields the pieces gathered since the last read as one text."""

    def __init__(self, call: Any, inbox: StreamInbox):
        self._call = call
        self._inbox = inbox
        inbox.relayed = True
        self._end: StreamEnd | None = None
        self._end_read = False
        self._ended_at = 0.0
        self._failure: BaseException | None = None
        self._watcher = asyncio.ensure_future(self._watch())

    async def _watch(self) -> None:
        try:
            end = await self._call.__anext__()
            if end.__class__ is not StreamEnd:
                raise RuntimeError(f"a direct stream's call sent {type(end).__name__}, not its end")
            self._end, self._ended_at = end, time.monotonic()
        except StopAsyncIteration:
            self._failure = ConnectionError("the engine ended the stream without its end message")
        except BaseException as error:  # noqa: BLE001 - raised to the reader in __anext__
            self._failure = error
        self._inbox.wakeup.wake()

    def __aiter__(self) -> RelayedStream:
        return self

    async def __anext__(self) -> str | StreamEnd:
        inbox = self._inbox
        while True:
            if inbox.pieces:
                return inbox.take()
            end = self._end
            if end is not None:
                if inbox.received >= end.channel_pieces:
                    if self._end_read:
                        raise StopAsyncIteration
                    self._end_read = True
                    inbox.close()
                    return end
                late_s = LATE_PIECES_S - (time.monotonic() - self._ended_at)
                if late_s <= 0:
                    inbox.close()
                    raise ConnectionError(
                        f"{end.channel_pieces - inbox.received} pieces of the stream were lost "
                        f"on the way to {inbox.reply_to[0]}: if no stream gets through, the "
                        "engine nodes cannot reach that port (open it, or set "
                        "ingress.direct_streams: false)"
                    )
                await inbox.wakeup.wait(late_s)
                continue
            if self._failure is not None:
                inbox.close()
                raise self._failure
            await inbox.wakeup.wait()

    def cancel(self) -> None:
        self._call.cancel()
        self._watcher.cancel()
        self._inbox.close()
        if self._end is None and self._failure is None:
            self._failure = asyncio.CancelledError()
        self._inbox.wakeup.wake()


class ChannelOutbox:
    """The engine replica's side: one PUSH socket per ingress replica, one message per
    event-loop turn and ingress with every piece its streams produced meanwhile."""

    def __init__(self) -> None:
        self._context = zmq.Context.instance()
        self._sockets: dict[str, zmq.Socket] = {}
        self._last_used: dict[str, float] = {}
        self._pending: dict[str, list[bytes]] = {}
        self._flush_scheduled = False
        self._last_sweep = time.monotonic()

    async def relay(
        self, messages: AsyncIterator[str | StreamEnd], reply_to: ReplyTo
    ) -> AsyncIterator[str | StreamEnd]:
        """The Serve call's messages for a stream's `messages`: the first one, then (once
        the others went on the channel) the `StreamEnd`, which counts them. The end keeps
        its text: with the report the engine adds to it, it reaches the ingress before a
        client that has read `[DONE]` can leave."""
        address, stream_id = reply_to
        first, sent = True, 0
        async for message in messages:
            if message.__class__ is StreamEnd:
                message.channel_pieces = sent
                yield message
                return
            if first:  # on the call: the ingress learns the status from it
                first = False
                yield message
                continue
            self._send(address, stream_id, message)
            sent += 1
        yield StreamEnd("", channel_pieces=sent)

    def _send(self, address: str, stream_id: bytes, piece: str) -> None:
        frames = self._pending.get(address)
        if frames is None:
            frames = self._pending[address] = []
        frames.append(stream_id)
        frames.append(piece.encode())
        if not self._flush_scheduled:
            # After every stream woken in this turn (one engine step) has added its piece.
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        now = time.monotonic()
        for address, frames in self._pending.items():
            try:
                self._socket(address, now).send_multipart(frames, flags=zmq.NOBLOCK)
            except zmq.Again:
                logger.warning("ingress %s reads too slowly: %d pieces dropped", address, len(frames) // 2)
        self._pending.clear()
        if now - self._last_sweep > IDLE_SOCKET_S / 10:
            self._close_idle(now)

    def _socket(self, address: str, now: float) -> zmq.Socket:
        socket = self._sockets.get(address)
        if socket is None:
            socket = self._context.socket(zmq.PUSH)
            socket.setsockopt(zmq.LINGER, 0)
            socket.setsockopt(zmq.SNDHWM, SEND_HIGH_WATER_MARK)
            socket.connect(address)
            self._sockets[address] = socket
        self._last_used[address] = now
        return socket

    def _close_idle(self, now: float) -> None:
        self._last_sweep = now
        for address, used in list(self._last_used.items()):
            if now - used > IDLE_SOCKET_S:
                self._sockets.pop(address).close()
                del self._last_used[address]


class StreamSender:
    """An engine replica's streams out: on the ingress's channel when the call names one,
    else in Serve messages, batched (deployments.stream_batching)."""

    def __init__(self, batching: StreamBatchingConfig):
        self._batcher = StreamBatcher(batching)
        self._outbox = ChannelOutbox()

    def messages(
        self, stream: AsyncIterator[str], reply_to: ReplyTo | None
    ) -> AsyncIterator[str | StreamEnd]:
        batched = self._batcher.batched(stream)
        if reply_to is None:
            return batched
        # Batched first: under load a stream still sends a bounded number of pieces per second.
        return self._outbox.relay(batched, reply_to)
