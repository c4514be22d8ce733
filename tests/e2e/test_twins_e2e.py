"""Every production config of configs/, switched to its CPU twin (`twin: true`), deploys
through `build_app` behind the shared ingress and serves chats with the config's parsers.

Configs that give a model the same twin (a model in its own file, in fleet.yaml and in an
-h100 variant; Qwen3-8B and Qwen3-32B: same architecture and flags) are deployed once.
The distinct twins run in two Serve applications, one after the other, in the session's
Ray cluster: all at once would not fit this machine's memory.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
import yaml

from cluster.catalog import get_model
from cluster.twins import twin_config
from deployments.config import AppConfig, ModelConfig
from deployments.request_policy import fold_system_into_first_user
from deployments.twin import twin_model

REPO = Path(__file__).resolve().parents[2]
PRODUCTION_CONFIGS = sorted(p for p in (REPO / "configs").glob("*.yaml") if not p.name.startswith("local"))
TWIN_APP = "twins"
TWIN_PREFIX = "/twins"
GROUPS = 2
MAX_TOKENS = 12


def _production_models() -> dict[str, list[tuple[str, dict]]]:
    """Model name -> [(config file, the model's args)] over every production config."""
    found: dict[str, list[tuple[str, dict]]] = {}
    for path in PRODUCTION_CONFIGS:
        for app in yaml.safe_load(path.read_text())["applications"]:
            for model in app["args"]["models"]:
                found.setdefault(model["name"], []).append((path.name, model))
    return found


def _twin_identity(model: ModelConfig) -> str:
    """What a twin runs: its config.json and engine flags (names and policies aside)."""
    spec = get_model(model.catalog_id)
    return json.dumps([twin_config(spec, 0, 0, 0), model.engine_args], sort_keys=True)


def _distinct_twins() -> list[dict]:
    twins, seen = [], set()
    for entries in _production_models().values():
        model = entries[0][1]
        identity = _twin_identity(twin_model(ModelConfig.model_validate(model)))
        if identity not in seen:
            seen.add(identity)
            twins.append(model)
    return twins


TWINS = _distinct_twins()
GROUP_OF = {model["name"]: i % GROUPS for i, model in enumerate(TWINS)}


def test_every_config_of_a_model_gives_the_same_twin():
    """Deploying one config per model covers the others (fleet, -h100 variants)."""
    for name, entries in _production_models().items():
        twins = {
            _twin_identity(twin_model(ModelConfig.model_validate(model))) for _, model in entries
        }
        assert len(twins) == 1, f"{name}: {[file for file, _ in entries]} give different twins"


def test_every_architecture_of_the_configs_has_a_twin():
    architectures = {
        get_model(model["catalog_id"]).architectures[0]
        for entries in _production_models().values()
        for _, model in entries
    }
    deployed = {get_model(model["catalog_id"]).architectures[0] for model in TWINS}
    assert architectures == deployed
    assert len(PRODUCTION_CONFIGS) > 0


@pytest.fixture(scope="module", params=range(GROUPS), ids=lambda g: f"group{g}")
def twin_group(request, base_url) -> tuple[str, list[str]]:
    """One Serve application of a group of twins; the next group replaces it."""
    from ray import serve

    from deployments.app import build_app

    models = [m for m in TWINS if GROUP_OF[m["name"]] == request.param]
    serve.run(build_app({"models": models, "twin": True}), name=TWIN_APP, route_prefix=TWIN_PREFIX)
    return f"{base_url}{TWIN_PREFIX}", [m["name"] for m in models]


def _chat(url: str, name: str, **body) -> dict:
    reply = httpx.post(
        f"{url}/v1/chat/completions",
        json={
            "model": name,
            "messages": [{"role": "user", "content": "What is the capital of France?"}],
            "max_tokens": MAX_TOKENS,
            # Random weights may sample the end token at any step.
            "ignore_eos": True,
        }
        | body,
        timeout=120,
    )
    assert reply.status_code == 200, reply.text
    return reply.json()


def _models_in(group: tuple[str, list[str]]) -> list[tuple[dict, ModelConfig]]:
    return [
        (m, AppConfig.model_validate({"models": [m]}).models[0])
        for m in TWINS
        if m["name"] in group[1]
    ]


@pytest.mark.parametrize("index", range(len(TWINS) // GROUPS + 1))
def test_twin_chats_with_its_parsers(twin_group, index):
    url, names = twin_group
    if index >= len(names):
        pytest.skip("group has fewer twins")
    raw, model = _models_in(twin_group)[index]
    name = model.aliases[0] if model.aliases else model.name  # aliases route too
    args = model.engine_args

    answer = _chat(url, name)
    assert answer["usage"]["completion_tokens"] == MAX_TOKENS
    message = answer["choices"][0]["message"]
    text = (message.get("reasoning") or "") + (message.get("content") or "")
    assert text, message
    if "reasoning_parser" not in args:
        assert "reasoning" not in message, message

    pieces, usage = _stream(url, name)
    assert usage["completion_tokens"] == MAX_TOKENS
    assert pieces

    if args.get("enable_auto_tool_choice"):
        tools = [
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "description": "Weather of a city",
                    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
                },
            }
        ]
        # tool_choice "auto" is refused (400) unless a tool-call parser is wired.
        answer = _chat(url, name, tools=tools, tool_choice="auto")
        assert answer["usage"]["completion_tokens"] == MAX_TOKENS


@pytest.mark.parametrize("index", range(len(TWINS) // GROUPS + 1))
def test_twin_applies_its_request_policy(twin_group, index):
    url, names = twin_group
    if index >= len(names):
        pytest.skip("group has fewer twins")
    _, model = _models_in(twin_group)[index]
    policy = model.request_policy
    card = httpx.get(f"{url}/v1/models/{model.name}", timeout=30).json()
    assert card["request_policy"] == (policy.model_dump(exclude_none=True) if policy else None)
    if policy is None or policy.system_prompt != "fold_into_first_user":
        return
    # The ingress folds the system prompt: the engine sees what a client folding it would send.
    messages = [
        {"role": "system", "content": "Answer in one word."},
        {"role": "user", "content": "What is the capital of France?"},
    ]
    as_sent = _chat(url, model.name, messages=messages, max_tokens=1)
    folded = _chat(url, model.name, messages=fold_system_into_first_user(messages), max_tokens=1)
    assert as_sent["usage"]["prompt_tokens"] == folded["usage"]["prompt_tokens"]


def _stream(url: str, name: str) -> tuple[list[str], dict]:
    pieces, usage = [], None
    with httpx.stream(
        "POST",
        f"{url}/v1/chat/completions",
        json={
            "model": name,
            "messages": [{"role": "user", "content": "Count to ten."}],
            "max_tokens": MAX_TOKENS,
            "ignore_eos": True,
            "stream": True,
            "stream_options": {"include_usage": True},
        },
        timeout=120,
    ) as reply:
        assert reply.status_code == 200
        for line in reply.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[len("data: "):])
            usage = chunk.get("usage") or usage
            for choice in chunk.get("choices", []):
                delta = choice.get("delta", {})
                piece = delta.get("content") or delta.get("reasoning")
                if piece:
                    pieces.append(piece)
    return pieces, usage
