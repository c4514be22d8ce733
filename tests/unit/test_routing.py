"""Replica choice: prefix keys, the prefix table, session hashing and the load bound."""

from __future__ import annotations

from deployments.routing import (
    PrefixTable,
    prefix_keys,
    prompt_text,
    rendezvous,
    within_load_bound,
)

SYSTEM = "You are a careful assistant. " * 40  # ~1,200 chars, shared by many requests


def keys_of(question: str, chunk: int = 256) -> list[int]:
    body = {"messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}]}
    return prefix_keys(prompt_text(body), chunk, 64)


def test_prompts_sharing_a_prefix_share_its_leading_keys_only():
    a, b = keys_of("What is 2+2?"), keys_of("Name a colour.")
    shared = len(SYSTEM) // 256
    assert a[:shared] == b[:shared]
    assert a[shared:] != b[shared:] or len(a) == shared
    assert prefix_keys("short", 256, 64) == []  # no whole chunk, nothing to match on
    assert len(prefix_keys("x" * 10_000, 256, 8)) == 8  # bounded work per request


def test_the_longest_known_prefix_wins_among_live_replicas():
    table = PrefixTable(max_entries=1000)
    table.record(keys_of("first question"), "r2")
    table.record(keys_of("second question")[:2], "r1")  # a later, shorter prefix
    owner, matched = table.longest_match(keys_of("third question"), {"r1", "r2"})
    assert owner == "r2" and matched == len(SYSTEM) // 256
    # r2 is gone: the shorter prefix r1 holds is next best.
    assert table.longest_match(keys_of("third question"), {"r1"}) == ("r1", 2)
    table.forget("r1")
    assert table.longest_match(keys_of("third question"), {"r1"}) == (None, 0)


def test_the_table_is_bounded_and_drops_least_recently_used_keys():
    table = PrefixTable(max_entries=3)
    old, new = [1, 2, 3], [10, 20, 30]
    table.record(old, "r1")
    table.record(new, "r2")
    assert table.longest_match(old, {"r1", "r2"}) == (None, 0)
    assert table.longest_match(new, {"r1", "r2"}) == ("r2", 3)


def test_session_hashing_is_stable_spread_and_moves_only_a_removed_replicas_sessions():
    replicas = ["r1", "r2", "r3"]
    before = {f"user-{i}": rendezvous(f"user-{i}", replicas) for i in range(300)}
    assert set(before.values()) == set(replicas)
    assert all(rendezvous(s, list(reversed(replicas))) == r for s, r in before.items())
    after = {s: rendezvous(s, ["r1", "r3"]) for s in before}
    moved = {s for s in before if before[s] != after[s]}
    assert moved == {s for s, r in before.items() if r == "r2"}
    assert rendezvous("anyone", []) is None


def test_affinity_yields_to_load():
    capacity = {"r1": 8, "r2": 8}
    assert within_load_bound("r1", {"r1": 3, "r2": 0}, capacity, slack=4)
    assert not within_load_bound("r1", {"r1": 5, "r2": 0}, capacity, slack=4)
    assert not within_load_bound("r1", {"r1": 8, "r2": 8}, capacity, slack=4)  # full
    assert within_load_bound("r1", {"r1": None, "r2": None}, capacity, slack=0)  # unknown = idle
