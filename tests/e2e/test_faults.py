"""Faults: a replica process killed mid-stream. Streams end with an error event within
seconds, Serve replaces the replica, and new requests succeed.

Uses its own small application (the token-timing engine, so a replacement replica is
ready in seconds) beside the session's two-model application.
"""

from __future__ import annotations

import json
import os
import signal
import time

import httpx
import pytest

pytestmark = pytest.mark.e2e

APP, PREFIX, MODEL = "faults", "/faults", "sim-faults"


# Streamed pieces on the ingress's direct channel (the default) or all in Serve messages.
@pytest.fixture(scope="module", params=[True, False], ids=["direct-streams", "ray-streams"])
def faults_url(base_url, request):
    from ray import serve

    from deployments.app import build_app

    args = {
        "models": [
            {
                "name": MODEL,
                # 20 tokens/s: a 200-token stream lasts 10 s, long enough to kill mid-way.
                "simulated_engine": {"ttft_s": 0.01, "tokens_per_s": 20.0},
            }
        ],
        "ingress": {"direct_streams": request.param},
    }
    serve.run(build_app(args), name=APP, route_prefix=PREFIX)
    yield f"{base_url}{PREFIX}"
    serve.delete(APP)


def replica_pid(deployment: str) -> int:
    # Straight from the GCS: the state API would need the dashboard, which tests skip.
    from ray._private.state import actors

    alive = [
        info["Pid"]
        for info in actors().values()
        if info["ActorClassName"] == f"ServeReplica:{APP}:{deployment}" and info["State"] == "ALIVE"
    ]
    assert len(alive) == 1, alive
    return alive[0]


def chat(max_tokens: int, stream: bool) -> dict:
    return {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": max_tokens, "stream": stream}


def wait_until_serving(url: str, timeout_s: float = 90) -> float:
    """Seconds until a request succeeds again."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        try:
            reply = httpx.post(f"{url}/v1/chat/completions", json=chat(2, False), timeout=10)
            if reply.status_code == 200:
                return time.monotonic() - started
        except httpx.HTTPError:
            pass  # the proxy may drop connections while the ingress restarts
        time.sleep(0.25)
    pytest.fail(f"not serving again within {timeout_s} s")


def test_engine_killed_mid_stream_ends_stream_with_error_then_recovers(faults_url):
    with httpx.stream("POST", f"{faults_url}/v1/chat/completions", json=chat(200, True), timeout=30) as response:
        assert response.status_code == 200
        lines = response.iter_lines()
        events = 0
        while events < 3:
            events += next(lines).startswith("data: ")
        killed_at = time.monotonic()
        os.kill(replica_pid(f"engine-{MODEL}"), signal.SIGKILL)
        tail = [line for line in lines if line.startswith("data: ")]
        ended_after = time.monotonic() - killed_at
    assert ended_after < 5, f"the stream took {ended_after:.1f} s to end"
    assert tail[-1] == "data: [DONE]"
    error = json.loads(tail[-2][len("data: ") :])["error"]
    assert error["code"] == 503
    recovery = wait_until_serving(faults_url)
    print(f"engine replica replaced; serving again {recovery:.1f} s after the stream ended")


def test_ingress_killed_is_restarted_and_serves_again(faults_url):
    os.kill(replica_pid("ingress"), signal.SIGKILL)
    recovery = wait_until_serving(faults_url)
    print(f"ingress replica replaced; serving again after {recovery:.1f} s")
    reply = httpx.post(f"{faults_url}/v1/chat/completions", json=chat(3, False), timeout=30)
    assert reply.json()["usage"]["completion_tokens"] == 3
