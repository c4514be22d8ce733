"""The controllers the simulator compares.

* `ServeDriven`: a Serve 2.60 policy callable (ours, or Ray's default
  `replica_queue_length_autoscaling_policy`) run through Serve's own decision path on
  simulated time, so Serve's delays, scale-from-zero path and bounds apply as in production.
* `FixedFleet`: a constant fleet sized for the trace's peak.
* `Oracle`: knows the trace's rates ahead and orders each replica one cold start before
  it is needed; releases it as soon as it is not needed for a cold start ahead.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any, Callable

from autoscaling.capacity import ClusterCapacity
from autoscaling.signals import (
    METRIC_ARRIVALS_PER_S,
    METRIC_KV_CACHE_USAGE,
    METRIC_NUM_RUNNING,
    METRIC_NUM_WAITING,
    METRIC_TTFT_P90_S,
)
from autoscaling.simulator import Observation, ReplicaModel
from autoscaling.traces import RequestClass, Trace


def serve_decision(policy: Callable, ctx, now: float) -> tuple[int, dict[str, Any]]:
    """Serve 2.60's `_apply_autoscaling_config` wrapper plus `apply_bounds`, on time `now`.

    Serve's wrapper reads the wall clock for its delays; its `_apply_delay_logic` takes the
    time as an argument, so the same steps are composed here from Serve's own functions.
    """
    from ray.serve.autoscaling_policy import (
        _apply_delay_logic,
        _apply_scaling_factors,
        _extract_internal_policy_state,
        _get_cold_start_scale_up_replicas,
    )

    config = ctx.config
    replicas = _get_cold_start_scale_up_replicas(ctx)
    state = ctx.policy_state
    if replicas is None:
        internal = _extract_internal_policy_state(ctx.policy_state)
        desired, state = policy(ctx)
        desired = _apply_scaling_factors(desired, ctx.current_num_replicas, config)
        if ctx.current_num_replicas == 0 and desired > 0:
            replicas = desired
        else:
            replicas, internal = _apply_delay_logic(
                max(0, desired), ctx.target_num_replicas, config, internal, _now=now
            )
            state.update(internal)
    replicas = math.ceil(replicas)
    lowest, highest = ctx.capacity_adjusted_min_replicas, ctx.capacity_adjusted_max_replicas
    return max(lowest, min(highest, replicas)), state


class SimCapacityReader:
    """The cluster as the simulator last showed it, in the shape the policy reads from Ray."""

    def __init__(self) -> None:
        self.latest: Observation | None = None

    def read(self, deployment_id: Any, now: float) -> ClusterCapacity:
        assert self.latest is not None
        return ClusterCapacity(
            free_gpus_per_node=self.latest.free_gpus_per_node,
            waiting_replicas=self.latest.waiting_for_gpus,
        )


class ServeDriven:
    """A Serve autoscaling policy fed by the simulator instead of Serve's controller."""

    def __init__(
        self,
        name: str,
        policy: Callable,
        serve_autoscaling_config: dict[str, Any],
        capacity_reader: SimCapacityReader | None = None,
    ) -> None:
        from ray.serve._private.common import DeploymentID
        from ray.serve.config import AutoscalingConfig as ServeAutoscalingConfig

        self.name = name
        self._policy = policy
        # Ray's own validation of the dict a deployment would be given.
        self._config = ServeAutoscalingConfig(**serve_autoscaling_config)
        self._capacity_reader = capacity_reader
        self._deployment_id = DeploymentID(name="engine-sim", app_name="sim")
        self._state: dict[str, Any] = {}

    def target(self, observation: Observation) -> int:
        from ray.serve.config import AutoscalingContext

        if self._capacity_reader is not None:
            self._capacity_reader.latest = observation
        replicas = [f"replica-{i}" for i in range(observation.running_replicas)]
        per_replica = {
            METRIC_NUM_RUNNING: observation.running_per_replica,
            METRIC_NUM_WAITING: observation.waiting_per_replica,
            METRIC_KV_CACHE_USAGE: observation.kv_cache_usage,
            METRIC_ARRIVALS_PER_S: observation.arrivals_per_replica_per_s,
        }
        if observation.ttft_p90_s is not None:
            per_replica[METRIC_TTFT_P90_S] = observation.ttft_p90_s
        ctx = AutoscalingContext(
            deployment_id=self._deployment_id,
            deployment_name=self._deployment_id.name,
            app_name=self._deployment_id.app_name,
            current_num_replicas=observation.running_replicas,
            target_num_replicas=observation.target_replicas,
            running_replicas=replicas,
            total_num_requests=observation.handle_queued
            + (observation.running_per_replica + observation.waiting_per_replica) * len(replicas),
            total_queued_requests=observation.handle_queued,
            aggregated_metrics={
                name: dict.fromkeys(replicas, value) for name, value in per_replica.items()
            },
            raw_metrics={},
            capacity_adjusted_min_replicas=self._config.min_replicas,
            capacity_adjusted_max_replicas=self._config.max_replicas,
            policy_state=dict(self._state),
            last_scale_up_time=observation.last_scale_up_at,
            last_scale_down_time=None,
            current_time=observation.now,
            config=self._config,
        )
        replicas_wanted, self._state = serve_decision(self._policy, ctx, observation.now)
        return replicas_wanted


class FixedFleet:
    def __init__(self, replicas: int) -> None:
        self.name = f"fixed fleet for the peak ({replicas})"
        self.replicas = replicas

    def target(self, observation: Observation) -> int:
        return self.replicas


def replicas_needed(
    rates: tuple[float, ...],
    classes: tuple[RequestClass, ...],
    replica: ReplicaModel,
    utilization: float,
) -> int:
    """Replicas whose GPU time, batch slots and KV cache these rates use to `utilization`.

    GPU time: a request costs its prefill plus its share of the decode steps it is batched in.
    """
    batch = utilization * replica.max_num_seqs
    step_s = replica.step_s(batch)
    gpu_time = slots = kv = 0.0
    for rate, c in zip(rates, classes):
        prefill_s = c.prompt_tokens / replica.prefill_tokens_per_s
        gpu_time += rate * (prefill_s + c.output_tokens * step_s / batch)
        in_flight = rate * (prefill_s + c.output_tokens * step_s)
        slots += in_flight / replica.max_num_seqs
        kv += in_flight * (c.prompt_tokens + c.output_tokens) / replica.kv_cache_tokens
    return max(1, math.ceil(max(gpu_time, slots, kv) / utilization - 1e-9))


class Oracle:
    """Knows the trace: the fleet needed at each moment, ordered one cold start ahead."""

    def __init__(
        self, trace: Trace, replica: ReplicaModel, utilization: float, decision_period_s: float
    ) -> None:
        self.name = f"oracle (utilization {utilization:g})"
        self.utilization = utilization
        self._tick_s = trace.tick_s
        need = [replicas_needed(r, trace.classes, replica, utilization) for r in trace.rates]
        self.peak = max(need)
        lead = math.ceil((replica.cold_start_s + decision_period_s) / trace.tick_s)
        # plan[t] = max(need[t .. t + lead]), a sliding-window maximum from the end.
        self._plan = [0] * len(need)
        window: deque[int] = deque()
        for t in range(len(need) - 1, -1, -1):
            while window and need[window[-1]] <= need[t]:
                window.pop()
            window.append(t)
            while window[0] > t + lead:
                window.popleft()
            self._plan[t] = need[window[0]]

    def initial_replicas(self) -> int:
        return self._plan[0]

    def target(self, observation: Observation) -> int:
        return self._plan[min(len(self._plan) - 1, int(observation.now / self._tick_s))]
