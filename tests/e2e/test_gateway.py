"""The ingress as a gateway: API keys, limits, rate limits, admission control, timeouts,
and model-card request policies, through the whole stack with the official `openai` client.

Auth and limits run against a small application of token-timing engines (they start in
seconds) with `auth.mode: api_keys`; request policies against the session's two-model
application (its tiny-random-llama carries a policy in configs/local-two-models.yaml).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import openai
import pytest

pytestmark = pytest.mark.e2e

APP, PREFIX = "gateway", "/gw"
FULL_KEY = "sk-gateway-full-0123456789"
LIMITED_KEY = "sk-gateway-limited-0123456789"
TOKENS_KEY = "sk-gateway-tokens-0123456789"
KEYS = {
    "full": {"key": FULL_KEY, "models": ["sim-open", "sim-slow", "sim-wide", "sim-timeout"]},
    "limited": {"key": LIMITED_KEY, "models": ["sim-open"], "requests_per_min": 2},
    "tokens": {"key": TOKENS_KEY, "models": ["sim-open"], "tokens_per_min": 100},
}
HI = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def gateway_url(base_url, tmp_path_factory):
    from ray import serve

    from deployments.app import build_app

    secret = tmp_path_factory.mktemp("secrets") / "api-keys.json"
    secret.write_text(json.dumps(KEYS))
    fast = {"ttft_s": 0.01, "tokens_per_s": 1000.0}
    args = {
        "ingress": {"auth": {"mode": "api_keys", "keys_file": str(secret)}},
        "models": [
            {"name": "sim-open", "simulated_engine": fast,
             "limits": {"max_tokens_cap": 50, "max_prompt_tokens": 100}},
            {"name": "sim-private", "simulated_engine": fast},
            # One request at a time, one waiting: the rest must be refused at once.
            {"name": "sim-slow", "simulated_engine": {"ttft_s": 0.01, "tokens_per_s": 20.0},
             "max_ongoing_requests": 1, "limits": {"max_queued_requests_per_replica": 1}},
            # Room for 32 at once but a queue of 1: a burst that fits must all be taken.
            {"name": "sim-wide", "simulated_engine": {"ttft_s": 0.01, "tokens_per_s": 20.0},
             "max_ongoing_requests": 32, "limits": {"max_queued_requests_per_replica": 1}},
            {"name": "sim-timeout", "simulated_engine": {"ttft_s": 0.01, "tokens_per_s": 20.0},
             "max_ongoing_requests": 1, "limits": {"request_timeout_s": 2}},
        ],
    }  # fmt: skip
    serve.run(build_app(args), name=APP, route_prefix=PREFIX)
    yield f"{base_url}{PREFIX}"
    serve.delete(APP)


def client_for(url: str, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, timeout=60)


def test_no_key_or_a_wrong_key_gets_401(gateway_url):
    response = httpx.post(f"{gateway_url}/v1/chat/completions", json={"model": "sim-open", "messages": HI})
    assert response.status_code == 401 and response.json()["error"]["code"] == 401
    with pytest.raises(openai.AuthenticationError):
        client_for(gateway_url, "sk-not-a-key-0123456789").chat.completions.create(
            model="sim-open", messages=HI, max_tokens=2
        )
    with pytest.raises(openai.AuthenticationError):
        client_for(gateway_url, "sk-not-a-key-0123456789").models.list()


def test_a_key_sees_and_uses_only_its_models(gateway_url):
    client = client_for(gateway_url, FULL_KEY)
    assert {m.id for m in client.models.list().data} == {"sim-open", "sim-slow", "sim-wide", "sim-timeout"}
    assert client.chat.completions.create(model="sim-open", messages=HI, max_tokens=2).usage
    # A model the key may not use answers exactly like one that does not exist.
    with pytest.raises(openai.NotFoundError) as hidden:
        client.chat.completions.create(model="sim-private", messages=HI, max_tokens=2)
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="no-such-model", messages=HI, max_tokens=2)
    assert hidden.value.message.replace("sim-private", "X") == missing.value.message.replace(
        "no-such-model", "X"
    )
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("sim-private")


def test_max_tokens_cap_and_prompt_limit(gateway_url):
    client = client_for(gateway_url, FULL_KEY)
    # Unset max_tokens becomes the cap (the token-timing engine produces exactly max_tokens).
    assert client.chat.completions.create(model="sim-open", messages=HI).usage.completion_tokens == 50
    with pytest.raises(openai.BadRequestError, match="max_tokens=51"):
        client.chat.completions.create(model="sim-open", messages=HI, max_tokens=51)
    with pytest.raises(openai.BadRequestError, match="at most 100"):
        client.completions.create(model="sim-open", prompt="word " * 100, max_tokens=2)


def test_body_size_limit(gateway_url):
    response = httpx.post(
        f"{gateway_url}/v1/completions",
        content=b'{"model": "sim-open", "prompt": "' + b"x" * (5 * 1024 * 1024) + b'"}',
        headers={"Authorization": f"Bearer {FULL_KEY}", "Content-Type": "application/json"},
        timeout=60,
    )
    assert response.status_code == 413


def test_requests_per_minute_limit_answers_429_with_retry_after(gateway_url):
    client = client_for(gateway_url, LIMITED_KEY)
    for _ in range(2):
        client.chat.completions.create(model="sim-open", messages=HI, max_tokens=2)
    with pytest.raises(openai.RateLimitError) as refused:
        client.chat.completions.create(model="sim-open", messages=HI, max_tokens=2)
    assert 1 <= int(refused.value.response.headers["retry-after"]) <= 30
    # Another key is not affected.
    assert client_for(gateway_url, FULL_KEY).chat.completions.create(
        model="sim-open", messages=HI, max_tokens=2
    ).usage.completion_tokens == 2


def test_tokens_per_minute_limit_counts_prompt_and_completion(gateway_url):
    client = client_for(gateway_url, TOKENS_KEY)
    first = client.chat.completions.create(model="sim-open", messages=HI, max_tokens=50)
    assert first.usage.total_tokens == 51
    with pytest.raises(openai.RateLimitError):  # 51 + 51 > 100 tokens per minute
        client.chat.completions.create(model="sim-open", messages=HI, max_tokens=50)
    # What is left still fits a small request.
    assert client.chat.completions.create(model="sim-open", messages=HI, max_tokens=20).usage


def test_a_full_model_queue_is_refused_at_once_with_retry_after(gateway_url):
    async def one(client: httpx.AsyncClient) -> httpx.Response:
        return await client.post(
            f"{gateway_url}/v1/chat/completions",
            # 2 s each: the burst must reach the replica before the first one ends, even
            # on a machine that is busy with something else.
            json={"model": "sim-slow", "messages": HI, "max_tokens": 40},
            headers={"Authorization": f"Bearer {FULL_KEY}"},
        )

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=60) as client:
            return await asyncio.gather(*(one(client) for _ in range(8)))

    responses = asyncio.run(burst())
    statuses = sorted(r.status_code for r in responses)
    assert set(statuses) == {200, 503}, statuses
    # 1 running + 1 queued at a time: most of the burst is refused instead of piling up.
    assert statuses.count(503) >= 4, statuses
    refused = next(r for r in responses if r.status_code == 503)
    assert refused.headers["retry-after"] == "2"
    assert refused.json()["error"]["type"] == "ServiceUnavailableError"


def test_a_burst_that_fits_the_free_slots_is_taken_whole(gateway_url):
    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=60) as client:
            return await asyncio.gather(*(
                client.post(
                    f"{gateway_url}/v1/chat/completions",
                    json={"model": "sim-wide", "messages": HI, "max_tokens": 10},
                    headers={"Authorization": f"Bearer {FULL_KEY}"},
                )
                for _ in range(24)
            ))  # fmt: skip

    statuses = [r.status_code for r in asyncio.run(burst())]
    # Serve counts these as queued until the replica takes them; a bound of the queue
    # alone (1) would refuse most of them although 32 slots are free.
    assert statuses == [200] * 24, statuses


def test_a_request_past_its_timeout_is_cancelled(gateway_url):
    client = client_for(gateway_url, FULL_KEY)
    # sim-timeout runs one request at a time with a 2 s limit: the short request after each
    # timed-out one is answered only if the timed-out one was cancelled in the engine
    # (otherwise it holds the slot for its remaining ~8 s and the short one times out too).
    with pytest.raises(openai.APIStatusError) as timed_out:  # 200 tokens at 20/s: 10 s
        client.chat.completions.create(model="sim-timeout", messages=HI, max_tokens=200)
    assert timed_out.value.status_code == 504
    assert client.chat.completions.create(model="sim-timeout", messages=HI, max_tokens=2).usage
    stream = client.chat.completions.create(
        model="sim-timeout", messages=HI, max_tokens=200, stream=True
    )
    with pytest.raises(openai.APIError, match="did not finish within 2 s"):
        for _ in stream:
            pass
    assert client.chat.completions.create(model="sim-timeout", messages=HI, max_tokens=2).usage


def test_every_concurrent_stream_carries_all_its_tokens_and_its_end(gateway_url):
    # Under load the engine sends a stream's pieces in fewer messages
    # (deployments.stream_batching): nothing may be lost on the way, the end least of all.
    async def one(client: openai.AsyncOpenAI) -> tuple[int, int | None]:
        stream = await client.chat.completions.create(
            model="sim-open", messages=HI, max_tokens=50, stream=True,
            stream_options={"include_usage": True},
        )  # fmt: skip
        text, completion_tokens = "", None
        async for chunk in stream:
            if chunk.choices:
                text += chunk.choices[0].delta.content or ""
            if chunk.usage:
                completion_tokens = chunk.usage.completion_tokens
        return text.count(" token"), completion_tokens

    async def scenario() -> list[tuple[int, int | None]]:
        client = openai.AsyncOpenAI(
            base_url=f"{gateway_url}/v1", api_key=FULL_KEY, max_retries=0, timeout=60
        )
        async with client:
            return await asyncio.gather(*(one(client) for _ in range(128)))

    assert asyncio.run(scenario()) == [(50, 50)] * 128


def test_keys_never_reach_the_logs(gateway_url):
    import ray

    # Every test above sent keys; none may appear in any log of this Ray session.
    logs = Path(ray._private.worker.global_worker.node.get_session_dir_path()) / "logs"
    for path in logs.rglob("*"):
        if path.is_file():
            text = path.read_bytes()
            for key in (FULL_KEY, LIMITED_KEY, TOKENS_KEY):
                assert key.encode() not in text, path


# --- request policies, on the session's two-model application --------------------------------

SMOLLM2, RANDOM_LLAMA = "smollm2-135m-instruct", "tiny-random-llama"
BOXED = "Please reason step by step, and put your final answer within \\boxed{}."


def prompt_ids(client, model: str, messages: list[dict]) -> list[int]:
    reply = client.chat.completions.create(
        model=model, messages=messages, max_tokens=1, extra_body={"return_token_ids": True}
    )
    return reply.model_extra["prompt_token_ids"]


def test_request_policy_folds_the_system_prompt_and_adds_the_math_instruction(client):
    system, user = "You answer in one word.", "What is 6 times 7?"
    with_policy = prompt_ids(
        client, RANDOM_LLAMA, [{"role": "system", "content": system}, {"role": "user", "content": user}]
    )
    # Same tokenizer and chat template, no policy: what the policy should have produced.
    folded = prompt_ids(client, SMOLLM2, [{"role": "user", "content": f"{system}\n\n{user}\n{BOXED}"}])
    unfolded = prompt_ids(
        client, SMOLLM2, [{"role": "system", "content": system}, {"role": "user", "content": user}]
    )
    assert with_policy == folded
    assert with_policy != unfolded


def test_request_policy_is_shown_in_the_model_card(client):
    card = client.models.retrieve(RANDOM_LLAMA).model_extra["request_policy"]
    assert card["sampling"] == {"temperature": 0.6, "top_p": 0.95}
    assert card["system_prompt"] == "fold_into_first_user" and card["math_instruction"] == BOXED
    assert client.models.retrieve(SMOLLM2).model_extra["request_policy"] is None


def test_usage_in_streamed_completions_when_asked(client):
    chunks = list(client.completions.create(
        model=SMOLLM2, prompt="The capital of France is", max_tokens=4, stream=True,
        stream_options={"include_usage": True},
    ))  # fmt: skip
    assert chunks[-1].usage.completion_tokens == 4 and chunks[-1].usage.prompt_tokens > 0
