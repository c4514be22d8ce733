"""Live autoscaling: our policy on a real Serve deployment, driven by a load generator.

Two small applications beside the session's, each one token-timing engine (replicas start
in seconds) with the policy's delays cut to seconds through the schema:
- under load the fleet grows past one replica, and shrinks back once the load drops, while
  every request, including those on a draining replica, succeeds;
- a scale-to-zero model drops to zero replicas while idle, then answers a request with a
  bounded hold or 503 + Retry-After, and serves once Serve has started a replica.
Replica counts are Serve's own (`serve.status()`).
"""

from __future__ import annotations

import threading
import time
from collections import Counter

import httpx
import pytest

pytestmark = pytest.mark.e2e

SCALING_APP, SCALING_PREFIX, SCALING_MODEL = "autoscaling", "/autoscaling", "sim-autoscaling"
ZERO_APP, ZERO_PREFIX, ZERO_MODEL = "scale-to-zero", "/scale-to-zero", "sim-scale-to-zero"

# Seconds, not minutes: a simulated replica starts in a few seconds. Serve itself still
# pushes replica metrics every 10 s and averages them over look_back_period_s (> 10 s).
FAST_POLICY = {
    "target_ongoing_requests_per_replica": 2,
    "target_waiting_per_replica": 1,
    "spare_replicas": 0,
    "upscale_cooldown_s": 1,
    "downscale_delay_s": 10,
    "downscale_cooldown_s": 5,
    "signal_period_s": 1,
    "trend_window_s": 5,
    "look_back_period_s": 11,
    "expected_cold_start_s": 5,
}
# Generous bounds for "eventually": two metric pushes and windows, on a shared 2-core box.
SCALE_UP_WITHIN_S = 120
SCALE_DOWN_WITHIN_S = 180
COLD_START_WITHIN_S = 120


def app_args(name: str, autoscaling: dict) -> dict:
    return {
        "models": [
            {
                "name": name,
                # Two requests decode at once per replica, 2 s each: 6 clients saturate one.
                "simulated_engine": {"ttft_s": 0.05, "tokens_per_s": 10.0, "max_running": 2},
                "autoscaling": autoscaling,
            }
        ]
    }


def deploy(name: str, prefix: str, args: dict) -> None:
    from ray import serve

    from deployments.app import build_app

    serve.run(build_app(args), name=name, route_prefix=prefix)


def running_replicas(app: str, model: str) -> int:
    from ray import serve

    deployment = serve.status().applications[app].deployments[f"engine-{model}"]
    return deployment.replica_states.get("RUNNING", 0)


def chat(model: str, max_tokens: int = 20) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": max_tokens}


class LoadGenerator:
    """`clients` threads sending requests back to back; every status is kept."""

    def __init__(self, url: str, model: str, clients: int) -> None:
        self._url, self._model = url, model
        self._stop = threading.Event()
        self.statuses: Counter = Counter()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._client, daemon=True) for _ in range(clients)]
        for thread in self._threads:
            thread.start()

    def _client(self) -> None:
        with httpx.Client(timeout=120) as client:
            while not self._stop.is_set():
                try:
                    status = client.post(
                        f"{self._url}/v1/chat/completions", json=chat(self._model)
                    ).status_code
                except httpx.HTTPError as error:
                    status = type(error).__name__
                with self._lock:
                    self.statuses[status] += 1

    def stop(self) -> Counter:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=150)
        return self.statuses


def wait_for(condition, within_s: float, what: str) -> float:
    started = time.monotonic()
    while time.monotonic() - started < within_s:
        if condition():
            return time.monotonic() - started
        time.sleep(1)
    pytest.fail(f"{what}: not within {within_s} s")


def test_scales_up_under_load_and_down_after_without_failing_a_request(base_url):
    deploy(
        SCALING_APP,
        SCALING_PREFIX,
        app_args(SCALING_MODEL, {"min_replicas": 1, "max_replicas": 3, **FAST_POLICY}),
    )
    url = f"{base_url}{SCALING_PREFIX}"
    try:
        assert running_replicas(SCALING_APP, SCALING_MODEL) == 1
        heavy = LoadGenerator(url, SCALING_MODEL, clients=6)
        try:
            wait_for(
                lambda: running_replicas(SCALING_APP, SCALING_MODEL) >= 2,
                SCALE_UP_WITHIN_S,
                "scale-up under load",
            )
        finally:
            statuses = heavy.stop()
        # One client keeps going through the scale-down: its requests land on replicas
        # Serve is about to drain.
        light = LoadGenerator(url, SCALING_MODEL, clients=1)
        try:
            wait_for(
                lambda: running_replicas(SCALING_APP, SCALING_MODEL) == 1,
                SCALE_DOWN_WITHIN_S,
                "scale-down after the load dropped",
            )
        finally:
            statuses += light.stop()
        assert set(statuses) == {200}, statuses
        assert statuses[200] > 10
    finally:
        from ray import serve

        serve.delete(SCALING_APP)


def test_scaled_to_zero_model_holds_or_503s_then_serves(base_url):
    hold_s = 0.5
    deploy(
        ZERO_APP,
        ZERO_PREFIX,
        app_args(
            ZERO_MODEL,
            {
                "scale_to_zero": True,
                "scale_to_zero_idle_s": 5,
                "max_replicas": 1,
                "cold_request_hold_s": hold_s,
                **FAST_POLICY,
            },
        ),
    )
    url = f"{base_url}{ZERO_PREFIX}/v1/chat/completions"
    try:
        # The policy keeps a new deployment up until it has been idle scale_to_zero_idle_s.
        wait_for(
            lambda: running_replicas(ZERO_APP, ZERO_MODEL) == 0,
            SCALE_DOWN_WITHIN_S,
            "scale to zero while idle",
        )
        started = time.monotonic()
        first = httpx.post(url, json=chat(ZERO_MODEL, 2), timeout=60)
        # Bounded: the hold, plus slack for a loaded machine, never the replica's start.
        assert time.monotonic() - started < hold_s + 15
        assert first.status_code in (200, 503), first.text
        if first.status_code == 503:
            assert int(first.headers["Retry-After"]) >= 1
            assert "starting after scaling to zero" in first.json()["error"]["message"]

        def serves() -> bool:
            reply = httpx.post(url, json=chat(ZERO_MODEL, 2), timeout=60)
            assert reply.status_code in (200, 503), reply.text
            return reply.status_code == 200

        wait_for(serves, COLD_START_WITHIN_S, "a request served after the cold start")
        assert running_replicas(ZERO_APP, ZERO_MODEL) == 1
    finally:
        from ray import serve

        serve.delete(ZERO_APP)
