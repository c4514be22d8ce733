"""A node holding part of an engine replica's placement group is lost mid-stream, then returns.

Fake multi-node Ray cluster (raylets on this machine, logical GPUs): a head without GPUs (Serve's
controller, the one proxy, the ingresses), one 2-GPU H100 node and two 1-GPU L40S nodes. The
models are the token-timing engine (`simulated_engine:`; vLLM refuses its Ray executor on CPU),
which holds each GPU bundle of its replica's group with a placeholder worker, as vLLM's Ray
executor holds it with a worker (`deployments.simulated_workers`).

* TP2 on the H100 node: a STRICT_PACK group, the replica actor and both workers on that node.
  Losing it ends the stream with an error event, requests meanwhile get a clean OpenAI error
  within the model's timeout, and a node with the same resources gets the replica placed
  again and serving, with nothing redeployed.
* TP1 x PP2 on the L40S nodes: losing the stage-1 node kills only a worker; the replica actor
  lives on, so the placeholders are what fail its stream, its requests and its health check.
  Its group is pinned to the nodes chosen at deploy time, so it serves again after a
  redeploy, not by itself.
"""

from __future__ import annotations

import json
import time

import httpx
import pytest

from cluster.local_ray import LOOPBACK_ENV, free_loopback_port

TIMEOUT_S = 10.0
# A broken stream must end well before the model's timeout could end it.
STREAM_END_S = 5.0
# Slack over a bound on the loaded 2-core machine: scheduling and Ray's notices lag.
SLACK_S = 3.0
# deployments.app has Serve check an engine replica every 10 s (jittered by 10 %); Serve replaces
# a replica whose actor died at the next check, one whose check raises after 3 in a row.
NEXT_HEALTH_CHECK_S = 10 * 1.1
THIRD_HEALTH_CHECK_S = 3 * NEXT_HEALTH_CHECK_S


def gpu_node(accelerator: str, gpus: int) -> dict:
    return {
        "num_cpus": gpus + 1,  # a CPU per worker, one more for the replica actor
        "num_gpus": gpus,
        "resources": {f"accelerator_type:{accelerator}": 1},
        "node_ip_address": "127.0.0.1",
    }


H100_NODE, L40S_NODE = gpu_node("H100", 2), gpu_node("L40S", 1)
HEAD_LABELS = {"giantserve.io/pool": "ray-head"}


def app_args(model: str, tp: int, pp: int, accelerator: str, gpus_per_node: int) -> dict:
    return {
        "models": [
            {
                "name": model,
                # 20 tokens/s: a 600-token stream would last 30 s, past the timeout: only
                # the timeout or the node's loss can end it.
                "simulated_engine": {"ttft_s": 0.01, "tokens_per_s": 20.0},
                "parallelism": {"tensor_parallel_size": tp, "pipeline_parallel_size": pp},
                "placement": {"accelerator": accelerator, "gpus_per_node": gpus_per_node},
                "limits": {"request_timeout_s": TIMEOUT_S},
            }
        ],
        # On the head, as on a real cluster: a lost GPU node must not take the ingress along.
        "ingress": {"node_labels": HEAD_LABELS},
    }


@pytest.fixture(scope="module")
def cluster():
    """(the fake cluster, its GPU nodes by name, Serve's base URL)."""
    with pytest.MonkeyPatch.context() as env:
        # Before Ray starts: its processes inherit the environment.
        for key, value in {**LOOPBACK_ENV, "RAY_AUTH_MODE": "disabled"}.items():
            env.setenv(key, value)
        import ray
        from ray import serve
        from ray.cluster_utils import Cluster

        fake = Cluster(
            initialize_head=True,
            head_node_args={"num_cpus": 4, "num_gpus": 0, "node_ip_address": "127.0.0.1",
                            "include_dashboard": False, "labels": HEAD_LABELS},  # fmt: skip
        )
        try:
            nodes = {
                "h100": fake.add_node(**H100_NODE),
                "l40s-a": fake.add_node(**L40S_NODE),
                "l40s-b": fake.add_node(**L40S_NODE),
            }
            ray.init(address=fake.address, _node_ip_address="127.0.0.1")
            fake.wait_for_nodes()
            port = free_loopback_port()
            # One proxy: every fake node shares 127.0.0.1, so per-node proxies would clash.
            serve.start(proxy_location="HeadOnly", http_options={"host": "127.0.0.1", "port": port})
            yield fake, nodes, f"http://127.0.0.1:{port}"
        finally:
            serve.shutdown()
            ray.shutdown()
            fake.shutdown()


def deploy(args: dict, app: str, base_url: str) -> str:
    from ray import serve

    from deployments.app import build_app

    serve.run(build_app(args), name=app, route_prefix=f"/{app}")
    url = f"{base_url}/{app}"
    wait_until_serving(url, args["models"][0]["name"], timeout_s=60)
    return url


def chat(model: str, max_tokens: int, stream: bool = False) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": max_tokens, "stream": stream}  # fmt: skip


def wait_until_serving(url: str, model: str, timeout_s: float) -> float:
    """Seconds until a request succeeds."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        try:
            reply = httpx.post(
                f"{url}/v1/chat/completions", json=chat(model, 2), timeout=TIMEOUT_S + 5
            )
            if reply.status_code == 200:
                return time.monotonic() - started
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    pytest.fail(f"not serving within {timeout_s} s")


def stream_broken_by(remove_node, url: str, model: str) -> float:
    """Seconds from `remove_node()` to the end of a stream it broke, which ends with an error."""
    body = chat(model, 600, stream=True)
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=60) as response:
        assert response.status_code == 200
        lines = response.iter_lines()
        events = 0
        while events < 3:
            events += next(lines).startswith("data: ")
        lost_at = time.monotonic()
        remove_node()
        tail = [line for line in lines if line.startswith("data: ")]
        ended_after = time.monotonic() - lost_at
    assert ended_after < STREAM_END_S, f"the stream took {ended_after:.1f} s to end"
    assert tail[-1] == "data: [DONE]"
    assert json.loads(tail[-2][len("data: ") :])["error"]["code"] == 503, tail[-2:]
    return ended_after


def clean_error(url: str, model: str) -> int:
    """A request while the replica cannot serve: an OpenAI error within the model's timeout."""
    started = time.monotonic()
    reply = httpx.post(f"{url}/v1/chat/completions", json=chat(model, 2), timeout=TIMEOUT_S + 30)
    took = time.monotonic() - started
    assert took < TIMEOUT_S + SLACK_S, f"answered after {took:.1f} s"
    assert reply.status_code in (503, 504), reply.text
    assert reply.json()["error"]["code"] == reply.status_code
    return reply.status_code


def replica_states(app: str, model: str) -> dict[str, int]:
    from ray import serve

    return serve.status().applications[app].deployments[f"engine-{model}"].replica_states


def errors_until_replaced(
    url: str, app: str, model: str, within_s: float
) -> tuple[list[int], float]:
    """Statuses of requests sent until Serve has given up the replica and waits to place
    another (no replica running, one starting: its group pending), and when it was seen."""
    # A request in flight holds the next look at Serve back by up to the timeout.
    deadline = time.monotonic() + within_s + TIMEOUT_S
    statuses = [clean_error(url, model)]
    while replica_states(app, model) != {"STARTING": 1}:
        assert time.monotonic() < deadline, f"not replaced: {replica_states(app, model)}"
        time.sleep(0.5)  # errors may come at once: a few clients, not a flood
        statuses.append(clean_error(url, model))
    replaced_at = time.monotonic()
    statuses.append(clean_error(url, model))  # and none serves, with nowhere to place it
    return statuses, replaced_at


def test_lost_node_fails_cleanly_and_the_replica_is_placed_again_when_capacity_returns(cluster):
    fake, nodes, base_url = cluster
    app, model = "one-node", "sim-tp2"
    url = deploy(app_args(model, tp=2, pp=1, accelerator="H100", gpus_per_node=2), app, base_url)

    lost_at = time.monotonic()
    ended_after = stream_broken_by(lambda: fake.remove_node(nodes["h100"]), url, model)
    # The replica actor died with the node: Serve sees it at its next health check.
    statuses, replaced_at = errors_until_replaced(
        url, app, model, within_s=NEXT_HEALTH_CHECK_S + SLACK_S
    )

    returned_at = time.monotonic()
    nodes["h100"] = fake.add_node(**H100_NODE)
    recovery = wait_until_serving(url, model, timeout_s=60)
    print(
        f"\nTP2 node lost: stream ended after {ended_after:.1f} s; replica replaced after "
        f"{replaced_at - lost_at:.1f} s, {len(statuses)} requests meanwhile answered "
        f"{sorted(set(statuses))}; serving again {recovery:.1f} s after the "
        f"node came back ({returned_at - lost_at + recovery:.1f} s after the loss)"
    )
    reply = httpx.post(f"{url}/v1/chat/completions", json=chat(model, 3), timeout=30)
    assert reply.json()["usage"]["completion_tokens"] == 3


def test_lost_stage_node_fails_the_replica_through_its_workers(cluster):
    from ray._private.state import actors

    fake, nodes, base_url = cluster
    app, model = "two-node", "sim-pp2"
    args = app_args(model, tp=1, pp=2, accelerator="L40S", gpus_per_node=1)
    url = deploy(args, app, base_url)
    (replica_node,) = [
        info["Address"]["NodeID"]
        for info in actors().values()
        if info["ActorClassName"] == f"ServeReplica:{app}:engine-{model}"
        and info["State"] == "ALIVE"
    ]
    (stage_1,) = [name for name in ("l40s-a", "l40s-b") if nodes[name].node_id != replica_node]
    ingress_nodes = {
        info["Address"]["NodeID"]
        for info in actors().values()
        if info["ActorClassName"] == f"ServeReplica:{app}:ingress" and info["State"] == "ALIVE"
    }
    assert ingress_nodes == {fake.head_node.node_id}, "ingress.node_labels keeps it on the head"

    lost_at = time.monotonic()
    ended_after = stream_broken_by(lambda: fake.remove_node(nodes[stage_1]), url, model)
    assert replica_states(app, model) == {"RUNNING": 1}, "the replica actor should live on"
    # The replica answers at once that its worker is gone, until its health check fails.
    assert clean_error(url, model) == 503
    statuses, replaced_at = errors_until_replaced(
        url, app, model, within_s=THIRD_HEALTH_CHECK_S + SLACK_S
    )

    nodes[stage_1] = fake.add_node(**L40S_NODE)
    redeployed_at = time.monotonic()
    deploy(args, app, base_url)  # chooses live nodes again
    print(
        f"\nPP2 stage node lost: stream ended after {ended_after:.1f} s; replica replaced after "
        f"{replaced_at - lost_at:.1f} s, {len(statuses)} requests meanwhile answered "
        f"{sorted(set(statuses))}; serving {time.monotonic() - redeployed_at:.1f} s after "
        "a redeploy"
    )
