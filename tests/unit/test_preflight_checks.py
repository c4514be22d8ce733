"""Preflight's pure half: per node, "weights staged and verified" yes/no from what
`node_statuses` reported, and the disk check that follows from it."""

from __future__ import annotations

import pytest

from cluster.placement import NodeResources, ReplicaLayout
from cluster.preflight import NodeProbe, evaluate
from cluster.staging_ray import NodeResult

LAYOUT = ReplicaLayout(
    tensor_parallel_size=8, pipeline_parallel_size=1, accelerator="H200", gpus_per_node=8
)
NODES = ("node-a" + "0" * 50, "node-b" + "0" * 50)
WEIGHT_BYTES = 600 * 10**9


def _probe(node_id: str, usable_bytes: int) -> NodeProbe:
    return NodeProbe(
        node_id=node_id,
        hostname=node_id[:6],
        nvml_error="no NVML here",
        shm_bytes=8 << 30,
        staging_root="/nvme/staged",
        staging_usable_bytes=usable_bytes,
        fabric_env={},
        rdma_devices=(),
    )


def _rows(staged: dict[str, NodeResult] | None, usable_bytes: int = 10**12) -> dict:
    nodes = [
        NodeResources(node_id=n, accelerator="H200", gpus_total=8, gpus_free=8, cpus_free=16)
        for n in NODES
    ]
    checks = evaluate(
        LAYOUT,
        nodes,
        [_probe(n, usable_bytes) for n in NODES],
        WEIGHT_BYTES,
        staged,
        0.9,
        placement_error=None,
        placement_detail="reserved now",
    )
    return {(c.check, c.node): c for c in checks}


def _result(node_id: str, ok: bool, detail: str) -> NodeResult:
    return NodeResult(node_id=node_id, ok=ok, detail=detail)


def test_each_node_says_yes_or_no_and_no_fails_naming_stage():
    rows = _rows(
        {
            NODES[0]: _result(NODES[0], True, "hf:org/m@abc: 3 files, 600.00 GB"),
            NODES[1]: _result(NODES[1], False, "/nvme/staged/x has no valid STAGED.json"),
        }
    )
    yes = rows[("weights staged and verified", NODES[0][:12])]
    assert yes.status == "PASS" and yes.detail == "yes: hf:org/m@abc: 3 files, 600.00 GB"
    no = rows[("weights staged and verified", NODES[1][:12])]
    assert no.status == "FAIL"
    assert no.detail.startswith("no: /nvme/staged/x has no valid STAGED.json")
    assert "python -m cluster stage" in no.detail


@pytest.mark.parametrize(("usable", "status"), [(10**12, "PASS"), (10**11, "FAIL")])
def test_the_disk_check_counts_only_where_the_copy_is_missing(usable, status):
    rows = _rows(
        {
            NODES[0]: _result(NODES[0], True, "complete"),
            NODES[1]: _result(NODES[1], False, "missing"),
        },
        usable_bytes=usable,
    )
    # A complete copy needs no more room, however full the disk is now.
    assert rows[("disk for weights", NODES[0][:12])].status == "PASS"
    missing = rows[("disk for weights", NODES[1][:12])]
    assert missing.status == status and "600.0 GB of weights (not staged yet)" in missing.detail


def test_weights_used_in_place_are_skipped_not_failed():
    rows = _rows(None)
    for node in NODES:
        check = rows[("weights staged and verified", node[:12])]
        assert check.status == "SKIP" and "used in place" in check.detail
