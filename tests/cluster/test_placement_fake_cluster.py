"""Every giant layout's placement group, reserved for real on a fake multi-node cluster.

Nodes (raylets on this machine, logical GPUs): the head holds 8 A100 (GPUs of another type);
one whole 8-GPU H200 node; two whole 8-GPU H100 nodes and one with 4 of its GPUs already taken. The layouts come from the planner. For each, the bundle-to-node mapping
Ray returns must keep every TP group inside one node, put the stages of a two-node replica on
distinct nodes, and use no GPU of another type; a layout that cannot fit is refused within
seconds with the reason.
"""

from __future__ import annotations

import os
import time

import pytest

from cluster.local_ray import LOOPBACK_ENV
from cluster.placement import PlacementInfeasibleError, ReplicaLayout
from cluster.placement_ray import cluster_nodes, reserved
from cluster.planner import PlanRequest, plan
from deployments.config import ModelConfig

_NODES = {
    "h200-whole": ("H200", 0),
    "h100-a": ("H100", 0),
    "h100-b": ("H100", 0),
    "h100-half": ("H100", 4),
}


def _gpu_node_args(accelerator: str) -> dict:
    return {
        "num_cpus": 16,
        "num_gpus": 8,
        "resources": {f"accelerator_type:{accelerator}": 1},
        "labels": {"ray.io/accelerator-type": accelerator},
        "node_ip_address": "127.0.0.1",
    }


@pytest.fixture(scope="module")
def fake_cluster():
    """name -> node id, with the 'half' nodes' GPUs partly held by another group."""
    # Before Ray is imported: it reads some of these at import time.
    saved = {k: os.environ.get(k) for k in [*LOOPBACK_ENV, "RAY_AUTH_MODE"]}
    os.environ.update(LOOPBACK_ENV)
    os.environ["RAY_AUTH_MODE"] = "disabled"
    import ray
    from ray.cluster_utils import Cluster
    from ray.util.placement_group import placement_group

    fake = Cluster(
        initialize_head=True,
        head_node_args={**_gpu_node_args("A100"), "include_dashboard": False},
    )
    try:
        ids = {"a100-head": fake.head_node.node_id}
        for name, (accelerator, _) in _NODES.items():
            ids[name] = fake.add_node(**_gpu_node_args(accelerator)).node_id
        ray.init(address=fake.address, _node_ip_address="127.0.0.1")
        fake.wait_for_nodes()
        for name, (_, taken) in _NODES.items():
            if taken:
                busy = placement_group(
                    [{"GPU": 1}] * taken,
                    strategy="STRICT_PACK",
                    bundle_label_selector=[{"ray.io/node-id": ids[name]}] * taken,
                )
                assert busy.wait(30), f"could not take {taken} GPUs of {name}"
        yield ids
    finally:
        ray.shutdown()
        fake.shutdown()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(autouse=True)
def gpus_given_back(fake_cluster):
    """Each test starts from the same free GPUs: removing a group frees them asynchronously."""
    yield
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        free = {n.node_id: n.gpus_free for n in cluster_nodes()}
        if all(free[fake_cluster[name]] == 8 - taken for name, (_, taken) in _NODES.items()):
            return
        time.sleep(0.2)
    raise AssertionError(f"GPUs not given back: {free}")


GIANT_LAYOUTS = {
    "kimi-k2.5 TP8 H200": PlanRequest(model="kimi-k2.5", gpu="H200"),
    "deepseek-r1 TP8xPP2 H100": PlanRequest(model="deepseek-r1", gpu="H100"),
    "mistral-large-3 TP8 H200": PlanRequest(model="mistral-large-3", gpu="H200"),
    "qwen3-235b TP8 H200": PlanRequest(model="qwen3-235b-a22b", gpu="H200"),
    "qwen3-235b TP4 H200": PlanRequest(
        model="qwen3-235b-a22b", gpu="H200", concurrency=4, context=8192
    ),
    "llama-3.3-70b TP4 H200": PlanRequest(model="llama-3.3-70b-instruct", gpu="H200"),
    "llama-3.3-70b TP2 H200": PlanRequest(
        model="llama-3.3-70b-instruct", gpu="H200", concurrency=1, context=4096
    ),
}


@pytest.mark.parametrize("case", list(GIANT_LAYOUTS))
def test_every_giant_layout_reserves_with_tp_groups_inside_one_node(fake_cluster, case):
    layout = ReplicaLayout.from_plan(plan(GIANT_LAYOUTS[case]))
    expected = case.split()[1]
    assert expected == (
        f"TP{layout.tensor_parallel_size}"
        + (f"xPP{layout.pipeline_parallel_size}" if layout.pipeline_parallel_size > 1 else "")
    ), "the planner changed its layout; update the case name"
    accelerator_of = {name: spec[0] for name, spec in _NODES.items()} | {"a100-head": "A100"}
    name_of = {node_id: name for name, node_id in fake_cluster.items()}

    with reserved(layout) as reservation:
        placed = {i: name_of[node] for i, node in reservation.bundle_nodes.items()}

    tp = layout.tensor_parallel_size
    assert len(placed) == layout.workers
    stage_nodes = []
    for stage in range(layout.pipeline_parallel_size):
        group = {placed[i] for i in range(stage * tp, (stage + 1) * tp)}
        assert len(group) == 1, f"TP group of stage {stage} straddles {group}"
        stage_nodes.append(group.pop())
    assert len(set(stage_nodes)) == layout.pipeline_parallel_size, "PP stages share a node"
    assert {accelerator_of[n] for n in placed.values()} == {layout.accelerator}
    if layout.spans_nodes:
        # The half-used H100 node could hold half a TP group: it must never be used.
        assert set(stage_nodes) == {"h100-a", "h100-b"}
    if layout.workers == 8 and layout.accelerator == "H200":
        assert stage_nodes == ["h200-whole"]


def test_the_wiring_into_serve_pins_each_tp_group_of_a_two_node_replica(fake_cluster):
    """What build_app hands Serve (and Serve hands Ray) places each TP group on its node."""
    from ray.util.placement_group import (
        placement_group,
        placement_group_table,
        remove_placement_group,
    )

    from deployments.app import _live_stage_nodes, engine_deployment_options

    model = ModelConfig.model_validate(
        {
            "name": "deepseek-r1",
            "weights": {"hf_repo": "deepseek-ai/DeepSeek-R1"},
            "parallelism": {"tensor_parallel_size": 8, "pipeline_parallel_size": 2},
            "placement": {"accelerator": "H100", "gpus_per_node": 8},
        }
    )
    options = engine_deployment_options(model, _live_stage_nodes(model))
    group = placement_group(
        options["placement_group_bundles"],
        strategy=options["placement_group_strategy"],
        bundle_label_selector=options["placement_group_bundle_label_selector"],
    )
    try:
        assert group.wait(10)
        nodes = placement_group_table(group)["bundles_to_node_id"]
    finally:
        remove_placement_group(group)
    name_of = {node_id: name for name, node_id in fake_cluster.items()}
    first = {name_of[nodes[i]] for i in range(8)}
    second = {name_of[nodes[i]] for i in range(8, 16)}
    assert len(first) == len(second) == 1 and first | second == {"h100-a", "h100-b"}

    with pytest.raises(ValueError, match="up to 2 replicas"):
        _live_stage_nodes(model.model_copy(update={"num_replicas": 2}))


def test_a_layout_that_cannot_fit_is_refused_within_seconds_with_the_reason(fake_cluster):
    from ray.util.placement_group import placement_group, remove_placement_group

    # Take a whole H100 node: one whole node and one half node are left, 12 GPUs for 16.
    hog = placement_group(
        [{"GPU": 1}] * 8,
        strategy="STRICT_PACK",
        bundle_label_selector=[{"ray.io/node-id": fake_cluster["h100-b"]}] * 8,
    )
    try:
        assert hog.wait(30)
        layout = ReplicaLayout.from_plan(plan(GIANT_LAYOUTS["deepseek-r1 TP8xPP2 H100"]))
        started = time.monotonic()
        with pytest.raises(PlacementInfeasibleError) as error:
            with reserved(layout):
                pass
        assert time.monotonic() - started < 5
    finally:
        remove_placement_group(hog)
    message = str(error.value)
    assert "2 TP groups of 8 H100 GPUs, each inside one node" in message
    assert f"{fake_cluster['h100-half'][:12]}: 4/8 GPUs" in message
    assert "A100 x1" in message  # free GPUs of another type, named and not used


def test_the_cluster_snapshot_reads_types_and_free_gpus(fake_cluster):
    nodes = {n.node_id: n for n in cluster_nodes()}
    assert nodes[fake_cluster["h100-half"]].gpus_free == 4
    assert nodes[fake_cluster["h200-whole"]].gpus_free == 8
    assert nodes[fake_cluster["a100-head"]].accelerator == "A100"
