"""Pure placement: bundles, strategy, the node of each TP group, and the verdict on a placement."""

from __future__ import annotations

import pytest

from cluster.placement import (
    NodeResources,
    PlacementInfeasibleError,
    ReplicaLayout,
    bundles,
    choose_nodes,
    node_accelerator,
    placement_options,
    placement_problems,
)
from cluster.planner import PlanRequest, plan


def node(node_id: str, accelerator: str | None = "H100", free: float = 8, cpus: float = 16):
    return NodeResources(
        node_id=node_id, accelerator=accelerator, gpus_total=8, gpus_free=free, cpus_free=cpus
    )


DEEPSEEK_H100 = ReplicaLayout.from_plan(plan(PlanRequest(model="deepseek-r1", gpu="H100")))
KIMI_H200 = ReplicaLayout.from_plan(plan(PlanRequest(model="kimi-k2.5", gpu="H200")))


def test_planner_layouts_are_the_giant_ones_this_module_is_for():
    assert (DEEPSEEK_H100.tensor_parallel_size, DEEPSEEK_H100.pipeline_parallel_size) == (8, 2)
    assert DEEPSEEK_H100.spans_nodes and DEEPSEEK_H100.accelerator == "H100"
    assert (KIMI_H200.workers, KIMI_H200.spans_nodes) == (8, False)


def test_bundles_are_one_gpu_each_with_the_accelerator_and_the_replica_actor_in_bundle_0():
    result = bundles(DEEPSEEK_H100)
    assert len(result) == 16
    assert all(b["GPU"] == 1 and b["accelerator_type:H100"] > 0 for b in result)
    assert result[0]["CPU"] == 2 and {b["CPU"] for b in result[1:]} == {1}


def test_a_replica_that_fits_one_node_is_strict_pack_and_names_no_node():
    options = placement_options(KIMI_H200)
    assert options.strategy == "STRICT_PACK"
    assert options.bundle_label_selector is None
    assert "placement_group_bundle_label_selector" not in options.serve_options()


def test_a_replica_spanning_nodes_pins_each_tp_group_to_its_stage_node():
    options = placement_options(DEEPSEEK_H100, ("a", "b"))
    selectors = [s["ray.io/node-id"] for s in options.bundle_label_selector]
    assert selectors == ["a"] * 8 + ["b"] * 8
    with pytest.raises(ValueError, match="one node per pipeline stage"):
        placement_options(DEEPSEEK_H100)


def test_half_used_nodes_are_skipped_instead_of_straddling():
    # The layout PACK once placed 8 + 4 + 4: two whole nodes must be chosen, or none.
    nodes = [node("half-1", free=4), node("full-1"), node("half-2", free=4), node("full-2")]
    assert choose_nodes(DEEPSEEK_H100, nodes) == ("full-1", "full-2")
    with pytest.raises(PlacementInfeasibleError) as error:
        choose_nodes(DEEPSEEK_H100, nodes[:3])
    message = str(error.value)
    assert "2 TP groups of 8 H100 GPUs, each inside one node" in message
    assert "half-1: 4/8 GPUs" in message and "full-1: 8/8 GPUs" in message


def test_gpus_of_another_type_are_never_chosen_and_are_named_when_nothing_fits():
    nodes = [node("a100", accelerator="A100"), node("h200", accelerator="H200")]
    with pytest.raises(PlacementInfeasibleError, match="no alive node has H100 GPUs.*A100 x1"):
        choose_nodes(DEEPSEEK_H100, nodes)
    assert choose_nodes(KIMI_H200, nodes) == ("h200",)


def test_a_one_node_replica_takes_the_tightest_node_that_fits():
    qwen_tp4 = ReplicaLayout(
        tensor_parallel_size=4, pipeline_parallel_size=1, accelerator="H200", gpus_per_node=8
    )
    nodes = [node("full", "H200"), node("half", "H200", free=4), node("three", "H200", free=3)]
    assert choose_nodes(qwen_tp4, nodes) == ("half",)
    assert choose_nodes(KIMI_H200, nodes) == ("full",)


def test_small_tp_groups_share_a_node_but_never_straddle():
    tp4_pp4 = ReplicaLayout(
        tensor_parallel_size=4, pipeline_parallel_size=4, accelerator="H100", gpus_per_node=8
    )
    nodes = [node("six", free=6), node("full-1"), node("full-2")]
    assert choose_nodes(tp4_pp4, nodes) == ("full-1", "full-1", "full-2", "full-2")
    nodes = [node("six", free=6), node("full-1"), node("five", free=5)]
    assert choose_nodes(tp4_pp4, nodes) == ("full-1", "full-1", "five", "six")


def test_the_first_stage_needs_room_for_the_replica_actor_too():
    # 8 CPUs hold the 8 workers of a stage but not the replica actor beside them.
    nodes = [node("tight", cpus=8), node("roomy", cpus=9), node("other", cpus=8)]
    assert choose_nodes(DEEPSEEK_H100, nodes)[0] == "roomy"
    with pytest.raises(PlacementInfeasibleError):
        choose_nodes(KIMI_H200.model_copy(update={"accelerator": "H100"}), [node("t", cpus=8)])


def test_placement_problems_name_a_straddling_group_and_a_wrong_gpu_type():
    accelerators = {"a": "H100", "b": "H100", "c": "H100", "x": "A100"}
    straddling = {i: "a" for i in range(8)} | {i: ("b" if i < 12 else "c") for i in range(8, 16)}
    problems = placement_problems(DEEPSEEK_H100, straddling, accelerators)
    assert problems == ["TP group of stage 1 straddles nodes: {'b': 4, 'c': 4}"]
    wrong = {i: ("a" if i < 8 else "x") for i in range(16)}
    assert "wrong type" in placement_problems(DEEPSEEK_H100, wrong, accelerators)[0]
    good = {i: ("a" if i < 8 else "b") for i in range(16)}
    assert placement_problems(DEEPSEEK_H100, good, accelerators) == []


def test_node_accelerator_prefers_ray_label_then_resource():
    assert node_accelerator({"ray.io/accelerator-type": "H200"}, {}) == "H200"
    assert node_accelerator({}, {"GPU": 8, "accelerator_type:H100": 1}) == "H100"
    assert node_accelerator({}, {"CPU": 4}) is None
