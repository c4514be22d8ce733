"""The OpenAI API through the whole stack, with the official `openai` client."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

pytestmark = pytest.mark.e2e

SMOLLM2 = "smollm2-135m-instruct"
RANDOM_LLAMA = "tiny-random-llama"


def test_greedy_chat_answers_paris(client):
    reply = client.chat.completions.create(
        model=SMOLLM2,
        messages=[{"role": "user", "content": "What is the capital of France?"}],
        temperature=0,
        max_tokens=20,
    )
    assert "Paris" in reply.choices[0].message.content
    assert reply.usage.completion_tokens > 0


def test_streamed_chat_delivers_tokens_and_usage(client):
    stream = client.chat.completions.create(
        model=SMOLLM2,
        messages=[{"role": "user", "content": "What is the capital of France?"}],
        temperature=0,
        max_tokens=20,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "Paris" in text
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_completions(client):
    reply = client.completions.create(
        model=SMOLLM2, prompt="The capital of France is", max_tokens=8, temperature=0
    )
    assert reply.choices[0].text.strip()
    assert reply.usage.prompt_tokens > 0


def test_list_models_and_get_one(client, model_names):
    listed = {m.id for m in client.models.list().data}
    assert listed == set(model_names)
    assert client.models.retrieve(RANDOM_LLAMA).id == RANDOM_LLAMA


@pytest.mark.parametrize("model", [SMOLLM2, RANDOM_LLAMA])
def test_each_model_answers_under_its_own_name(client, model):
    reply = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "Hello"}],
        max_tokens=5,
        extra_body={"ignore_eos": True},
    )
    assert reply.model == model
    assert reply.usage.completion_tokens == 5


BAD_REQUESTS = {
    "malformed json": (b'{"model": "smollm2-135m-instruct", "messages": [', 400),
    "messages not a list": (
        b'{"model": "smollm2-135m-instruct", "messages": "hello"}',
        400,
    ),
    "empty messages": (b'{"model": "smollm2-135m-instruct", "messages": []}', 400),
    "unknown model": (
        b'{"model": "no-such-model", "messages": [{"role": "user", "content": "hi"}]}',
        404,
    ),
    "negative max_tokens": (
        b'{"model": "smollm2-135m-instruct", "max_tokens": -5,'
        b' "messages": [{"role": "user", "content": "hi"}]}',
        400,
    ),
    "temperature out of range": (
        b'{"model": "smollm2-135m-instruct", "temperature": 7,'
        b' "messages": [{"role": "user", "content": "hi"}]}',
        400,
    ),
    "prompt longer than max_model_len": (
        b'{"model": "smollm2-135m-instruct", "messages": [{"role": "user", "content": "'
        + b"word " * 2500
        + b'"}]}',
        400,
    ),
    "body not an object": (b"[1, 2, 3]", 400),
}


@pytest.mark.parametrize("case", sorted(BAD_REQUESTS))
def test_bad_input_gets_openai_error_and_server_keeps_serving(base_url, client, case):
    body, status = BAD_REQUESTS[case]
    response = httpx.post(
        f"{base_url}/v1/chat/completions",
        content=body,
        headers={"Content-Type": "application/json"},
        timeout=60,
    )
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["message"] and error["type"] and error["code"] == status
    assert "Traceback" not in response.text
    # ... and the engine is still serving.
    reply = client.chat.completions.create(
        model=SMOLLM2, messages=[{"role": "user", "content": "Hi"}], max_tokens=2
    )
    assert reply.usage.completion_tokens >= 1


def test_openai_client_raises_typed_errors(client):
    import openai

    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(
            model="no-such-model", messages=[{"role": "user", "content": "hi"}]
        )
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(
            model=SMOLLM2, messages=[{"role": "user", "content": "hi"}], temperature=-1
        )


def test_32_concurrent_streams_complete_with_requested_token_counts(base_url):
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=f"{base_url}/v1", api_key="unused", max_retries=0, timeout=300)
    wanted = [8 + (i % 4) * 8 for i in range(32)]  # 8, 16, 24, 32 tokens

    async def one(max_tokens: int) -> tuple[int, int]:
        stream = await client.chat.completions.create(
            model=SMOLLM2,
            messages=[{"role": "user", "content": "Tell me a long story."}],
            max_tokens=max_tokens,
            stream=True,
            stream_options={"include_usage": True},
            extra_body={"ignore_eos": True},
        )
        content_chunks, usage = 0, None
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                content_chunks += 1
            usage = chunk.usage or usage
        return usage.completion_tokens, content_chunks

    async def all_of_them():
        return await asyncio.gather(*(one(n) for n in wanted))

    results = asyncio.run(all_of_them())
    assert [tokens for tokens, _ in results] == wanted
    assert all(chunks > 0 for _, chunks in results)


def test_client_disconnect_mid_stream_aborts_the_request_in_vllm(base_url, engine_handle):
    body = {
        "model": SMOLLM2,
        "messages": [{"role": "user", "content": "Count to ten thousand."}],
        "max_tokens": 1500,  # ~a minute of decoding here: it cannot finish by itself in time
        "stream": True,
        "ignore_eos": True,
    }
    with httpx.stream("POST", f"{base_url}/v1/chat/completions", json=body, timeout=60) as response:
        assert response.status_code == 200
        # Keep the line iterator alive: closing it would close the connection early.
        lines = response.iter_lines()
        events = 0
        while events < 3:
            events += next(lines).startswith("data: ")
        # Still connected: the engine is working on it.
        assert engine_handle.engine_stats.remote().result()["unfinished_requests"] == 1
        response.close()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if engine_handle.engine_stats.remote().result()["unfinished_requests"] == 0:
            return
        time.sleep(0.25)
    pytest.fail("the engine still holds the request 20 s after the client went away")


def test_planner_predicts_the_kv_cache_vllm_allocated(engine_handle, app_config):
    """The capacity planner's KV-cache token count for the local model, against vLLM's own."""
    from cluster.catalog import get_model
    from cluster.kv_cache import kv_cache_capacity

    engine_args = next(m for m in app_config["models"] if m["name"] == SMOLLM2)["engine_args"]
    allocated = engine_handle.engine_stats.remote().result()["kv_cache_tokens"]
    predicted = kv_cache_capacity(
        get_model("smollm2-135m-instruct"),
        engine_args["kv_cache_memory_bytes"],
        max_model_len=engine_args["max_model_len"],
        block_size=128,  # vLLM's CPU backend block size
    ).tokens
    assert allocated > 0
    assert abs(predicted - allocated) / allocated <= 0.10, (predicted, allocated)
