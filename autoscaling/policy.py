"""The replica-count decision for one LLM engine deployment, and its Ray Serve 2.60 adapter.

`decide()` is pure: (state, fleet signals, fleet view, config, placeable replicas, now) in,
`Decision` (replicas, new state, reason) out. `LLMAutoscalingPolicy` only translates Serve's
context into those arguments and back.

How the decision works
----------------------
* Demand is the requests that want a batch slot: running + waiting in the engines + queued
  at Serve handles. One replica is sized for `target_ongoing_requests_per_replica` of them.
* Cold start: a replica asked for now serves in ~`expected_cold_start_s`, so the fleet is
  sized for the demand one cold start ahead. The trend is taken on the arrival rate, which,
  unlike the requests in flight, does not move when the fleet does (fewer replicas run
  bigger batches that decode slower, so each holds more requests); Little's law turns it
  into requests in flight. A trend counts only when it rises out of its own noise, and a
  step is provisioned for as it is, not extrapolated (see `_rising_trend`).
* Noise: a scale-up is kept for at least `downscale_delay_s`, so a scale-up on a noisy
  estimate is a ratchet: each upward error orders a replica that the (noise-robust)
  scale-down rules then hold. Scale-ups therefore act only on what shows beyond the noise:
  the trend is extrapolated at its lower confidence bound (`trend_confidence_se` standard
  errors under the fitted slope), and a need above the fleet by less than
  `upscale_noise_tolerance` standard deviations of the arrival rate's noise (at most half
  the spare replicas) orders nothing: the spare replicas absorb it. The scale-down side
  keeps the unreduced need.
* Memory: long contexts fill the KV cache before the batch slots; the mean KV usage over
  `kv_cache_usage_high_watermark` asks for proportionally more replicas.
* Headroom: `spare_replicas` on top of the need (never more than the need itself), for the
  minutes a burst outruns its trend and for a replica that fails.
* Distress: waiting requests above `target_waiting_per_replica` (saturated) or a recent TTFT
  p90 above `ttft_pressure_ratio` x the SLO ask for one more replica when none is starting;
  saturation also skips the upscale cooldown. A scale-up asks for at most
  `max_upscale_factor` x the running replicas: a queue grown while saturated is a backlog.
* Scale-down is slow: only when the peak need of the whole `downscale_delay_s` (and since
  the last scale-up), plus `hysteresis_band` and the spare replicas, fits in fewer replicas,
  nothing waits, TTFT is fine, and `downscale_cooldown_s` passed since the last step; at
  most `max_downscale_step` replicas per step.
* Gangs and capacity: a scale-up never asks for more replicas than the cluster's free GPUs
  place as whole gangs (see `autoscaling.capacity`), so no pile of pending placement groups.
* Scale to zero (opt-in): after `scale_to_zero_idle_s` without a single request.

What this relies on in Ray Serve 2.60 (read from its installed source)
-----------------------------------------------------------------------
* `AutoscalingConfig.policy = AutoscalingPolicy(policy_function="module:attr",
  policy_kwargs={...})`; policy_kwargs must be JSON-serializable. If the attribute is a
  class, `_resolve_policy_callable` instantiates it once with `**policy_kwargs` per
  deployment registration, then calls `instance(ctx)` every control-loop tick (~0.1 s).
  The class is cloudpickled by value but imports `autoscaling.*` by reference: the package
  must be importable where the Serve controller runs.
* The callable gets an `AutoscalingContext` and returns `(replicas, policy_state)`. Used
  fields: `current_num_replicas` (running), `target_num_replicas` (includes starting ones),
  `running_replicas`, `aggregated_metrics`, `total_queued_requests` (queued at handles),
  `total_num_requests`, `capacity_adjusted_min/max_replicas`, `policy_state`,
  `current_time`, `last_scale_up_time`, `deployment_id`, `deployment_name`.
* Custom metrics: a deployment method `record_autoscaling_stats()` (sync or async, at most
  RAY_SERVE_RECORD_AUTOSCALING_STATS_TIMEOUT_S = 10 s) returns `Dict[str, int | float]`;
  the first result is type-checked and a bad one disables the replica's custom metrics.
  The replica records it every look_back_period_s x 0.2 s next to Serve's own
  "running_requests" key and pushes every 10 s; the controller averages each metric over
  look_back_period_s (aggregation_function, mean by default) into
  `ctx.aggregated_metrics = {metric: {ReplicaID: value}}`, running replicas only.
* `policy_state` lives in controller memory only: it restarts empty when the controller
  restarts or the deployment is redeployed. An empty state here never releases replicas
  early (the scale-down window must fill again).
* Serve wraps the answer (`_apply_autoscaling_config`): with 0 running replicas and any
  request it scales to max(1, target) without calling us; otherwise it applies
  upscaling/downscaling factors (1.0 here) and its upscale/downscale delays (its
  downscale delays are 0 here, see `autoscaling.config`), and a scale-down from N > 1 to 0
  passes through 1. Then it clamps to [min_replicas, max_replicas], adjusted for target
  capacity. The default policy, `replica_queue_length_autoscaling_policy`, asks for
  total_num_requests / target_ongoing_requests; Ray Serve LLM sets that target to 1e9.
* Serve chooses which replicas to stop (not yet running first, then by node packing, newest
  first), not by load, and stops them gracefully: a stopping replica takes no new request
  and finishes its in-flight ones within `graceful_shutdown_timeout_s`. "Scale down only
  drained replicas" is therefore: release only when the rest absorb the load with headroom
  and nothing waits, and let Serve drain the victim; the deployment's
  graceful_shutdown_timeout_s must exceed the longest generation.
* Replica placement groups are named after the replica actor,
  "SERVE_REPLICA::app#deployment#id" (`ReplicaID.to_full_id_str()`); free GPUs per node
  come from `ray._private.state.available_resources_per_node()` (see `autoscaling.capacity`).
"""

from __future__ import annotations

import logging
import math
import statistics
import time
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

from autoscaling.capacity import ClusterCapacity, RayCapacityReader, addable_replicas
from autoscaling.config import AutoscalingConfig
from autoscaling.signals import FleetSignals, fleet_signals, replica_stats_from_serve

logger = logging.getLogger("giantserve.autoscaling")

# Our part of Serve's policy_state dict; Serve keeps its own keys beside it.
STATE_KEY = "giantserve"
# Replica needs like 3.0000000001 from float noise must not round up to 4.
_EPS = 1e-6
# A trend counts when its rise over the window exceeds this many robust standard deviations
# of the points around it: far beyond what Poisson noise does to a 30 s mean of arrivals.
_TREND_NOISE_MULTIPLE = 3.0


class PolicyState(BaseModel):
    """What the policy remembers between ticks; plain data so Serve can keep it."""

    model_config = ConfigDict(frozen=True)

    samples: tuple[tuple[float, float, float], ...] = Field(
        (),
        description="(time, arrivals/s, most replicas needed then), one per signal period, "
        "oldest first",
    )
    arrival_trend: float = Field(
        0.0,
        ge=0,
        description="rise of the arrival rate (requests/s per second) at the last sample, at "
        "its lower confidence bound",
    )
    arrival_noise: float = Field(
        0.0, ge=0, description="standard deviation of one arrival-rate sample (requests/s)"
    )
    last_upscale_at: float | None = None
    last_downscale_at: float | None = None
    idle_since: float | None = Field(None, description="since when not a single request came")


class FleetView(BaseModel):
    """What Serve knows about the deployment's replicas."""

    model_config = ConfigDict(frozen=True)

    running_replicas: int = Field(ge=0)
    target_replicas: int = Field(ge=0, description="running + starting")
    min_replicas: int = Field(ge=0, description="floor while the model has traffic")
    max_replicas: int = Field(ge=0)
    last_scale_up_at: float | None = Field(
        None, description="Serve's last raise of the target, ours or its own scale-from-zero"
    )


class Decision(BaseModel):
    model_config = ConfigDict(frozen=True)

    replicas: int
    state: PolicyState
    reason: str


def decide(
    *,
    state: PolicyState,
    signals: FleetSignals,
    fleet: FleetView,
    config: AutoscalingConfig,
    addable: int | None,
    now: float,
) -> Decision:
    """The replica count for now. `addable`: replicas the cluster places beyond the target
    (None: unbounded)."""
    arrivals = signals.arrivals_per_s
    memory_need = (
        signals.reporting_replicas * signals.kv_cache_usage / config.kv_cache_usage_high_watermark
    )
    idle = arrivals <= 0 and signals.demand <= 0
    state = _observe(state, now, arrivals, idle=idle, config=config)
    slope = state.arrival_trend
    # Little's law turns arrivals into requests in flight: each stays running/arrivals seconds.
    seconds_in_batch = signals.running / arrivals if arrivals > 0 else 0.0
    forecast = signals.demand + slope * config.horizon_s * seconds_in_batch
    per_replica = config.target_ongoing_requests_per_replica
    need_ahead = max(forecast / per_replica, memory_need)
    # Scale-down keeps the full need; a scale-up ignores what lies within the noise.
    state = _record_need(state, need_ahead)
    # At most half the spare replicas: the other half stays headroom.
    within_noise = min(
        config.upscale_noise_tolerance * state.arrival_noise * seconds_in_batch / per_replica,
        config.spare_replicas / 2,
    )
    need_beyond_noise = max(forecast / per_replica - within_noise, memory_need)
    target = fleet.target_replicas
    idle_s = _idle_s(state, fleet, now)
    if config.scale_to_zero and idle_s >= config.scale_to_zero_idle_s:
        reason = f"no request for {idle_s:.0f}s: scale to zero"
        return Decision(replicas=0, state=state, reason=reason)

    waiting_limit = config.target_waiting_per_replica * max(1, signals.reporting_replicas)
    saturated = signals.waiting > waiting_limit
    slow = (
        signals.ttft_p90_s is not None
        and signals.ttft_p90_s > config.ttft_pressure_ratio * config.ttft_target_s
    )
    wanted = max(fleet.min_replicas, _with_spare(need_beyond_noise, config))
    why = (
        f"demand {signals.demand:.0f} -> {forecast:.0f} in {config.horizon_s:.0f}s "
        f"(arrivals {arrivals:.1f}/s +- {state.arrival_noise:.1f}, {slope * 60:+.2f}/s per "
        f"min), kv {signals.kv_cache_usage:.2f}, need {need_ahead:.2f} "
        f"({need_beyond_noise:.2f} beyond noise)"
    )
    # Distress with nothing starting: the need estimate is too low for this traffic.
    # With replicas starting, adding more would double-count what is already coming.
    if (saturated or slow) and fleet.running_replicas >= target:
        wanted = max(wanted, target + 1)
        why += (
            f"; {'saturated' if saturated else 'slow'}: waiting {signals.waiting:.0f}, "
            f"ttft p90 {signals.ttft_p90_s}"
        )

    if wanted > target:
        return _scale_up(state, wanted, fleet, addable, saturated, now, config, why)
    return _scale_down_or_hold(state, wanted, fleet, signals.waiting, slow, now, config, why)


def _scale_up(
    state: PolicyState,
    wanted: int,
    fleet: FleetView,
    addable: int | None,
    saturated: bool,
    now: float,
    config: AutoscalingConfig,
    why: str,
) -> Decision:
    target = fleet.target_replicas
    since_up = now - state.last_upscale_at if state.last_upscale_at is not None else math.inf
    if since_up < config.upscale_cooldown_s and not saturated:
        return Decision(replicas=target, state=state, reason=f"hold, upscale cooldown: {why}")
    # A queue that grew while saturated is a backlog, not load that stays: sized as load it
    # would order a fleet for the backlog. Growing by a factor per cold start bounds that.
    limits = {
        "max_replicas": fleet.max_replicas,
        "max_upscale_factor": max(
            fleet.min_replicas,
            fleet.running_replicas + 1,
            math.ceil(config.max_upscale_factor * fleet.running_replicas),
        ),
    }
    if addable is not None:
        limits["no free GPUs for more gangs"] = target + addable
    limit, ceiling = min(limits.items(), key=lambda item: item[1])
    replicas = min(wanted, ceiling)
    if replicas <= target:
        return Decision(replicas=target, state=state, reason=f"hold, {limit}: {why}")
    return Decision(
        replicas=replicas,
        state=state.model_copy(update={"last_upscale_at": now}),
        reason=f"up {target}->{replicas}{f' ({limit})' if replicas < wanted else ''}: {why}",
    )


def _scale_down_or_hold(
    state: PolicyState,
    wanted: int,
    fleet: FleetView,
    waiting: float,
    slow: bool,
    now: float,
    config: AutoscalingConfig,
    why: str,
) -> Decision:
    target = fleet.target_replicas
    # The newest sample always counts, even with a downscale delay shorter than a signal period.
    delay_s = config.downscale_delay_s
    window = [s for s in state.samples if s[0] >= now - delay_s] or [state.samples[-1]]
    peak_need = max(need for _, _, need in window)
    # The band on top of the spare replicas: fewer replicas each run a bigger batch, which
    # decodes slower, so the load per replica grows by more than the count shrinks. Never
    # below what the forecast wants now: the next tick would scale right back up.
    enough = max(wanted, _with_spare(peak_need * (1 + config.hysteresis_band), config))
    if enough >= target:
        return Decision(replicas=target, state=state, reason=f"hold: {why}")
    # The window must cover the whole delay, and start after the last scale-up.
    observed_s = now - window[0][0]
    since_up = now - state.last_upscale_at if state.last_upscale_at is not None else math.inf
    since_down = now - state.last_downscale_at if state.last_downscale_at is not None else math.inf
    if min(observed_s + config.signal_period_s, since_up) < delay_s:
        return Decision(replicas=target, state=state, reason=f"hold, downscale delay: {why}")
    if since_down < config.downscale_cooldown_s:
        return Decision(replicas=target, state=state, reason=f"hold, downscale cooldown: {why}")
    # Under one request on average over Serve's window: the queue is empty but for blips.
    if waiting >= 1 or slow:
        return Decision(replicas=target, state=state, reason=f"hold, requests waiting: {why}")
    replicas = max(enough, target - config.max_downscale_step)
    return Decision(
        replicas=replicas,
        state=state.model_copy(update={"last_downscale_at": now}),
        reason=f"down {target}->{replicas}: peak need {peak_need:.2f} over {delay_s:.0f}s; {why}",
    )


def _with_spare(need: float, config: AutoscalingConfig) -> int:
    """Replicas for `need` plus the spare ones; at most as many spare as needed, so a model
    with little traffic does not pay for idle gangs several times over."""
    replicas = math.ceil(need - _EPS)
    return replicas + min(config.spare_replicas, replicas)


def _idle_s(state: PolicyState, fleet: FleetView, now: float) -> float:
    """Seconds without a request. A scale-up restarts the count: Serve scales from zero on a
    request without calling the policy, and that request may be gone before the replica runs."""
    if state.idle_since is None:
        return 0.0
    return now - max(state.idle_since, fleet.last_scale_up_at or state.idle_since)


def _observe(
    state: PolicyState, now: float, arrivals: float, *, idle: bool, config: AutoscalingConfig
) -> PolicyState:
    """Once per signal period: a new sample, and the arrival trend refitted on the window.
    Serve calls the policy ten times a second; the trend only changes with a sample."""
    idle_since = (state.idle_since if state.idle_since is not None else now) if idle else None
    samples, trend, noise = state.samples, state.arrival_trend, state.arrival_noise
    if not samples or now - samples[-1][0] >= config.signal_period_s:
        keep_s = max(config.trend_window_s, config.downscale_delay_s)
        samples = tuple(s for s in samples if s[0] >= now - keep_s) + ((now, arrivals, 0.0),)
        # Serve's means overlap for look_back_period_s: samples that far apart are independent.
        overlap = max(1, math.ceil(config.look_back_period_s / config.signal_period_s - _EPS))
        trend = _rising_trend(
            samples, now, config.trend_window_s, overlap, config.trend_confidence_se
        )
        noise = _sample_noise(samples, now, config.trend_window_s, overlap)
    return state.model_copy(
        update={
            "samples": samples,
            "arrival_trend": trend,
            "arrival_noise": noise,
            "idle_since": idle_since,
        }
    )


def _record_need(state: PolicyState, need: float) -> PolicyState:
    """Keep the most replicas needed within the newest sample's period, for scale-down."""
    t, arrivals, most = state.samples[-1]
    samples = state.samples[:-1] + ((t, arrivals, max(most, need)),)
    return state.model_copy(update={"samples": samples})


def _rising_trend(
    samples: tuple[tuple[float, float, float], ...],
    now: float,
    window_s: float,
    overlap: int = 1,
    confidence_se: float = 0.0,
) -> float:
    """How fast arrivals surely rise (requests/s per second) over the trend window: the
    fitted slope less `confidence_se` standard errors; 0 if they don't rise.

    Arrivals, unlike requests in flight, do not change when the fleet does, so the fleet's
    own scaling never looks like a trend. The slope is Theil-Sen's (the median of pairwise
    slopes): it follows a ramp, and for a step most pairs lie on one side and are flat.
    It counts only when
    * the rise it implies over the window exceeds the noise around it
      (`_TREND_NOISE_MULTIPLE` robust standard deviations of the residuals), so Poisson
      noise orders no replica, and
    * the window's recent half rises too: a step in mid-window, the one case where most
      pairs straddle it, leaves that half flat. A jump in load is provisioned for as it
      is, not extrapolated a cold start ahead.
    Half a window of history is required.

    The standard error is the least-squares one, sigma / sqrt(sum (t - mean t)^2), with the
    residuals' robust sigma, inflated by sqrt(`overlap`): consecutive samples are means over
    overlapping windows, so only every `overlap`-th one is independent.
    """
    points = [(t, arrivals) for t, arrivals, _ in samples if t >= now - window_s]
    if len(points) < 3 or points[-1][0] - points[0][0] < window_s / 2:
        return 0.0
    slope = _theil_sen(points)
    if slope <= 0:
        return 0.0
    intercept = statistics.median(a - slope * t for t, a in points)
    noise = 1.4826 * statistics.median(abs(a - intercept - slope * t) for t, a in points)
    recent_half = [(t, a) for t, a in points if t >= now - window_s / 2]
    rises_out_of_noise = slope * (points[-1][0] - points[0][0]) > _TREND_NOISE_MULTIPLE * noise
    if not rises_out_of_noise or len(recent_half) < 2 or _theil_sen(recent_half) <= 0:
        return 0.0
    mean_t = statistics.fmean(t for t, _ in points)
    spread = math.sqrt(sum((t - mean_t) ** 2 for t, _ in points))
    standard_error = noise * math.sqrt(overlap) / spread
    return max(0.0, slope - confidence_se * standard_error)


def _sample_noise(
    samples: tuple[tuple[float, float, float], ...], now: float, window_s: float, overlap: int
) -> float:
    """Standard deviation of one arrival-rate sample over the window; 0 (no tolerance)
    until half a window of history and 4 pairs, as for the trend.

    From differences of independent samples (`overlap` apart), robustly: a trend shifts
    every difference alike and a step spoils only `overlap` of them, so neither passes for
    noise, as they would around a level or a fitted line.
    """
    points = [(t, arrivals) for t, arrivals, _ in samples if t >= now - window_s]
    rates = [arrivals for _, arrivals in points]
    diffs = [b - a for a, b in zip(rates, rates[overlap:])]
    if len(diffs) < 4 or points[-1][0] - points[0][0] < window_s / 2:
        return 0.0
    center = statistics.median(diffs)
    return 1.4826 * statistics.median(abs(d - center) for d in diffs) / math.sqrt(2)


def _theil_sen(points: list[tuple[float, float]]) -> float:
    return statistics.median(
        (a2 - a1) / (t2 - t1)
        for i, (t1, a1) in enumerate(points)
        for t2, a2 in points[i + 1 :]
        if t2 > t1
    )


class CapacityReader(Protocol):
    def read(self, deployment_id: Any, now: float) -> ClusterCapacity: ...


class LLMAutoscalingPolicy:
    """Serve's entry point: `policy_function: autoscaling.policy:LLMAutoscalingPolicy`.

    Serve builds it once with `policy_kwargs` (an `AutoscalingConfig` dumped to JSON) and
    calls it every control-loop tick. `capacity_reader` is for the simulator; Serve never
    passes it, so the cluster is read through Ray.
    """

    def __init__(self, capacity_reader: CapacityReader | None = None, **config_fields: Any) -> None:
        self.config = AutoscalingConfig.model_validate(config_fields)
        self._capacity_reader = capacity_reader or RayCapacityReader(self.config.capacity_refresh_s)

    def __call__(self, ctx) -> tuple[int, dict[str, Any]]:
        now = ctx.current_time if ctx.current_time is not None else time.time()
        config = self.config
        decision = decide(
            state=PolicyState.model_validate(ctx.policy_state.get(STATE_KEY) or {}),
            signals=self._signals(ctx),
            fleet=FleetView(
                running_replicas=ctx.current_num_replicas,
                target_replicas=ctx.target_num_replicas,
                # With scale to zero Serve's floor is 0; the policy keeps min_replicas itself.
                min_replicas=config.min_replicas
                if config.scale_to_zero
                else ctx.capacity_adjusted_min_replicas,
                max_replicas=ctx.capacity_adjusted_max_replicas,
                last_scale_up_at=ctx.last_scale_up_time,
            ),
            config=config,
            addable=None
            if config.capacity_source == "unbounded"
            else addable_replicas(self._capacity_reader.read(ctx.deployment_id, now), config),
            now=now,
        )
        if decision.replicas != ctx.target_num_replicas:
            logger.info("%s: %s", ctx.deployment_name, decision.reason)
        return decision.replicas, {
            **ctx.policy_state,
            STATE_KEY: decision.state.model_dump(mode="json"),
        }

    @staticmethod
    def _signals(ctx) -> FleetSignals:
        queued = ctx.total_queued_requests or 0.0
        per_replica = replica_stats_from_serve(ctx.aggregated_metrics or {}, ctx.running_replicas)
        if per_replica:
            return fleet_signals(per_replica, handle_queued=queued)
        # Engines that just started have not reported yet: Serve's own counts stand in.
        return FleetSignals(
            reporting_replicas=0,
            running=max(0.0, ctx.total_num_requests - queued),
            waiting=queued,
            kv_cache_usage=0.0,
            arrivals_per_s=0.0,
        )
