"""Replica choice for an engine deployment: prefix and session affinity, bounded by load.

A Serve `RequestRouter` (Ray Serve 2.60's pluggable router, run inside each caller: the
ingress replica's handle). For each request it prefers one replica:
- with a session (the body's `user`; the ingress fills it from the `X-Session-ID`
  header when unset): the replica that rendezvous hashing picks for that session, so
  every ingress replica sends one session to the same engine replica without shared state;
- otherwise, the replica that last got the longest prefix of this prompt (the prompt's
  text cut into fixed-size chunks and hashed as a chain, like vLLM's block hashes), whose
  prefix cache most likely still holds it. A prompt with no known prefix takes Serve's
  power-of-two-choices pick, and is remembered for the replica it lands on.
The preference holds only while that replica is not busier than the least busy candidate
by more than `load_slack` requests (and not full): affinity must never overload one
replica. Otherwise, and as the second rank always, power-of-two-choices decides.

Learned from ray.llm's PrefixCacheAffinityRouter; differs in keeping its prefix table in
the router itself (no actor round trip per request) and in hashing chunks, not a char trie.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import Any

from ray.serve._private.request_router import PowerOfTwoChoicesRequestRouter
from ray.serve._private.request_router.common import PendingRequest
from ray.serve._private.request_router.replica_wrapper import RunningReplica
from ray.serve._private.request_router.request_router import (
    LocalityMixin,
    MultiplexMixin,
    RequestRouter,
)


def prompt_text(body: Any) -> str:
    """The text a request's prompt starts with, in order: messages' contents, or `prompt`."""
    if not isinstance(body, dict):
        return ""
    messages = body.get("messages")
    if isinstance(messages, list):
        return "\x00".join(_text(m.get("content")) for m in messages if isinstance(m, dict))
    return _text(body.get("prompt"))


def _text(value: Any) -> str:
    """A string, or a list's strings and text parts joined (one level, as OpenAI allows)."""
    if isinstance(value, str):
        return value
    if not isinstance(value, list):
        return ""
    parts = (item.get("text") if isinstance(item, dict) else item for item in value)
    return "".join(part for part in parts if isinstance(part, str))


def prefix_keys(text: str, chunk_chars: int, max_chunks: int) -> list[int]:
    """Chained hashes of the text's whole chunks: key i stands for text[: (i+1)*chunk_chars]."""
    keys, previous = [], 0
    for start in range(0, min(len(text), chunk_chars * max_chunks) - chunk_chars + 1, chunk_chars):
        previous = hash((previous, text[start : start + chunk_chars]))
        keys.append(previous)
    return keys


def rendezvous(session: str, replica_ids: Iterable[str]) -> str | None:
    """Highest-random-weight hashing: stable per session, and only the sessions of a
    removed replica move when the replica set changes."""
    return max(
        replica_ids,
        key=lambda rid: hashlib.blake2b(f"{session}\x00{rid}".encode(), digest_size=8).digest(),
        default=None,
    )


def within_load_bound(
    preferred: str, loads: Mapping[str, int | None], capacity: Mapping[str, int], slack: int
) -> bool:
    """Whether affinity may send one more request to `preferred` (unknown loads count as 0)."""
    load = loads.get(preferred) or 0
    if load >= capacity[preferred]:
        return False
    least = min((v or 0 for v in loads.values()), default=0)
    return load <= least + slack


class PrefixTable:
    """Which replica last got each prefix key; least recently used keys fall out."""

    def __init__(self, max_entries: int):
        self._owner: OrderedDict[int, str] = OrderedDict()
        self._max_entries = max_entries

    def longest_match(self, keys: list[int], live: set[str]) -> tuple[str | None, int]:
        """(replica, matched chunks) for the longest known prefix held by a live replica."""
        for index in range(len(keys) - 1, -1, -1):
            owner = self._owner.get(keys[index])
            if owner in live:
                return owner, index + 1
        return None, 0

    def record(self, keys: list[int], replica: str) -> None:
        for key in keys:
            self._owner[key] = replica
            self._owner.move_to_end(key)
        while len(self._owner) > self._max_entries:
            self._owner.popitem(last=False)

    def forget(self, replica: str) -> None:
        for key in [k for k, owner in self._owner.items() if owner == replica]:
            del self._owner[key]


class PrefixAffinityRouter(LocalityMixin, MultiplexMixin, RequestRouter):
    """Serve request router for engine deployments (see the module docstring)."""

    def initialize_state(
        self,
        chunk_chars: int = 256,
        max_chunks: int = 64,
        max_entries: int = 200_000,
        load_slack: int = 4,
    ) -> None:
        self._chunk_chars = chunk_chars
        self._max_chunks = max_chunks
        self._load_slack = load_slack
        self._table = PrefixTable(max_entries)

    def _keys(self, pending_request: PendingRequest | None) -> tuple[str | None, list[int]]:
        """(session, prefix keys) of a request sent as `engine.<method>.remote(body)`."""
        if pending_request is None or not pending_request.args:
            return None, []
        body = pending_request.args[0]
        session = body.get("user") if isinstance(body, dict) else None
        if isinstance(session, str) and session:
            return session, []
        return None, prefix_keys(prompt_text(body), self._chunk_chars, self._max_chunks)

    async def choose_replicas(
        self,
        candidate_replicas: list[RunningReplica],
        pending_request: PendingRequest | None = None,
    ) -> list[list[RunningReplica]]:
        fallback = await PowerOfTwoChoicesRequestRouter.choose_replicas(
            self, candidate_replicas=candidate_replicas, pending_request=pending_request
        )
        if not fallback:
            return fallback
        by_id = {r.replica_id.unique_id: r for r in candidate_replicas}
        session, keys = self._keys(pending_request)
        if session is not None:
            preferred = rendezvous(session, by_id)
        else:
            preferred, _ = self._table.longest_match(keys, set(by_id))
        if preferred is None:
            return fallback
        loads = await self._loads(candidate_replicas)
        capacity = {rid: r.max_ongoing_requests for rid, r in by_id.items()}
        if not within_load_bound(preferred, loads, capacity, self._load_slack):
            return fallback
        return [[by_id[preferred]], *fallback]

    async def _loads(self, replicas: list[RunningReplica]) -> dict[str, int | None]:
        """Ongoing requests per replica: Serve's cache, probing the replicas it lacks."""
        loads: dict[str, int | None] = {}
        missing = []
        for replica in replicas:
            cached = self._replica_queue_len_cache.get(replica.replica_id)
            if cached is None:
                missing.append(replica)
            loads[replica.replica_id.unique_id] = cached
        if missing:
            for replica, queue_len in await self._probe_queue_lens(missing, 0):
                loads[replica.replica_id.unique_id] = queue_len
        return loads

    def on_request_routed(self, pending_request: PendingRequest, replica_id, result) -> None:
        session, keys = self._keys(pending_request)
        if session is None and keys:
            self._table.record(keys, replica_id.unique_id)

    def on_replica_actor_died(self, replica_id) -> None:
        super().on_replica_actor_died(replica_id)
        self._table.forget(replica_id.unique_id)
