"""Bad input at scale: hundreds of generated malformed or hostile requests against the
real stack. None may get a 5xx, none may hang, and the engines must serve afterwards."""

from __future__ import annotations

import json

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.e2e

MODELS = ["smollm2-135m-instruct", "tiny-random-llama"]

json_scalars = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=40)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=12,
)
# Values a client may plausibly get wrong; absent or large-but-valid token counts are left out
# so the run stays bounded (they would only generate text).
token_counts = st.sampled_from([-5, -1, 0, 1, 2, "3", 1e12, 2.5, True, [], {}, 10**30])
messages = st.one_of(
    json_values,
    st.lists(
        st.fixed_dictionaries(
            {"role": st.sampled_from(["user", "system", "assistant", "tool", "nobody", 7]), "content": json_values}
        ),
        max_size=3,
    ),
)


@st.composite
def hostile_chat_bodies(draw) -> dict:
    body = {
        "model": draw(st.sampled_from(MODELS) | json_values),
        "messages": draw(messages),
        "max_tokens": draw(token_counts),
    }
    for field in ("temperature", "top_p", "n", "stream", "stop", "logprobs", "tools", "response_format", "seed"):
        if draw(st.booleans()):
            body[field] = draw(json_values)
    if draw(st.booleans()):
        body[draw(st.text(min_size=1, max_size=10))] = draw(json_values)
    return body


@st.composite
def hostile_raw_bodies(draw) -> bytes:
    return draw(
        st.sampled_from([b"", b"{", b"null", b"[]", b'"x"', b"\xff\xfe", b'{"model": ', b"{}" * 1000])
        | st.binary(max_size=200)
        | st.builds(lambda v: json.dumps(v).encode(), json_values)
    )


def _post(base_url: str, path: str, content: bytes) -> httpx.Response:
    return httpx.post(
        f"{base_url}{path}", content=content, headers={"Content-Type": "application/json"}, timeout=120
    )


def _assert_clean(response: httpx.Response) -> None:
    assert response.status_code < 500, response.text[:500]
    if response.status_code >= 400:
        assert response.json()["error"]["code"] == response.status_code


@settings(max_examples=350, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(body=hostile_chat_bodies(), path=st.sampled_from(["/v1/chat/completions", "/v1/completions"]))
def test_generated_hostile_json_never_gets_a_5xx(base_url, body, path):
    if path == "/v1/completions":
        body["prompt"] = body.pop("messages")
    if body.get("stream") is True:
        body["stream"] = False  # a stream's status is 200 before validation of its tail
    _assert_clean(_post(base_url, path, json.dumps(body, default=str).encode()))


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(raw=hostile_raw_bodies(), path=st.sampled_from(["/v1/chat/completions", "/v1/completions", "/v1/models"]))
def test_generated_hostile_bytes_never_get_a_5xx(base_url, raw, path):
    _assert_clean(_post(base_url, path, raw))


def test_engines_still_serve_after_the_barrage(client):
    for model in MODELS:
        reply = client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "Hi"}], max_tokens=3,
            extra_body={"ignore_eos": True},
        )  # fmt: skip
        assert reply.usage.completion_tokens == 3
