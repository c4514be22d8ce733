"""The trace simulator: its fleet model behaves like one, it drives policies the way Serve
does, and on the burst trace our policy beats Ray's default on both counts."""

import random

import pytest

from autoscaling import traces
from autoscaling.comparison import GPU_HOURS_GOAL, SLO_GOAL, Setup, compare, ours, ray_default
from autoscaling.sim_policies import FixedFleet, serve_decision
from autoscaling.simulator import Cluster, ReplicaModel, simulate

# The value `tune_ray_target` picks on the steady trace (see bench/autoscaling/results.md).
RAY_TARGET = 48.0
SHORT_STEADY = traces.steady(rate=30.0, hours=0.5)


def test_poisson_arrivals_have_the_asked_mean_and_a_seed_replays_them():
    rng = random.Random(0)
    draws = [traces.poisson(rng, 75.0) for _ in range(4000)]
    assert sum(draws) / len(draws) == pytest.approx(75.0, rel=0.01)
    assert traces.burst(hours=1.0).arrivals == traces.burst(hours=1.0).arrivals


def test_a_giant_replica_takes_about_ten_minutes_to_start():
    assert 540 <= ReplicaModel().cold_start_s <= 660


def test_our_policy_is_told_the_cold_start_its_simulated_replicas_have():
    # As the builder fills expected_cold_start_s with the model's estimate, the simulator
    # fills it with its replica model's: the forecast horizon is the real wait for a replica.
    setup = Setup()
    config = setup.ours_config()
    assert "expected_cold_start_s" in config.model_fields_set
    assert config.horizon_s == pytest.approx(setup.replica.cold_start_s, abs=1)
    slow = Setup(replica=ReplicaModel(weight_load_gb_per_s=0.5))
    assert slow.ours_config().horizon_s == pytest.approx(slow.replica.cold_start_s, abs=1)


def test_enough_replicas_meet_the_ttft_target_and_too_few_build_a_queue():
    enough = simulate(SHORT_STEADY, FixedFleet(7), initial_replicas=7, ttft_target_s=2.0)
    assert enough.slo_met_share > 0.999 and enough.p99_queue_delay_s == 0
    assert enough.gpu_hours == pytest.approx(7 * 8 * 0.5)
    too_few = simulate(SHORT_STEADY, FixedFleet(5), initial_replicas=5, ttft_target_s=2.0)
    assert too_few.slo_met_share < 0.5 and too_few.unserved_at_end > 1000


class _DropAt:
    """Runs `before` replicas, then `after` from `at_s` on."""

    name = "scripted"

    def __init__(self, before: int, after: int, at_s: float) -> None:
        self.before, self.after, self.at_s = before, after, at_s

    def target(self, observation):
        return self.before if observation.now < self.at_s else self.after


def test_released_replicas_drain_their_requests_before_freeing_their_gpus():
    result = simulate(
        SHORT_STEADY,
        _DropAt(10, 7, at_s=600),
        initial_replicas=10,
        ttft_target_s=2.0,
        timeline_period_s=1,
    )
    after_drop = [p for p in result.timeline if p.t_s >= 600]
    assert after_drop[0].draining == 3 and after_drop[0].serving == 7
    assert any(p.draining == 0 for p in after_drop)  # they leave once empty, not before
    # No request is lost: everything that came in finished, runs, or waits.
    assert result.requests + result.carried_in == (
        result.completed + result.in_flight_at_end + result.unserved_at_end
    )
    drained_s = next(p.t_s for p in after_drop if p.draining == 0) - 600
    replica_seconds = 10 * 600 + 7 * 1200 + 3 * drained_s
    assert result.gpu_hours == pytest.approx(replica_seconds * 8 / 3600, rel=0.01)


def test_serve_decision_is_serves_own_wrapper_on_simulated_time(monkeypatch):
    import ray.serve.autoscaling_policy as serve_policy
    from ray.serve._private.common import DeploymentID
    from ray.serve.config import AutoscalingConfig as ServeAutoscalingConfig
    from ray.serve.config import AutoscalingContext

    config = ServeAutoscalingConfig(min_replicas=1, max_replicas=20, target_ongoing_requests=10)
    policy = serve_policy.replica_queue_length_autoscaling_policy
    wrapped = serve_policy._apply_autoscaling_config(policy)
    ours_state, serve_state, target, targets = {}, {}, 2, []
    ticks = [(0, 50), (10, 50), (31, 55), (40, 10), (400, 10), (700, 10), (701, 300), (735, 300)]
    for now, ongoing in ticks:

        def ctx(state):
            return AutoscalingContext(
                deployment_id=DeploymentID(name="d", app_name="a"),
                deployment_name="d",
                app_name="a",
                current_num_replicas=target,
                target_num_replicas=target,
                running_replicas=[],
                total_num_requests=ongoing,
                total_queued_requests=0,
                aggregated_metrics={},
                raw_metrics={},
                capacity_adjusted_min_replicas=1,
                capacity_adjusted_max_replicas=20,
                policy_state=dict(state),
                last_scale_up_time=None,
                last_scale_down_time=None,
                current_time=now,
                config=config,
            )

        ours_replicas, ours_state = serve_decision(policy, ctx(ours_state), now)
        monkeypatch.setattr(serve_policy.time, "time", lambda: now)
        serve_replicas, serve_state = wrapped(ctx(serve_state))
        assert ours_replicas == max(1, min(20, serve_replicas))
        target = ours_replicas
        targets.append(target)
    # Up after the 30 s upscale delay, down after the 600 s downscale delay, up again.
    assert targets == [2, 2, 6, 6, 6, 1, 1, 20]


def test_never_asks_for_more_gangs_than_a_small_cluster_places():
    small = Setup(cluster=Cluster(nodes=8))
    burst = traces.burst(hours=2.5)  # up to the peak
    mine = small.run(burst, ours(small), initial_replicas=4)
    ray = small.run(burst, ray_default(RAY_TARGET, small), initial_replicas=4)
    assert mine.peak_replicas <= 8
    # Ray's default asks for what it cannot place: a pile of placement groups that wait.
    assert ray.peak_replicas > 8


@pytest.fixture(scope="module")
def burst():
    return compare(traces.burst(), RAY_TARGET)


def test_on_the_burst_ours_meets_the_whole_goal(burst):
    goal = burst.goal()
    assert goal.slo_met, burst.ours
    assert goal.better_than_ray_on_slo and goal.better_than_ray_on_gpu_hours
    assert burst.oracle.slo_met_share >= SLO_GOAL
    # <= 1.3x the oracle's GPU-hours (~1.27x on this seed; results.md has the others).
    assert goal.cost_met, goal
    assert burst.ours.reversals == 0


def test_on_a_steady_load_ours_holds_the_spare_replicas_and_nothing_for_noise():
    steady = compare(traces.steady(), RAY_TARGET)
    spare = Setup().ours_config().spare_replicas
    assert steady.ours.slo_met_share >= SLO_GOAL
    # The oracle's fleet plus the spare ones; a replica ordered on a blip of the Poisson
    # arrivals would be held for a whole downscale delay.
    assert steady.ours.peak_replicas <= steady.oracle.peak_replicas + spare
    assert steady.ours.reversals == 0


def test_a_burst_rising_over_two_hours_meets_the_whole_goal():
    comparison = compare(traces.burst(ramp_up_s=7200.0), RAY_TARGET)
    goal = comparison.goal()
    assert goal.met, goal
    assert goal.gpu_hours_ratio <= GPU_HOURS_GOAL
