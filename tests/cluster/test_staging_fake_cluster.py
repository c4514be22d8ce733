"""`python -m cluster stage` on a fake multi-node Ray cluster, against a Hub served by the test.

Nodes (raylets on this machine), each with its own staging root through its environment:
three fake 8-GPU H200 nodes, and one L40S node whose staging disk is declared 1 kB.
The Hub (tests/support/hub_server.py) serves on 127.0.0.1 a model with a 14 MB LFS
safetensors file (larger than huggingface_hub's 10 MB download chunk, so a dropped
connection resumes mid-file) and its twin, which is never staged.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import sys
from pathlib import Path

import pytest
import yaml

from cluster import cli_stage
from cluster.local_ray import LOOPBACK_ENV
from cluster.staging import CAPACITY_ENV, STAGING_DIR_ENV, staged_copy_status
from deployments.config import ModelConfig, WeightsNotStagedError
from tests.support.hub_server import HubServer

MODEL = "org/tiny-llama"
TWIN = "org/tiny-llama-twin"
SAFETENSORS_BYTES = 14 << 20


def _files(seed: str) -> dict[str, bytes]:
    weights = b"".join(
        hashlib.sha256(f"{seed}{i}".encode()).digest() for i in range(SAFETENSORS_BYTES // 32)
    )
    return {
        "config.json": f'{{"architectures": ["LlamaForCausalLM"], "seed": "{seed}"}}'.encode(),
        "tokenizer.json": f'{{"model": "{seed}"}}'.encode(),
        "model.safetensors": weights,
        "README.md": b"not part of the chosen format",
    }


@pytest.fixture(scope="module")
def hub():
    with HubServer({MODEL: _files("a"), TWIN: _files("b")}) as server:
        yield server


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, hub):
    import ray
    from ray.cluster_utils import Cluster

    saved = {k: os.environ.get(k) for k in [*LOOPBACK_ENV, "HF_ENDPOINT", "RAY_AUTH_MODE"]}
    os.environ.update(LOOPBACK_ENV)
    os.environ["HF_ENDPOINT"] = hub.endpoint
    os.environ["RAY_AUTH_MODE"] = "disabled"
    roots = tmp_path_factory.mktemp("staging")
    fake = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "node_ip_address": "127.0.0.1", "include_dashboard": False},
    )
    nodes = {}
    for name, accelerator, extra_env in [
        ("h200-a", "H200", {}),
        ("h200-b", "H200", {}),
        ("h200-c", "H200", {}),
        ("l40s-small", "L40S", {CAPACITY_ENV: "1000"}),
    ]:
        node = fake.add_node(
            num_cpus=1,
            num_gpus=8,
            resources={f"accelerator_type:{accelerator}": 1},
            node_ip_address="127.0.0.1",
            env_vars={STAGING_DIR_ENV: str(roots / name), **extra_env},
        )
        nodes[name] = (node.node_id, roots / name)
    ray.init(address=fake.address, _node_ip_address="127.0.0.1")
    # Functions of this module run on the nodes; workers cannot import test modules.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    try:
        yield nodes
    finally:
        ray.shutdown()
        fake.shutdown()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _config(tmp_path: Path, repo: str, accelerator: str) -> tuple[Path, ModelConfig]:
    model = {
        "name": repo.split("/")[1],
        "weights": {
            "hf_repo": repo,
            "revision": "main",
            "allow_patterns": ["*.json", "*.safetensors"],
        },
        "parallelism": {"tensor_parallel_size": 8},
        "placement": {"accelerator": accelerator, "gpus_per_node": 8},
    }
    path = tmp_path / f"{model['name']}-{accelerator}.yaml"
    path.write_text(yaml.safe_dump({"applications": [{"name": "llm", "args": {"models": [model]}}]}))
    return path, ModelConfig.model_validate(model)


def _stage(config: Path, *extra: str) -> int:
    from cluster.__main__ import main

    return main(["stage", str(config), "--interval", "0.5", *extra])


def _copy(root: Path, model: ModelConfig) -> Path:
    return root / model.weights.staged_directory().name


def _on_node(node_id: str, function, *args):
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    task = ray.remote(num_cpus=0)(function).options(
        scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False)
    )
    return ray.get(task.remote(*args))


def _start_engine(model: ModelConfig) -> None:
    from deployments.engine import LLMEngine

    # What Serve does to start a replica: the async __init__ of the deployment class.
    asyncio.run(LLMEngine.__init__(object.__new__(LLMEngine), model))


def test_every_gpu_node_ends_with_a_verified_copy_and_a_rerun_is_a_no_op(cluster, hub, tmp_path):
    from cluster.staging_ray import node_statuses

    config, model = _config(tmp_path, MODEL, "H200")
    assert _stage(config) == 0
    expected = _files("a")
    for name in ("h200-a", "h200-b", "h200-c"):
        node_id, root = cluster[name]
        copy = _copy(root, model)
        assert staged_copy_status(copy).ok, name
        for path in ("config.json", "tokenizer.json", "model.safetensors"):
            assert (copy / path).read_bytes() == expected[path]
        assert not (copy / "README.md").exists()
        # The engine on that node resolves to the node's own copy.
        assert _on_node(node_id, lambda m: m.weights.resolve(), model) == str(copy)
    assert not _copy(cluster["l40s-small"][1], model).exists()
    statuses = node_statuses(model.weights, [cluster[n][0] for n in ("h200-a", "l40s-small")])
    assert [s.ok for s in statuses.values()] == [True, False]

    downloads = len(hub.gets())
    assert _stage(config) == 0
    assert len(hub.gets()) == downloads


def test_an_interrupted_transfer_resumes_where_it_stopped(cluster, hub, tmp_path):
    config, model = _config(tmp_path, TWIN, "H200")
    node_id, root = cluster["h200-b"]
    hub.cut_after(TWIN, "model.safetensors", 12 << 20)
    try:
        assert _stage(config, "--node", node_id) == 0
    finally:
        hub.clear_cuts()
    gets = hub.gets(TWIN, "model.safetensors")
    assert gets[0].bytes_sent == 12 << 20
    resumed = [g for g in gets[1:] if g.range]
    assert resumed and resumed[0].range != "bytes=0-"
    assert sum(g.bytes_sent for g in gets) < 2 * SAFETENSORS_BYTES
    assert (_copy(root, model) / "model.safetensors").read_bytes() == _files("b")["model.safetensors"]


def test_a_corrupted_file_is_detected_and_fetched_again(cluster, hub, tmp_path):
    config, model = _config(tmp_path, MODEL, "H200")
    assert _stage(config) == 0
    flipped = _copy(cluster["h200-a"][1], model) / "model.safetensors"
    data = bytearray(flipped.read_bytes())
    data[100] ^= 0xFF  # same size: only the hash can tell
    flipped.write_bytes(bytes(data))
    truncated = _copy(cluster["h200-c"][1], model) / "model.safetensors"
    truncated.write_bytes(truncated.read_bytes()[:1000])
    assert not staged_copy_status(truncated.parent).ok

    before = len(hub.gets(MODEL, "model.safetensors"))
    assert _stage(config, "--rehash") == 0
    assert len(hub.gets(MODEL, "model.safetensors")) - before == 2  # those two nodes only
    expected = _files("a")["model.safetensors"]
    assert flipped.read_bytes() == expected
    assert truncated.read_bytes() == expected


def test_too_little_disk_fails_before_any_byte_moves(cluster, hub, tmp_path, capsys):
    config, model = _config(tmp_path, MODEL, "L40S")
    gets = len(hub.gets())
    assert _stage(config) == 1
    assert "disk too small" in capsys.readouterr().err
    assert len(hub.gets()) == gets
    assert not _copy(cluster["l40s-small"][1], model).exists()


def test_a_replica_on_an_unstaged_node_refuses_to_start(cluster, tmp_path):
    _, model = _config(tmp_path, MODEL, "H200")
    node_id, root = cluster["l40s-small"]
    with pytest.raises(WeightsNotStagedError) as refused:
        _on_node(node_id, _start_engine, model)
    message = str(refused.value)
    assert "python -m cluster stage" in message
    assert str(_copy(root, model)) in message
