"""`python -m cluster plan`: readable table, JSON, and exit codes that say what went wrong."""

import json
import subprocess
import sys

from cluster.__main__ import main


def test_plan_prints_a_readable_table(capsys):
    assert main(["plan", "kimi-k2.5", "--gpu", "H200"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("kimi-k2.5 (Kimi K2.5) on H200, 8 GPUs per node")
    assert "TP 8 x PP 1 = 8 GPUs on 1 node" in out
    assert "595.1 GB: int4 checkpoint moonshotai/Kimi-K2.5" in out
    assert "accelerator_type:H200" in out
    assert "aws p5e.48xlarge" in out
    assert "\nwhy:\n  - " in out


def test_plan_json_carries_the_plan_fields(capsys):
    args = [
        "plan",
        "deepseek-r1",
        "--gpu",
        "h100",
        "--concurrency",
        "8",
        "--context",
        "16384",
        "--json",
    ]
    assert main(args) == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["tensor_parallel_size"], result["pipeline_parallel_size"], result["nodes"]) == (
        8,
        2,
        2,
    )
    assert (result["gpu"], result["context"], result["concurrency"]) == ("H100", 16384, 8)
    assert result["max_concurrent_sequences"] >= 8
    assert result["reasons"]


def test_unknown_model_exits_2_listing_known_ids(capsys):
    assert main(["plan", "gpt-5", "--gpu", "H200"]) == 2
    err = capsys.readouterr().err
    assert "unknown model 'gpt-5'" in err
    assert "kimi-k2.5" in err and "smollm2-135m-instruct" in err


def test_unknown_gpu_exits_2(capsys):
    assert main(["plan", "kimi-k2.5", "--gpu", "TPUv5"]) == 2
    assert "known GPUs: H100, H200" in capsys.readouterr().err


def test_precision_the_model_does_not_have_exits_2(capsys):
    assert main(["plan", "kimi-k2.5", "--gpu", "H200", "--precision", "bf16"]) == 2
    assert "ships int4 weights natively" in capsys.readouterr().err


def test_infeasible_exits_1_and_names_what_would_fit(capsys):
    assert main(["plan", "deepseek-r1", "--gpu", "H100", "--max-nodes", "1"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(
        "infeasible: deepseek-r1 (673.2 GB of fp8 weights) does not fit 1 node of 8 H100"
    )
    assert "2 x 8 H100 as TP8 x PP2" in err


def test_infeasible_json_lists_the_alternatives(capsys):
    assert main(["plan", "deepseek-r1", "--gpu", "H100", "--max-nodes", "1", "--json"]) == 1
    infeasibility = json.loads(capsys.readouterr().out)
    assert infeasibility["model_id"] == "deepseek-r1"
    assert {a["gpu"] for a in infeasibility["alternatives"]} >= {"H100", "H200"}


def test_python_dash_m_cluster_runs_the_dispatcher():
    completed = subprocess.run(
        [sys.executable, "-m", "cluster", "plan", "qwen3-8b", "--gpu", "H200"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert "TP 1 x PP 1 = 1 GPU on 1 node" in completed.stdout
