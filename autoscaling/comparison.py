"""The experiment: every policy on one trace, with the baselines tuned the same way each time.

* Ray's default policy gets the `target_ongoing_requests` an operator would pick: the
  largest (cheapest) value of a grid that meets the TTFT target on the steady trace.
* The oracle gets the highest utilization of a grid that still meets the target on the
  trace it knows: the cheapest fleet that perfect foresight buys.
* The fixed fleet is the oracle's peak, all day.
* Ours runs with `AutoscalingConfig` defaults; only facts of the deployment are set
  (GPUs per replica, the SLO, max_replicas, the cold start of the replica model).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from autoscaling.config import AutoscalingConfig
from autoscaling.policy import LLMAutoscalingPolicy
from autoscaling.sim_policies import FixedFleet, Oracle, ServeDriven, SimCapacityReader
from autoscaling.simulator import Cluster, Controller, ReplicaModel, SimResult, simulate
from autoscaling.traces import Trace

SLO_GOAL = 0.99
GPU_HOURS_GOAL = 1.3  # x the oracle's
RAY_TARGET_GRID = (16.0, 24.0, 32.0, 40.0, 48.0, 56.0, 64.0)
ORACLE_UTILIZATION_GRID = (1.0, 0.95, 0.9, 0.85, 0.8, 0.75, 0.7)
DECISION_PERIOD_S = 5.0


class Setup(BaseModel):
    """What every run shares."""

    model_config = ConfigDict(frozen=True)

    replica: ReplicaModel = ReplicaModel()
    cluster: Cluster = Cluster()
    ttft_target_s: float = 2.0
    max_replicas: int = 32

    def ours_config(self, **knobs) -> AutoscalingConfig:
        """Defaults, plus the deployment's facts (and any knob a sensitivity run changes)."""
        return AutoscalingConfig(
            max_replicas=self.max_replicas,
            gpus_per_replica=self.replica.gpus,
            ttft_target_s=self.ttft_target_s,
            expected_cold_start_s=round(self.replica.cold_start_s),
            **knobs,
        )

    def run(self, trace: Trace, controller: Controller, initial_replicas: int) -> SimResult:
        return simulate(
            trace,
            controller,
            initial_replicas=initial_replicas,
            ttft_target_s=self.ttft_target_s,
            replica=self.replica,
            cluster=self.cluster,
            decision_period_s=DECISION_PERIOD_S,
        )


class GoalCheck(BaseModel):
    model_config = ConfigDict(frozen=True)

    slo_met: bool
    gpu_hours_ratio: float
    cost_met: bool
    better_than_ray_on_slo: bool
    better_than_ray_on_gpu_hours: bool

    @property
    def met(self) -> bool:
        return (
            self.slo_met
            and self.cost_met
            and self.better_than_ray_on_slo
            and self.better_than_ray_on_gpu_hours
        )


class TraceComparison(BaseModel):
    model_config = ConfigDict(frozen=True)

    trace: str
    description: str
    oracle_utilization: float
    ray_target_ongoing_requests: float
    ours: SimResult
    ray: SimResult
    fixed: SimResult
    oracle: SimResult

    @property
    def results(self) -> tuple[SimResult, ...]:
        return (self.ours, self.ray, self.fixed, self.oracle)

    def goal(self) -> GoalCheck:
        ratio = self.ours.gpu_hours / self.oracle.gpu_hours
        return GoalCheck(
            slo_met=self.ours.slo_met_share >= SLO_GOAL,
            gpu_hours_ratio=ratio,
            cost_met=ratio <= GPU_HOURS_GOAL,
            better_than_ray_on_slo=self.ours.slo_met_share > self.ray.slo_met_share,
            better_than_ray_on_gpu_hours=self.ours.gpu_hours < self.ray.gpu_hours,
        )


def ray_default(target_ongoing_requests: float, setup: Setup) -> ServeDriven:
    return ServeDriven(
        f"Ray default (target_ongoing_requests={target_ongoing_requests:g})",
        _ray_default_policy(),
        # Ray's own defaults for everything else: upscale_delay_s 30, downscale_delay_s 600.
        {
            "min_replicas": 1,
            "max_replicas": setup.max_replicas,
            "target_ongoing_requests": target_ongoing_requests,
        },
    )


def ours(setup: Setup, **knobs) -> ServeDriven:
    config = setup.ours_config(**knobs)
    reader = SimCapacityReader()
    return ServeDriven(
        "ours (LLMAutoscalingPolicy)",
        LLMAutoscalingPolicy(capacity_reader=reader, **config.model_dump()),
        config.to_serve_autoscaling_config(),
        reader,
    )


def cheapest_oracle(trace: Trace, setup: Setup) -> tuple[Oracle, SimResult]:
    """The highest utilization whose oracle meets the SLO (the last one tried if none does)."""
    for utilization in ORACLE_UTILIZATION_GRID:
        oracle = Oracle(trace, setup.replica, utilization, DECISION_PERIOD_S)
        result = setup.run(trace, oracle, oracle.initial_replicas())
        if result.slo_met_share >= SLO_GOAL:
            break
    return oracle, result


def tune_ray_target(steady_trace: Trace, setup: Setup) -> tuple[float, list[SimResult]]:
    """The largest target_ongoing_requests that meets the SLO on a steady trace."""
    initial = Oracle(steady_trace, setup.replica, 1.0, DECISION_PERIOD_S).initial_replicas()
    results = [setup.run(steady_trace, ray_default(t, setup), initial) for t in RAY_TARGET_GRID]
    passing = [t for t, r in zip(RAY_TARGET_GRID, results) if r.slo_met_share >= SLO_GOAL]
    return (max(passing) if passing else RAY_TARGET_GRID[0]), results


def compare(trace: Trace, ray_target: float, setup: Setup = Setup()) -> TraceComparison:
    oracle, oracle_result = cheapest_oracle(trace, setup)
    # Every autoscaled policy starts where the trace starts, with the oracle's fleet.
    initial = oracle.initial_replicas()
    return TraceComparison(
        trace=trace.name,
        description=trace.description,
        oracle_utilization=oracle.utilization,
        ray_target_ongoing_requests=ray_target,
        ours=setup.run(trace, ours(setup), initial),
        ray=setup.run(trace, ray_default(ray_target, setup), initial),
        fixed=setup.run(trace, FixedFleet(oracle.peak), oracle.peak),
        oracle=oracle_result,
    )


def _ray_default_policy():
    from ray.serve.autoscaling_policy import replica_queue_length_autoscaling_policy

    return replica_queue_length_autoscaling_policy
