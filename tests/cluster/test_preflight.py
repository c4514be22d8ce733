"""`python -m cluster preflight` on a fake multi-node cluster.

Nodes (raylets on this machine): a CPU-only head; a whole 8-GPU H200 node whose staging disk is
declared 700 GB; an H200 node with 4 GPUs already taken and 600 GB of staging disk. No NVML
here, which preflight must say once and carry on. Both nodes hold a (tiny, fake but complete)
staged copy of Kimi K2.5. Kimi K2.5 (595 GB, TP8) passes; DeepSeek-R1 as TP8 x PP2 on H200
(673 GB) fails: no second whole H200 node, too little disk on the half-used one, not staged.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from cluster.local_ray import LOOPBACK_ENV
from cluster.staging import CAPACITY_ENV, STAGING_DIR_ENV, FileEntry, Manifest, write_marker
from deployments.config import WeightsSource

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def fake_cluster(tmp_path_factory):
    # Before Ray is imported: it reads some of these at import time.
    saved = {k: os.environ.get(k) for k in [*LOOPBACK_ENV, "RAY_AUTH_MODE"]}
    os.environ.update(LOOPBACK_ENV)
    os.environ["RAY_AUTH_MODE"] = "disabled"
    import ray
    from ray.cluster_utils import Cluster
    from ray.util.placement_group import placement_group

    roots = tmp_path_factory.mktemp("staging")
    fake = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "node_ip_address": "127.0.0.1", "include_dashboard": False},
    )
    try:
        ids = {}
        for name, capacity in [("h200-whole", 700e9), ("h200-half", 600e9)]:
            _fake_staged_copy(roots / name, WeightsSource(hf_repo="moonshotai/Kimi-K2.5"))
            ids[name] = fake.add_node(
                num_cpus=16,
                num_gpus=8,
                resources={"accelerator_type:H200": 1},
                node_ip_address="127.0.0.1",
                env_vars={STAGING_DIR_ENV: str(roots / name), CAPACITY_ENV: str(int(capacity))},
            ).node_id
        ray.init(address=fake.address, _node_ip_address="127.0.0.1")
        fake.wait_for_nodes()
        busy = placement_group(
            [{"GPU": 1}] * 4,
            strategy="STRICT_PACK",
            bundle_label_selector=[{"ray.io/node-id": ids["h200-half"]}] * 4,
        )
        assert busy.wait(30)
        yield fake.address, ids, roots
    finally:
        ray.shutdown()
        fake.shutdown()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _fake_staged_copy(root: Path, weights: WeightsSource) -> None:
    """What `stage` leaves on a node (files at their sizes, then the marker), at a tiny size."""
    directory = root / weights.staged_directory().name
    directory.mkdir(parents=True)
    (directory / "model.safetensors").write_bytes(b"\0" * 10)
    entry = FileEntry(path="model.safetensors", size=10)
    write_marker(directory, Manifest(source=f"hf:{weights.hf_repo}@fake", files=(entry,)))


def _wait_until_gpus_free(node_id: str, timeout_s: float = 30) -> None:
    # Ray's view of free resources lags a group's removal (the previous test's reservation).
    from cluster.placement_ray import cluster_nodes

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if any(n.node_id == node_id and n.gpus_free == n.gpus_total for n in cluster_nodes()):
            return
        time.sleep(0.2)
    raise AssertionError(f"{node_id[:12]}: GPUs still held after {timeout_s} s")


def _config(
    tmp_path: Path,
    name: str,
    catalog_id: str,
    hf_repo: str,
    tp: int,
    pp: int,
    revision: str | None = None,
) -> Path:
    model = {
        "name": name,
        "catalog_id": catalog_id,
        "weights": {"hf_repo": hf_repo, "revision": revision},
        "parallelism": {"tensor_parallel_size": tp, "pipeline_parallel_size": pp},
        "placement": {"accelerator": "H200", "gpus_per_node": 8},
    }
    path = tmp_path / f"{name}.yaml"
    app = {"name": "llm", "args": {"models": [model]}}
    path.write_text(yaml.safe_dump({"applications": [app]}))
    return path


def _rows(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.split()[:1] != []]


def test_kimi_passes_and_nvml_absence_is_said_once(fake_cluster, tmp_path, capsys):
    from cluster.__main__ import main

    address, ids, _ = fake_cluster
    config = _config(tmp_path, "kimi-k2.5", "kimi-k2.5", "moonshotai/Kimi-K2.5", tp=8, pp=1)
    assert main(["preflight", str(config), "--address", address]) == 0
    output = capsys.readouterr().out
    rows = _rows(output)
    placement = next(r for r in rows if r.startswith("placement group"))
    assert " PASS " in placement and f"8 GPUs on {ids['h200-whole'][:12]}" in placement
    nvml = [r for r in rows if r.startswith("GPU free memory (NVML)")]
    assert len(nvml) == 1 and " SKIP " in nvml[0] and "NVML not available" in nvml[0]
    staged = [r for r in rows if r.startswith("weights staged and verified")]
    assert len(staged) == 2
    assert all(" PASS " in r and " yes: hf:moonshotai/Kimi-K2.5@fake" in r for r in staged)
    disks = [r for r in rows if r.startswith("disk for weights")]
    assert len(disks) == 2 and all(" PASS " in r and "the staged copy is there" in r for r in disks)
    assert sum(r.startswith("/dev/shm") and " PASS " in r for r in rows) == 2
    assert output.rstrip().endswith("preflight: passed")


def test_a_node_without_a_staged_copy_says_no_and_fails(fake_cluster, tmp_path, capsys):
    from cluster.__main__ import main

    address, ids, roots = fake_cluster
    _wait_until_gpus_free(ids["h200-whole"])
    weights = WeightsSource(hf_repo="moonshotai/Kimi-K2.5", revision="v2")
    _fake_staged_copy(roots / "h200-whole", weights)
    # On the other node staging stopped half-way: a partial file, no marker.
    unfinished = roots / "h200-half" / weights.staged_directory().name
    unfinished.mkdir()
    (unfinished / "model.safetensors.incomplete").write_bytes(b"\0" * 5)
    config = _config(tmp_path, "kimi", "kimi-k2.5", "moonshotai/Kimi-K2.5", 8, 1, revision="v2")
    assert main(["preflight", str(config), "--address", address]) == 1
    output = capsys.readouterr().out
    rows = _rows(output)
    staged = {r.split()[4]: r for r in rows if r.startswith("weights staged and verified")}
    whole = staged[ids["h200-whole"][:12]]
    assert " PASS " in whole and " yes: " in whole
    half = staged[ids["h200-half"][:12]]
    assert " FAIL " in half and f" no: {unfinished} has no valid STAGED.json" in half
    assert "python -m cluster stage" in half
    # Not staged there yet: the disk must still hold what `stage` would fetch.
    disks = {r.split()[3]: r for r in rows if r.startswith("disk for weights")}
    half_disk = disks[ids["h200-half"][:12]]
    assert " PASS " in half_disk and ">= 595.1 GB of weights (not staged yet)" in half_disk
    assert [r.split()[:1] for r in rows if " FAIL " in r] == [["weights"]], output
    assert output.rstrip().endswith("preflight: FAILED")


def test_a_two_node_layout_without_two_whole_nodes_fails_fast_with_reasons(
    fake_cluster, tmp_path
):
    address, ids, _ = fake_cluster
    config = _config(tmp_path, "deepseek-r1", "deepseek-r1", "deepseek-ai/DeepSeek-R1", 8, 2)
    env = {**os.environ, "RAY_ADDRESS": ""}
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "cluster", "preflight", str(config), "--address", address,
         "--reserve-timeout", "5"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=240,
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 1, result.stdout + result.stderr
    rows = _rows(result.stdout)
    placement = next(r for r in rows if r.startswith("placement group"))
    assert " FAIL " in placement
    assert "2 TP groups of 8 H200 GPUs, each inside one node" in placement
    assert f"{ids['h200-half'][:12]}: 4/8 GPUs" in placement
    disks = {r.split()[3]: r for r in rows if r.startswith("disk for weights")}
    half_disk = disks[ids["h200-half"][:12]]
    assert " FAIL " in half_disk and "< 673.2 GB of weights" in half_disk
    whole_disk = disks[ids["h200-whole"][:12]]
    assert " PASS " in whole_disk
    staged = [r for r in rows if r.startswith("weights staged and verified")]
    assert len(staged) == 2 and all(" FAIL " in r and " no: " in r for r in staged)
    fabric = [r for r in rows if r.startswith("fabric / NCCL")]
    assert fabric and all(" WARN " in r and "fall back to TCP" in r for r in fabric)
    assert result.stdout.rstrip().endswith("preflight: FAILED")
    # Interpreter and Ray connection included; the check itself must not hang.
    assert elapsed < 120


@pytest.mark.parametrize(
    ("config", "exit_code", "expected"),
    [
        ("kimi.yaml", 0, "placement group"),
        # This cluster has no H100 node: said by name, not left to a pending group.
        ("deepseek-r1-h100.yaml", 1, "needs 2 node(s) with >= 8 GPUs; 0 H100 nodes"),
    ],
)
def test_the_shipped_configs(fake_cluster, capsys, config, exit_code, expected):
    from cluster.__main__ import main

    address, _, _ = fake_cluster
    assert main(["preflight", str(REPO / "configs" / config), "--address", address]) == exit_code
    assert expected in capsys.readouterr().out
