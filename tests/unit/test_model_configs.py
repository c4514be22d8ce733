"""Every Serve config under configs/ deploys as written: Ray's schema and ours accept it, vLLM
knows every engine argument and parser, the recipe's must-have flags are there, and each GPU
model's parallelism is the planner's layout for the load the config itself sets."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from cluster.catalog import get_model
from cluster.config_plan import plan_for_model
from deployments.config import AppConfig, ModelConfig, load_app_config
from deployments.vllm_args import validate_engine_args

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
CONFIG_FILES = sorted(CONFIGS.glob("*.yaml"))

# One config per model of the fleet, the H100 layouts where one H100 node is not enough, and
# the fleet example.
EXPECTED_CONFIGS = {
    "kimi.yaml",
    "kimi-h100.yaml",
    "deepseek-r1.yaml",
    "deepseek-r1-h100.yaml",
    "mistral-large-3.yaml",
    "mistral-large-3-h100.yaml",
    "glm-4.7-flash.yaml",
    "qwen3-235b-a22b.yaml",
    "qwen3-235b-a22b-h100.yaml",
    "qwen3-32b.yaml",
    "qwen3-8b.yaml",
    "llama-3.3-70b.yaml",
    "olmo-3-32b.yaml",
    "orchestrator-8b.yaml",
    "deepseek-r1-distill-qwen-32b.yaml",
    "fleet.yaml",
}

# Flags a model's recipe says it cannot be served (as recommended) without.
RECIPE_FLAGS = {
    "kimi-k2.5": {
        "trust_remote_code": True,
        "tool_call_parser": "kimi_k2",
        "reasoning_parser": "kimi_k2",
    },
    "deepseek-r1": {
        "trust_remote_code": True,
        "enable_expert_parallel": True,
        "tool_call_parser": "deepseek_v3",
        "reasoning_parser": "deepseek_r1",
    },
    "mistral-large-3": {
        "tokenizer_mode": "mistral",
        "config_format": "mistral",
        "load_format": "mistral",
        "tool_call_parser": "mistral",
    },
    "glm-4.7-flash": {
        "tool_call_parser": "glm47",
        "reasoning_parser": "glm45",
        "speculative_config": {"method": "mtp", "num_speculative_tokens": 1},
    },
    "qwen3-235b-a22b": {"tool_call_parser": "hermes", "reasoning_parser": "qwen3"},
    "qwen3-32b": {"tool_call_parser": "hermes", "reasoning_parser": "qwen3"},
    "qwen3-8b": {"tool_call_parser": "hermes", "reasoning_parser": "qwen3"},
    "llama-3.3-70b-instruct": {"tool_call_parser": "llama3_json"},
    "nemotron-orchestrator-8b": {"tool_call_parser": "hermes"},
    "deepseek-r1-distill-qwen-32b": {"reasoning_parser": "deepseek_r1"},
}


def _document(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def _gpu_models(path: Path) -> list[ModelConfig]:
    return [m for m in load_app_config(path).models if m.placement.accelerator != "CPU"]


def _config_id(path: Path) -> str:
    return path.name


GPU_CONFIG_FILES = [path for path in CONFIG_FILES if _gpu_models(path)]
GPU_MODELS = [(path, model) for path in GPU_CONFIG_FILES for model in _gpu_models(path)]


def test_every_expected_config_exists():
    assert EXPECTED_CONFIGS <= {path.name for path in CONFIG_FILES}


@pytest.mark.parametrize("path", CONFIG_FILES, ids=_config_id)
def test_rays_serve_schema_accepts_the_config(path):
    from ray.serve.schema import ServeDeploySchema

    schema = ServeDeploySchema.model_validate(_document(path))
    assert schema.applications[0].import_path == "deployments.app:build_app"


@pytest.mark.parametrize("path", CONFIG_FILES, ids=_config_id)
def test_our_schema_and_vllm_accept_every_model(path):
    app = load_app_config(path)
    for model in app.models:
        validate_engine_args(model)


@pytest.mark.parametrize("path", GPU_CONFIG_FILES, ids=_config_id)
def test_cluster_configs_listen_where_the_load_balancer_reaches(path):
    document = _document(path)
    assert document["http_options"] == {"host": "0.0.0.0", "port": 8000}
    assert document["proxy_location"] in ("HeadOnly", "EveryNode")
    assert document["applications"][0]["route_prefix"] == "/"


@pytest.mark.parametrize(
    "path, model", GPU_MODELS, ids=[f"{p.name}:{m.name}" for p, m in GPU_MODELS]
)
def test_parallelism_is_the_planners_layout_for_the_configs_load(path, model):
    planned = plan_for_model(model)
    assert (planned.tensor_parallel_size, planned.pipeline_parallel_size) == (
        model.parallelism.tensor_parallel_size,
        model.parallelism.pipeline_parallel_size,
    ), planned.reasons
    assert planned.max_num_seqs == model.engine_args["max_num_seqs"]
    assert planned.context == model.engine_args["max_model_len"]


@pytest.mark.parametrize(
    "path, model", GPU_MODELS, ids=[f"{p.name}:{m.name}" for p, m in GPU_MODELS]
)
def test_weights_are_a_known_repo_of_the_catalog_model(path, model):
    catalog_model = get_model(model.catalog_id)
    known = {r.lower() for r in catalog_model.hf_repos} | {
        c.hf_repo.lower() for c in catalog_model.checkpoints
    }
    assert model.weights.hf_repo.lower() in known
    assert model.weights.allow_patterns, "stage only the chosen format's files"


@pytest.mark.parametrize(
    "path, model", GPU_MODELS, ids=[f"{p.name}:{m.name}" for p, m in GPU_MODELS]
)
def test_recipe_flags_are_set(path, model):
    required = RECIPE_FLAGS.get(get_model(model.catalog_id).id, {})
    assert {key: model.engine_args.get(key) for key in required} == required
    if "tool_call_parser" in model.engine_args:
        assert model.engine_args["enable_auto_tool_choice"] is True


def test_every_served_model_has_its_recipe_flags_listed():
    served = {get_model(model.catalog_id).id for _, model in GPU_MODELS}
    assert served - {"olmo-3-32b"} == set(RECIPE_FLAGS)  # Olmo 3 has no recipe


@pytest.mark.parametrize(
    "path, model", GPU_MODELS, ids=[f"{p.name}:{m.name}" for p, m in GPU_MODELS]
)
def test_parsers_are_registered_in_vllm(path, model):
    from vllm.reasoning import ReasoningParserManager
    from vllm.tool_parsers import ToolParserManager

    if "tool_call_parser" in model.engine_args:
        assert model.engine_args["tool_call_parser"] in ToolParserManager.list_registered()
    if "reasoning_parser" in model.engine_args:
        assert model.engine_args["reasoning_parser"] in ReasoningParserManager.list_registered()


def test_fleet_models_are_exactly_their_own_configs_entries():
    fleet: AppConfig = load_app_config(CONFIGS / "fleet.yaml")
    assert len(fleet.models) >= 3
    standalone = [
        model
        for path in CONFIG_FILES
        if path.name != "fleet.yaml"
        for model in load_app_config(path).models
    ]
    for model in fleet.models:
        assert model in standalone, f"{model.name} differs from its own config"


def _readme_rows() -> dict[str, list[str]]:
    """{file: its cells} of the table in configs/README.md."""
    rows = {}
    for line in (CONFIGS / "README.md").read_text().splitlines():
        if line.startswith("| `"):
            cells = [cell.strip() for cell in line.strip("|").split("|")]
            rows[cells[0].strip("`")] = cells
    return rows


def test_readme_lists_every_config():
    assert set(_readme_rows()) == {path.name for path in CONFIG_FILES}


# A fleet's row points at its models' own rows.
@pytest.mark.parametrize(
    "path", [p for p in GPU_CONFIG_FILES if len(_gpu_models(p)) == 1], ids=_config_id
)
def test_readme_layout_is_the_configs(path):
    (model,) = _gpu_models(path)
    cells = _readme_rows()[path.name]
    parallelism = model.parallelism
    assert cells[3] == f"{parallelism.tensor_parallel_size} x {parallelism.pipeline_parallel_size}"
    assert cells[4] == str(plan_for_model(model).nodes)
    engine_args = model.engine_args
    assert cells[5] == f"{engine_args['max_model_len']} x {engine_args['max_num_seqs']}"
