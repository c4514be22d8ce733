"""`python -m cluster tfvars`: every Terraform example's sizing is what its Serve config
generates, and the generator refuses a config it cannot size as asked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cluster.__main__ import main
from cluster.tfvars import (
    SizingVariables,
    TfvarsError,
    format_hcl,
    planned_model,
    sizing_variables,
)
from deployments.config import load_app_config

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "terraform" / "examples"

# Each example directory (<cloud>-<model>-<gpu>) and the Serve config it is sized for.
EXAMPLE_CONFIGS = {
    "gke-kimi-k2.5-h200": "configs/kimi.yaml",
    "eks-kimi-k2.5-h200": "configs/kimi.yaml",
    "gke-deepseek-r1-h100": "configs/deepseek-r1-h100.yaml",
    "eks-deepseek-r1-h100": "configs/deepseek-r1-h100.yaml",
}


def _parse_tfvars(text: str) -> dict:
    """The flat `key = value` lines of a sizing.auto.tfvars (values are JSON literals)."""
    pairs = (
        line.split("=", 1)
        for line in text.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    )
    return {key.strip(): json.loads(value) for key, value in pairs}


def _only_model(config: str):
    return planned_model(load_app_config(ROOT / config))


def test_every_example_has_its_config():
    examples = {p.name for p in EXAMPLES.iterdir() if (p / "sizing.auto.tfvars").is_file()}
    assert examples == set(EXAMPLE_CONFIGS)


@pytest.mark.parametrize("example", sorted(EXAMPLE_CONFIGS))
def test_example_sizing_is_what_its_config_generates(example, capsys):
    cloud = example.split("-", 1)[0]
    assert main(["tfvars", str(ROOT / EXAMPLE_CONFIGS[example]), "--cloud", cloud]) == 0
    generated = _parse_tfvars(capsys.readouterr().out)
    checked_in = _parse_tfvars((EXAMPLES / example / "sizing.auto.tfvars").read_text())
    assert generated == checked_in
    assert set(generated) == set(SizingVariables.model_fields)


def test_json_output_carries_the_same_variables(capsys):
    config = str(ROOT / "configs/deepseek-r1-h100.yaml")
    assert main(["tfvars", config, "--cloud", "gke", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "gpu_type": "H100",
        "gpus_per_node": 8,
        "tensor_parallel_size": 8,
        "pipeline_parallel_size": 2,
        "min_replicas": 1,
        "max_replicas": 2,
        "machine_type": "a3-megagpu-8g",
    }


def test_hcl_is_aligned_like_terraform_fmt():
    variables = sizing_variables(_only_model("configs/qwen3-8b.yaml"), "eks")
    lines = format_hcl(variables).splitlines()
    assert lines[0] == 'gpu_type               = "H200"'
    assert len({line.index("=") for line in lines}) == 1


def test_replica_flags_set_the_bounds_when_the_config_does_not():
    model = _only_model("configs/kimi.yaml")
    variables = sizing_variables(model, "gke", min_replicas=0, max_replicas=3)
    assert (variables.min_replicas, variables.max_replicas) == (0, 3)
    assert sizing_variables(model, "gke", min_replicas=3).max_replicas == 3


def test_a_configs_num_replicas_fixes_both_bounds():
    kimi = _only_model("configs/kimi.yaml")
    model = type(kimi).model_validate(kimi.model_dump(exclude_unset=True) | {"num_replicas": 3})
    variables = sizing_variables(model, "eks")
    assert (variables.min_replicas, variables.max_replicas) == (3, 3)
    with pytest.raises(TfvarsError, match="num_replicas: 3; --max-replicas 5 disagrees"):
        sizing_variables(model, "eks", max_replicas=5)


def test_bad_replica_bounds_are_refused():
    with pytest.raises(TfvarsError, match="replica bounds 3..2"):
        sizing_variables(_only_model("configs/kimi.yaml"), "gke", min_replicas=3, max_replicas=2)


def test_parallelism_other_than_the_planners_is_refused():
    model = _only_model("configs/deepseek-r1-h100.yaml")
    wrong = type(model).model_validate(
        model.model_dump(exclude_unset=True)
        | {"parallelism": {"tensor_parallel_size": 4, "pipeline_parallel_size": 4}}
    )
    with pytest.raises(TfvarsError, match="TP4 x PP4 is not the planner's TP8 x PP2"):
        sizing_variables(wrong, "gke")


def test_machine_type_is_the_catalogs_first_unless_another_of_its_own_is_asked():
    model = _only_model("configs/kimi.yaml")
    assert sizing_variables(model, "eks").machine_type == "p5e.48xlarge"
    assert sizing_variables(model, "eks", machine_type="p5en.48xlarge").machine_type == (
        "p5en.48xlarge"
    )
    with pytest.raises(TfvarsError, match="not one of the eks machines with 8 H200"):
        sizing_variables(model, "eks", machine_type="p5.48xlarge")


def test_a_fleet_needs_the_model_named(capsys):
    fleet = str(ROOT / "configs/fleet.yaml")
    assert main(["tfvars", fleet, "--cloud", "gke"]) == 1
    assert "name one with --model" in capsys.readouterr().err
    assert main(["tfvars", fleet, "--cloud", "gke", "--model", "qwen3-32b", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["tensor_parallel_size"] == 2


def test_a_cpu_config_cannot_be_sized(capsys):
    config = str(ROOT / "configs/local.yaml")
    assert main(["tfvars", config, "--cloud", "gke", "--model", "default"]) == 2
    assert "CPU" in capsys.readouterr().err
