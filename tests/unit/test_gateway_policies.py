"""The ingress's pure policies: API keys, limits, rate limits, model-card request policies."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import pytest

from deployments.admission import Admitted, check_limits
from deployments.auth import AuthError, load_key_ring, parse_keys
from deployments.config import AuthConfig, LimitsConfig, RateLimits, RequestPolicy, load_app_config
from deployments.errors import ErrorReply
from deployments.rate_limits import RateLimiter, TokenBucket, estimate_prompt_tokens
from deployments.request_policy import apply_request_policy

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
KEY_A, KEY_B = "sk-alice-0123456789abcdef", "sk-bob-0123456789abcdef00"
NO_LIMITS = RateLimits()


def ring(tmp_path, monkeypatch, use_file: bool):
    secret = json.dumps({
        "alice": {"key": KEY_A, "models": ["m1"], "requests_per_min": 5},
        "bob": {"sha256": hashlib.sha256(KEY_B.encode()).hexdigest()},
    })
    if use_file:
        path = tmp_path / "keys.json"
        path.write_text(secret)
        return load_key_ring(AuthConfig(mode="api_keys", keys_file=str(path)), NO_LIMITS)
    monkeypatch.setenv("TEST_KEYS", secret)
    return load_key_ring(AuthConfig(mode="api_keys", keys_env="TEST_KEYS"), NO_LIMITS)


@pytest.mark.parametrize("use_file", [True, False])
def test_keys_from_file_or_env_verify_and_carry_their_models(tmp_path, monkeypatch, use_file):
    keys = ring(tmp_path, monkeypatch, use_file)
    alice = keys.verify(f"Bearer {KEY_A}")
    assert alice.name == "alice" and alice.may_use("m1") and not alice.may_use("m2")
    assert alice.limits.requests_per_min == 5
    bob = keys.verify(f"bearer {KEY_B}")  # given hashed in the secret
    assert bob.name == "bob" and bob.may_use("anything")
    for bad in (None, "", f"Basic {KEY_A}", "Bearer ", f"Bearer {KEY_A}x", KEY_A):
        assert keys.verify(bad) is None


def test_keys_are_kept_only_as_digests(tmp_path, monkeypatch):
    keys = ring(tmp_path, monkeypatch, use_file=True)
    assert KEY_A not in repr(vars(keys)) and KEY_A.encode() not in repr(vars(keys)).encode()


def test_a_malformed_secret_names_the_problem_but_never_the_key(tmp_path):
    with pytest.raises(AuthError) as error:
        parse_keys(json.dumps({"alice": {"key": "short-secret-x", "models": ["m1"]}}), "somewhere")
    assert "alice" in str(error.value) and "key" in str(error.value)
    assert "short-secret-x" not in str(error.value)
    with pytest.raises(AuthError, match="TEST_NOT_SET"):
        load_key_ring(AuthConfig(mode="api_keys", keys_env="TEST_NOT_SET"), NO_LIMITS)


def test_auth_off_admits_everyone_and_says_so_loudly(caplog):
    with caplog.at_level(logging.WARNING, logger="giantserve.auth"):
        keys = load_key_ring(AuthConfig(mode="off"), RateLimits(requests_per_min=7))
    anonymous = keys.verify(None)
    assert anonymous.may_use("any-model") and anonymous.limits.requests_per_min == 7
    assert "AUTH IS OFF" in caplog.text


def test_limits_cap_max_tokens_and_fill_it_when_unset():
    limits = LimitsConfig(max_tokens_cap=100, max_prompt_tokens=10)
    chat = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    admitted = check_limits("chat", chat, limits)
    assert isinstance(admitted, Admitted) and admitted.body["max_tokens"] == 100
    assert "max_tokens" not in chat  # the caller's body is not modified
    assert check_limits("chat", {**chat, "max_completion_tokens": 50}, limits).max_tokens == 50
    refused = check_limits("completions", {"prompt": "x", "max_tokens": 101}, limits)
    assert isinstance(refused, ErrorReply) and refused.status == 400 and refused.param == "max_tokens"
    too_long = check_limits("completions", {"prompt": "x" * 41}, limits)
    assert isinstance(too_long, ErrorReply) and too_long.param == "prompt"
    assert isinstance(check_limits("completions", {"prompt": "x" * 40}, limits), Admitted)


def test_prompt_estimate_counts_utf8_bytes_of_every_text_part():
    body = {"messages": [{"role": "system", "content": "abcd"},
                         {"role": "user", "content": [{"type": "text", "text": "é" * 4}]}]}  # fmt: skip
    assert estimate_prompt_tokens(body) == 1 + 2
    assert estimate_prompt_tokens({"prompt": ["abcd", "abcde"]}) == 3


def test_request_rate_limit_refuses_with_the_wait_then_refills():
    limiter, limits = RateLimiter(), RateLimits(requests_per_min=2)
    assert limiter.admit("k", limits, 0, now=0.0) == 0
    assert limiter.admit("k", limits, 0, now=0.0) == 0
    assert limiter.admit("k", limits, 0, now=0.0) == pytest.approx(30.0)  # 1 of 2/min
    assert limiter.admit("other", limits, 0, now=0.0) == 0  # keys are independent
    assert limiter.admit("k", limits, 0, now=30.0) == 0


def test_token_rate_limit_settles_the_reservation_with_real_usage():
    limiter, limits = RateLimiter(), RateLimits(tokens_per_min=1000)
    assert limiter.admit("k", limits, 900, now=0.0) == 0
    assert limiter.admit("k", limits, 200, now=0.0) > 0  # 900 reserved
    limiter.settle("k", limits, reserved=900, used=100, now=0.0)  # the answer was short
    assert limiter.admit("k", limits, 200, now=0.0) == 0
    limiter.settle("k", limits, reserved=200, used=900, now=0.0)  # it ran long: 1000 used now
    assert limiter.admit("k", limits, 1, now=0.0) > 0


def test_ingress_replicas_split_a_limit_so_together_they_allow_it_once():
    limits = RateLimits(requests_per_min=4, tokens_per_min=1000)
    replicas = [RateLimiter(replicas=2), RateLimiter(replicas=2)]
    admitted = sum(
        limiter.admit("k", limits, 0, now=0.0) == 0 for limiter in replicas for _ in range(4)
    )
    assert admitted == 4  # 2 each: 4 per minute across both, not 8
    assert replicas[0].admit("t", limits, 500, now=0.0) == 0
    assert replicas[0].admit("t", limits, 1, now=0.0) > 0  # its half of 1000 is spent


def test_a_request_above_the_bucket_waits_for_a_full_bucket_not_forever():
    bucket = TokenBucket(100)
    bucket.take(100, now=0.0)
    assert bucket.wait_s(10_000, now=0.0) == pytest.approx(60.0)


# --- model-card request policies, as configured in configs/*.yaml ---------------------------


def policy_of(config: str, model: str) -> RequestPolicy:
    app = load_app_config(CONFIGS / config)
    return next(m.request_policy for m in app.models if m.name == model)


def chat(**fields):
    return {"model": "m", "messages": [{"role": "user", "content": "What is 2+2?"}], **fields}


@pytest.mark.parametrize("config,model", [
    ("deepseek-r1.yaml", "deepseek-r1"),
    ("deepseek-r1-distill-qwen-32b.yaml", "deepseek-r1-distill-qwen-32b"),
])  # fmt: skip
def test_deepseek_r1_policy(config, model):
    policy = policy_of(config, model)
    body = chat(messages=[{"role": "system", "content": "Be terse."},
                          {"role": "user", "content": "What is 2+2?"},
                          {"role": "assistant", "content": "4"},
                          {"role": "user", "content": "And 3+3?"}])  # fmt: skip
    applied = apply_request_policy("chat", body, policy)
    assert applied["temperature"] == 0.6 and applied["top_p"] == 0.95
    assert [m["role"] for m in applied["messages"]] == ["user", "assistant", "user"]
    assert applied["messages"][0]["content"] == "Be terse.\n\nWhat is 2+2?"
    assert applied["messages"][-1]["content"] == "And 3+3?"  # no \boxed{} unless opted in
    # The client's own values win.
    assert apply_request_policy("chat", chat(temperature=0, top_p=0.5), policy)["temperature"] == 0
    opted_in = policy.model_copy(update={"math_instruction": "Put your answer within \\boxed{}."})
    math = apply_request_policy("chat", body, opted_in)["messages"]
    assert math[-1]["content"] == "And 3+3?\nPut your answer within \\boxed{}."
    assert math[0]["content"] == "Be terse.\n\nWhat is 2+2?"


@pytest.mark.parametrize("config,model", [
    ("qwen3-8b.yaml", "qwen3-8b"), ("qwen3-32b.yaml", "qwen3-32b"),
    ("qwen3-235b-a22b.yaml", "qwen3-235b-a22b"), ("fleet.yaml", "qwen3-32b"),
])  # fmt: skip
def test_qwen3_policy_thinking_by_default_with_sampling_per_mode(config, model):
    policy = policy_of(config, model)
    thinking = apply_request_policy("chat", chat(), policy)
    assert thinking["chat_template_kwargs"] == {"enable_thinking": True}
    assert (thinking["temperature"], thinking["top_p"], thinking["top_k"], thinking["min_p"]) == (0.6, 0.95, 20, 0.0)
    off = apply_request_policy("chat", chat(chat_template_kwargs={"enable_thinking": False}), policy)
    assert off["chat_template_kwargs"] == {"enable_thinking": False}
    assert (off["temperature"], off["top_p"], off["presence_penalty"]) == (0.7, 0.8, 1.5)
    assert apply_request_policy("chat", chat(temperature=0.1), policy)["temperature"] == 0.1
    assert "system" in [m["role"] for m in apply_request_policy(
        "chat", chat(messages=[{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]), policy
    )["messages"]]  # fmt: skip


@pytest.mark.parametrize("config", ["kimi.yaml", "fleet.yaml"])
def test_kimi_k25_policy_thinking_and_instant_modes(config):
    policy = policy_of(config, "kimi-k2.5")
    thinking = apply_request_policy("chat", chat(), policy)
    assert thinking["chat_template_kwargs"] == {"thinking": True}
    assert (thinking["temperature"], thinking["top_p"]) == (1.0, 0.95)
    instant = apply_request_policy("chat", chat(chat_template_kwargs={"thinking": False}), policy)
    assert (instant["temperature"], instant["top_p"]) == (0.6, 0.95)


@pytest.mark.parametrize("config", ["glm-4.7-flash.yaml", "fleet.yaml"])
def test_glm_47_flash_policy(config):
    applied = apply_request_policy("chat", chat(), policy_of(config, "glm-4.7-flash"))
    assert (applied["temperature"], applied["top_p"]) == (1.0, 0.95)


def test_mistral_large_3_policy_also_for_completions():
    policy = policy_of("mistral-large-3.yaml", "mistral-large-3")
    assert apply_request_policy("chat", chat(), policy)["temperature"] == 0.15
    assert apply_request_policy("completions", {"prompt": "x"}, policy)["temperature"] == 0.15


def test_a_policy_leaves_malformed_bodies_for_vllm_to_refuse():
    policy = policy_of("deepseek-r1.yaml", "deepseek-r1")
    for messages in ("hello", [1, 2], [{"role": "system", "content": [{"type": "image_url"}]},
                                        {"role": "user", "content": "u"}]):  # fmt: skip
        assert apply_request_policy("chat", chat(messages=messages), policy)["messages"] == messages
