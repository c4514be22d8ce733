"""The replica-count decision: trend ahead of the queue, cooldowns, slow scale-down, capacity,
scale to zero; then the Serve adapter, the signals it reads and the capacity it counts."""

import logging
import random
import statistics

import pytest
from pydantic import ValidationError

from autoscaling.capacity import ClusterCapacity, addable_replicas
from autoscaling.cold_start import MIN_RETRY_AFTER_S, ColdStartGate
from autoscaling.config import AutoscalingConfig
from autoscaling.policy import (
    STATE_KEY,
    FleetView,
    LLMAutoscalingPolicy,
    PolicyState,
    _sample_noise,
    decide,
)
from autoscaling.signals import (
    METRIC_ARRIVALS_PER_S,
    METRIC_KV_CACHE_USAGE,
    METRIC_NUM_RUNNING,
    METRIC_NUM_WAITING,
    METRIC_TTFT_P90_S,
    FleetSignals,
    RecentRequests,
    ReplicaStats,
    autoscaling_stats,
    fleet_signals,
    replica_stats_from_serve,
)

CONFIG = AutoscalingConfig(max_replicas=16)
PER_REPLICA = CONFIG.target_ongoing_requests_per_replica
SECONDS_IN_BATCH = 10.0  # how long a request runs: Little's law for the fake engines below


def load(arrivals: float, *, replicas: int, waiting=0.0, kv=0.2, ttft=0.4) -> FleetSignals:
    return FleetSignals(
        reporting_replicas=replicas,
        running=arrivals * SECONDS_IN_BATCH,
        waiting=waiting,
        kv_cache_usage=kv,
        ttft_p90_s=ttft,
        arrivals_per_s=arrivals,
    )


def fleet(target: int, running: int | None = None, **bounds) -> FleetView:
    return FleetView(
        running_replicas=target if running is None else running,
        target_replicas=target,
        min_replicas=bounds.get("min_replicas", 1),
        max_replicas=bounds.get("max_replicas", CONFIG.max_replicas),
        last_scale_up_at=bounds.get("last_scale_up_at"),
    )


def once(signals: FleetSignals, fleet_view: FleetView, *, state=None, addable=None, now=0.0):
    """One decision with the default knobs."""
    return decide(
        state=state or PolicyState(),
        signals=signals,
        fleet=fleet_view,
        config=CONFIG,
        addable=addable,
        now=now,
    )


def replay(
    arrivals_at,
    target: int,
    seconds: float,
    every_s: float = 5.0,
    config=CONFIG,
    state=None,
    start_s: float = 0.0,
    **load_kw,
):
    """Call decide() every `every_s` from `start_s` on arrivals_at(t); the target follows
    the decisions. Returns [(t, decision)]."""
    state, decisions = state or PolicyState(), []
    for i in range(int(seconds / every_s)):
        t = start_s + i * every_s
        decision = decide(
            state=state,
            signals=load(arrivals_at(t), replicas=target, **load_kw),
            fleet=fleet(target),
            config=config,
            addable=None,
            now=t,
        )
        state, target = decision.state, decision.replicas
        decisions.append((t, decision))
    return decisions


def replicas_for(arrivals: float) -> int:
    """What the level alone needs: demand / target per replica, plus the spare replicas."""
    need = -(-arrivals * SECONDS_IN_BATCH // PER_REPLICA)
    return int(need + min(CONFIG.spare_replicas, need))


# --- the trend: ahead of the queue, and only for real trends --------------------------------


def test_scales_up_on_a_rising_trend_before_anything_waits():
    # 20 req/s climbing 0.6 req/s per minute: a 5x burst over ~2 h. Nothing ever waits here.
    decisions = replay(lambda t: 20 + 0.01 * t, target=replicas_for(20), seconds=900)
    ahead = [(t, d) for t, d in decisions if d.replicas > replicas_for(20 + 0.01 * t)]
    assert ahead, "the fleet should run ahead of the current level while it rises"
    t, first = ahead[0]
    assert first.reason.startswith("up") and t < 600


def test_a_flat_noisy_load_is_not_a_trend():
    rng = random.Random(7)
    target = replicas_for(30)
    decisions = replay(lambda t: 30 + rng.gauss(0, 1.0), target=target, seconds=3600)
    assert all(d.replicas <= target + 1 for _, d in decisions)
    assert sum(d.reason.startswith("up") for _, d in decisions) <= 1


def test_a_step_is_provisioned_for_as_it_is_not_extrapolated():
    decisions = replay(lambda t: 20 if t < 600 else 40, target=replicas_for(20), seconds=1800)
    assert max(d.replicas for _, d in decisions) == replicas_for(40)


def test_the_trend_is_extrapolated_at_its_lower_confidence_bound():
    # 0.6 req/s per minute, clean and with noise around it. A fit on noise errs both ways,
    # and the policy orders on its highest value: the bound keeps that near the true slope.
    rng = random.Random(3)
    noise = [rng.gauss(0, 0.5) for _ in range(120)]

    def trends(noise, **knobs):
        config = CONFIG.model_copy(update=knobs)
        arrivals = lambda t: 20 + 0.01 * t + noise[int(t // 5)]  # noqa: E731
        decisions = replay(arrivals, target=16, seconds=600, config=config)
        return [d.state.arrival_trend for _, d in decisions]

    clean = [0.0] * 120
    # Without noise the bound is the slope itself.
    assert trends(clean)[-1] == pytest.approx(0.01, rel=0.01)
    assert trends(clean) == pytest.approx(trends(clean, trend_confidence_se=0.0))
    fitted, bound = trends(noise, trend_confidence_se=0.0), trends(noise)
    assert max(fitted) > 0.011 and max(bound) < 0.0105
    assert 0 < bound[-1] < fitted[-1] - 0.001
    assert trends(noise, trend_confidence_se=2.0)[-1] < bound[-1]


def test_noise_around_a_level_orders_no_replica_the_spare_ones_absorb_it():
    # 32 req/s needs 5.7 replicas: a blip of 1.6 sigma asks for a 7th one (plus the spare).
    rng = random.Random(2)
    noise = [rng.gauss(0, 1.0) for _ in range(720)]
    noisy = lambda t: 32 + noise[int(t // 5)]  # noqa: E731
    target = replicas_for(32)

    def ups(config):
        # The noise is measured on half a trend window first, with replicas to spare.
        learned = replay(noisy, target=16, seconds=300, config=config)[-1][1].state
        decisions = replay(noisy, target, 3300, config=config, state=learned, start_s=300)
        assert 0.7 < decisions[-1][1].state.arrival_noise < 1.3
        assert not any(d.reason.startswith("down") for _, d in decisions)
        return sum(d.reason.startswith("up") for _, d in decisions)

    assert ups(CONFIG) == 0
    assert ups(CONFIG.model_copy(update={"upscale_noise_tolerance": 0.0})) >= 1


def test_the_noise_tolerance_never_eats_more_than_half_the_spare_replicas():
    # Noise far beyond the load: the tolerance is capped at one of the two spare replicas.
    state = PolicyState(samples=((0.0, 40.0, 0.0),), arrival_noise=50.0)
    decision = once(load(40, replicas=6), fleet(6), state=state, now=5.0)
    assert decision.replicas == replicas_for(40) - CONFIG.spare_replicas // 2


def test_sample_noise_is_measured_around_steps_and_ramps_not_inflated_by_them():
    rng = random.Random(5)
    noise = [rng.gauss(0, 2.0) for _ in range(300)]
    step = lambda i: 20.0 if i < 150 else 60.0  # noqa: E731
    ramp = lambda i: 20.0 + 0.5 * i  # noqa: E731
    for level in (step, ramp):
        samples = tuple((10.0 * i, level(i) + noise[i], 0.0) for i in range(300))
        assert statistics.pstdev(a for _, a, _ in samples) > 10
        assert 1.6 < _sample_noise(samples, now=2990.0, window_s=3000.0, overlap=3) < 2.4
    assert _sample_noise(samples[:6], now=50.0, window_s=3000.0, overlap=3) == 0.0


def test_holds_during_the_upscale_cooldown_unless_saturated():
    state = PolicyState(last_upscale_at=1000.0)
    rising = load(40, replicas=6)
    held = once(rising, fleet(6), state=state, now=1030)
    assert held.replicas == 6 and "upscale cooldown" in held.reason

    saturated = load(40, replicas=6, waiting=200)
    assert once(saturated, fleet(6), state=state, now=1030).replicas > 6


def test_distress_asks_for_one_more_only_when_none_is_starting():
    slow = load(20, replicas=6, ttft=3.0)  # the level alone fits in 6
    none_starting = once(slow, fleet(6))
    assert none_starting.replicas == 7 and "slow" in none_starting.reason
    assert once(slow, fleet(7, running=6)).replicas == 7


def test_a_full_kv_cache_asks_for_replicas_without_a_queue():
    long_contexts = load(10, replicas=4, kv=0.95)  # 100 requests: slots are fine, memory is not
    # 4 replicas at 95% would need 4 x 0.95 / 0.85 = 4.5 -> 5, plus the spare ones.
    assert once(long_contexts, fleet(4)).replicas == 5 + CONFIG.spare_replicas


def test_a_backlog_grows_the_fleet_by_a_bounded_factor_per_step():
    flooded = load(30, replicas=4, waiting=5000)
    decision = once(flooded, fleet(4))
    assert decision.replicas == 4 * CONFIG.max_upscale_factor
    assert "max_upscale_factor" in decision.reason


# --- scale-down: late, in steps, never under load -------------------------------------------


def test_scales_down_only_after_the_delay_then_in_steps_and_keeps_headroom():
    decisions = replay(lambda t: 60 if t < 1200 else 10, target=replicas_for(60), seconds=4800)
    downs = [(t, d) for t, d in decisions if d.reason.startswith("down")]
    assert downs, "a load that fell for good must release replicas"
    assert downs[0][0] >= 1200 + CONFIG.downscale_delay_s - CONFIG.signal_period_s
    sizes = [replicas_for(60)] + [d.replicas for _, d in downs]
    assert all(0 < a - b <= CONFIG.max_downscale_step for a, b in zip(sizes, sizes[1:]))
    assert all(b[0] - a[0] >= CONFIG.downscale_cooldown_s for a, b in zip(downs, downs[1:]))
    # Ends where 10 req/s fits with the band and the spare replicas to spare, not lower.
    assert decisions[-1][1].replicas == replicas_for(10 * (1 + CONFIG.hysteresis_band))


def test_never_scales_down_while_requests_wait():
    quiet_but_queued = lambda t: 10  # noqa: E731
    decisions = replay(quiet_but_queued, target=12, seconds=3600, waiting=5)
    assert all(d.replicas >= 12 for _, d in decisions)
    assert "requests waiting" in decisions[-1][1].reason


def test_an_oscillating_load_does_not_thrash():
    # +-30% every 8 minutes: the peaks recur within the scale-down delay, so nothing is released.
    square_wave = lambda t: 40 + 12 * (1 if (t // 240) % 2 else -1)  # noqa: E731
    decisions = replay(square_wave, target=replicas_for(52), seconds=7200)
    assert not any(d.reason.startswith("down") for _, d in decisions)
    assert sum(d.reason.startswith("up") for _, d in decisions) <= 1


# --- bounds and cluster capacity -------------------------------------------------------------


def test_respects_max_replicas_and_min_replicas():
    assert once(load(200, replicas=8), fleet(8, max_replicas=10)).replicas == 10
    assert once(load(0.1, replicas=1), fleet(1, min_replicas=3)).replicas == 3


def test_never_asks_for_more_gangs_than_the_cluster_places():
    surge = load(100, replicas=6)
    assert once(surge, fleet(6), addable=1).replicas == 7
    none = once(surge, fleet(6), addable=0)
    assert none.replicas == 6 and "no free GPUs" in none.reason


def test_capacity_counts_whole_gangs_on_single_nodes_minus_waiting_ones():
    tp8 = AutoscalingConfig()
    fragmented = ClusterCapacity(free_gpus_per_node=(4, 4, 4))  # 12 free GPUs, no 8 on one node
    assert addable_replicas(fragmented, tp8) == 0
    assert addable_replicas(ClusterCapacity(free_gpus_per_node=(8, 8, 3)), tp8) == 2
    one_waiting = ClusterCapacity(free_gpus_per_node=(8, 8), waiting_replicas=1)
    assert addable_replicas(one_waiting, tp8) == 1
    five_waiting = ClusterCapacity(free_gpus_per_node=(8, 8), waiting_replicas=5)
    assert addable_replicas(five_waiting, tp8) == 0
    tp8_pp2 = AutoscalingConfig(gpus_per_replica=16, gpus_per_stage=8, autoscaler_headroom_gpus=8)
    # Three free nodes and one the cluster autoscaler may add hold two 2-node replicas.
    assert addable_replicas(ClusterCapacity(free_gpus_per_node=(8, 8, 8)), tp8_pp2) == 2


# --- scale to zero and back ------------------------------------------------------------------

ZERO = AutoscalingConfig(scale_to_zero=True, scale_to_zero_idle_s=1800, max_replicas=4)


def test_scales_to_zero_after_the_idle_time_and_serve_brings_one_back():
    idle = FleetSignals(
        reporting_replicas=1, running=0, waiting=0, kv_cache_usage=0, arrivals_per_s=0
    )

    def at(now, state, fleet_view):
        return decide(
            state=state, signals=idle, fleet=fleet_view, config=ZERO, addable=None, now=now
        )

    state = PolicyState()
    for t in range(0, 1800, 10):
        decision = at(t, state, fleet(1))
        state = decision.state
        assert decision.replicas == 1
    decision = at(1800, state, fleet(1))
    assert decision.replicas == 0 and "scale to zero" in decision.reason

    # A request arrives: Serve scales 0 -> 1 itself (the policy is not called at 0 replicas).
    # The request may be gone by the time the replica runs; the idle count restarts anyway.
    assert at(2410, decision.state, fleet(1, last_scale_up_at=2400)).replicas == 1


def test_serve_starts_a_replica_from_zero_without_asking_the_policy():
    from ray.serve._private.autoscaling_state import _apply_autoscaling_config

    calls = []
    wrapped = _apply_autoscaling_config(lambda ctx: calls.append(ctx) or (0, {}))
    replicas, _ = wrapped(_context(running=0, target=0, total_requests=3, metrics={}))
    assert replicas == 1 and not calls


def test_a_cold_model_holds_requests_briefly_then_answers_503_with_retry_after():
    gate = ColdStartGate("kimi", ZERO)
    assert gate.hold_s(now=0) == ZERO.cold_request_hold_s  # never answered: may be at zero
    first = gate.notice(now=ZERO.cold_request_hold_s)
    later = gate.notice(now=400)
    assert first.status == 503 and "kimi" in first.message
    assert first.retry_after_s > later.retry_after_s >= MIN_RETRY_AFTER_S
    assert gate.notice(now=5000).retry_after_s == MIN_RETRY_AFTER_S
    gate.replied(now=700)
    assert gate.hold_s(now=710) is None  # warm: no hold, no 503
    assert ColdStartGate("always-on", AutoscalingConfig()).hold_s(now=0) is None


# --- the Serve adapter ---------------------------------------------------------------------


class FakeCapacity:
    def __init__(self, free_nodes: int) -> None:
        self.free_nodes = free_nodes
        self.reads = 0

    def read(self, deployment_id, now):
        self.reads += 1
        return ClusterCapacity(free_gpus_per_node=(8.0,) * self.free_nodes)


def _context(*, running: int, target: int, total_requests: float, metrics: dict, state=None):
    from ray.serve._private.common import DeploymentID
    from ray.serve.config import AutoscalingConfig as ServeAutoscalingConfig
    from ray.serve.config import AutoscalingContext

    serve_config = ServeAutoscalingConfig(**CONFIG.to_serve_autoscaling_config())
    return AutoscalingContext(
        deployment_id=DeploymentID(name="engine-kimi", app_name="llm"),
        deployment_name="engine-kimi",
        app_name="llm",
        current_num_replicas=running,
        target_num_replicas=target,
        running_replicas=[f"r{i}" for i in range(running)],
        total_num_requests=total_requests,
        total_queued_requests=0.0,
        aggregated_metrics=metrics,
        raw_metrics={},
        capacity_adjusted_min_replicas=serve_config.min_replicas,
        capacity_adjusted_max_replicas=serve_config.max_replicas,
        policy_state=state or {},
        last_scale_up_time=None,
        last_scale_down_time=None,
        current_time=100.0,
        config=serve_config,
    )


def _engines(replicas: int, *, running: float, waiting: float = 0.0, arrivals: float = 3.0) -> dict:
    ids = [f"r{i}" for i in range(replicas)]
    return {
        METRIC_NUM_RUNNING: dict.fromkeys(ids, running),
        METRIC_NUM_WAITING: dict.fromkeys(ids, waiting),
        METRIC_KV_CACHE_USAGE: dict.fromkeys(ids, 0.3),
        METRIC_TTFT_P90_S: dict.fromkeys(ids, 0.5),
        METRIC_ARRIVALS_PER_S: dict.fromkeys(ids, arrivals),
    }


def test_adapter_reads_engine_metrics_and_keeps_serves_state_keys(caplog):
    capacity = FakeCapacity(free_nodes=8)
    policy = LLMAutoscalingPolicy(capacity_reader=capacity, **CONFIG.model_dump())
    busy = _engines(4, running=60, waiting=10)  # 280 ongoing on 4 replicas: far over 56 each
    ctx = _context(
        running=4, target=4, total_requests=280, metrics=busy, state={"serve_internal": 1}
    )
    with caplog.at_level(logging.INFO, logger="giantserve.autoscaling"):
        replicas, state = policy(ctx)
    assert replicas == 5 + CONFIG.spare_replicas
    assert state["serve_internal"] == 1 and STATE_KEY in state
    assert PolicyState.model_validate(state[STATE_KEY]).last_upscale_at == 100.0
    assert capacity.reads == 1 and "up 4->7" in caplog.text


def test_adapter_stays_within_the_clusters_free_gangs():
    policy = LLMAutoscalingPolicy(capacity_reader=FakeCapacity(free_nodes=1), **CONFIG.model_dump())
    flooded = _engines(4, running=64, waiting=36)
    ctx = _context(running=4, target=4, total_requests=400, metrics=flooded)
    assert policy(ctx)[0] == 5


def test_adapter_falls_back_to_serves_counts_until_engines_report():
    policy = LLMAutoscalingPolicy(capacity_reader=FakeCapacity(free_nodes=8), **CONFIG.model_dump())
    ctx = _context(running=4, target=4, total_requests=300, metrics={})
    assert policy(ctx)[0] == 6 + CONFIG.spare_replicas  # 300 / 56 -> 6


def test_adapter_decision_passes_through_serves_wrapper_unchanged():
    from ray.serve._private.autoscaling_state import _apply_autoscaling_config

    policy = LLMAutoscalingPolicy(capacity_reader=FakeCapacity(free_nodes=8), **CONFIG.model_dump())
    wrapped = _apply_autoscaling_config(policy)
    busy = _engines(4, running=60, waiting=10)
    ctx = _context(running=4, target=4, total_requests=280, metrics=busy)
    assert wrapped(ctx)[0] == 5 + CONFIG.spare_replicas


# --- what engines report ---------------------------------------------------------------------


def test_engine_stats_are_numbers_serve_accepts():
    stats = autoscaling_stats(
        num_waiting=3, num_running=40, kv_cache_usage=1.02, ttft_p90_s=None, arrivals_per_s=2.5
    )
    assert all(isinstance(v, float) for v in stats.values())
    assert stats[METRIC_KV_CACHE_USAGE] == 1.0 and METRIC_TTFT_P90_S not in stats
    with pytest.raises(ValidationError):
        autoscaling_stats(
            num_waiting=-1, num_running=0, kv_cache_usage=0, ttft_p90_s=0.1, arrivals_per_s=0
        )


def test_recent_requests_gives_the_arrival_rate_and_ttft_p90_of_the_window():
    recent = RecentRequests(window_s=60)
    assert recent.ttft_p90_s(now=0) is None and recent.arrivals_per_s(now=0) == 0
    for i in range(100):
        recent.arrived(now=i * 0.5)
        recent.first_token(ttft_s=0.1 if i % 10 else 5.0, now=i * 0.5)
    assert recent.arrivals_per_s(now=50) == pytest.approx(2.0, rel=0.05)
    assert recent.ttft_p90_s(now=50) == 0.1  # 10% slow requests sit at the p90 boundary
    assert recent.ttft_p90_s(now=200) is None


def test_fleet_signals_add_up_replicas_and_weight_ttft_by_load():
    per_replica = replica_stats_from_serve(
        {
            METRIC_NUM_RUNNING: {"a": 50, "b": 10},
            METRIC_NUM_WAITING: {"a": 10},
            METRIC_KV_CACHE_USAGE: {"a": 0.6, "b": 0.2},
            METRIC_TTFT_P90_S: {"a": 1.0, "b": 3.0},
            METRIC_ARRIVALS_PER_S: {"a": 5, "b": 1},
        },
        replicas=["a", "b", "not-reporting-yet"],
    )
    assert set(per_replica) == {"a", "b"} and isinstance(per_replica["a"], ReplicaStats)
    signals = fleet_signals(per_replica, handle_queued=5)
    assert (signals.running, signals.waiting, signals.demand) == (60, 15, 75)
    assert signals.kv_cache_usage == pytest.approx(0.4) and signals.arrivals_per_s == 6
    assert signals.ttft_p90_s == pytest.approx((1.0 * 60 + 3.0 * 10) / 70)
