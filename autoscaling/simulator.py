"""Replay a request trace against a fleet of LLM replicas under one scaling controller.

The model, per tick of `trace.tick_s` (1 s):
* Requests wait in one FIFO queue (Serve's router keeps replicas evenly loaded, so the
  fleet is treated as one pool of identical replicas; per-replica numbers are pool / count).
* A replica runs at most `max_num_seqs` requests, and only while the KV cache holds their
  prompt + output tokens. Admission is strictly FIFO, as vLLM's scheduler is.
* Admitted prompts queue for prefill at `prefill_tokens_per_s`; prefill time is taken from
  decoding (chunked prefill shares the GPUs). Decoding gives every running request one
  token per step of `decode_step_base_s + decode_step_per_seq_s x batch`.
* Completions are fluid: a class's running requests finish at (tokens/s each) / (mean
  output tokens) per second, rounded by an accumulator so counts stay whole.
* TTFT = queueing delay + the prompt's place in the replica's prefill queue + one step.
* A replica asked for waits for GPUs (pending, not billed), then starts for `cold_start_s`
  (billed), then serves. A released replica first drains: no new requests, its running
  ones finish, billed until empty. Scale-downs take pending, then starting (newest first),
  then serving replicas, as Serve does.
* The initial fleet first serves the trace's first `warmup_s` unmeasured, so every run
  starts in steady state.
* The controller sees what Serve's controller sees: metrics averaged over the last 30 s
  (look_back_period_s) and refreshed every 10 s (the push interval), and is asked for a
  target every `decision_period_s`.
"""

from __future__ import annotations

import math
from collections import Counter, deque
from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field

from autoscaling.traces import Trace


class ReplicaModel(BaseModel):
    """One replica of a Kimi-K2.5-class model on 8 x H200 (assumptions, not measurements)."""

    model_config = ConfigDict(frozen=True)

    gpus: int = Field(8, description="TP 8 x PP 1, the planner's layout for kimi-k2.5 on H200")
    max_num_seqs: int = Field(64, description="batch slots")
    decode_step_base_s: float = Field(0.015, description="one decode step at batch 1 (~67 tok/s)")
    decode_step_per_seq_s: float = Field(
        0.0001, description="added per running request: batch 64 -> 21.4 ms/step, ~3,000 tok/s"
    )
    prefill_tokens_per_s: float = Field(
        40_000, description="prompt tokens per second per replica (~32B active parameters)"
    )
    kv_cache_tokens: int = Field(
        667_696, description="`python -m cluster plan kimi-k2.5 --gpu H200` (int4, MLA latent cache)"
    )
    weights_gb: float = Field(595.1, description="the int4 checkpoint, per the planner")
    weight_load_gb_per_s: float = Field(1.5, description="shared storage to 8 GPUs, effective")
    provision_s: float = Field(120, description="placement group, container, Ray workers")
    warmup_s: float = Field(90, description="CUDA graphs and compilation after the weights")

    @property
    def cold_start_s(self) -> float:
        return self.provision_s + self.weights_gb / self.weight_load_gb_per_s + self.warmup_s

    def step_s(self, batch: float) -> float:
        return self.decode_step_base_s + self.decode_step_per_seq_s * batch


class Cluster(BaseModel):
    model_config = ConfigDict(frozen=True)

    nodes: int = Field(32, ge=1, description="nodes of `gpus_per_node` GPUs")
    gpus_per_node: int = Field(8, ge=1)


class Observation(BaseModel):
    """What a controller sees at a decision: Serve's view of the deployment."""

    model_config = ConfigDict(frozen=True)

    now: float
    running_replicas: int
    target_replicas: int
    waiting_for_gpus: int = Field(description="replicas asked for that no node can place yet")
    running_per_replica: float
    waiting_per_replica: float
    arrivals_per_replica_per_s: float
    handle_queued: float = Field(description="requests queued while no replica runs")
    kv_cache_usage: float
    ttft_p90_s: float | None
    free_gpus_per_node: tuple[float, ...]
    last_scale_up_at: float | None


class Controller(Protocol):
    name: str

    def target(self, observation: Observation) -> int: ...


class TimelinePoint(BaseModel):
    model_config = ConfigDict(frozen=True)

    t_s: float
    target: int
    serving: int
    starting: int
    draining: int
    queued: int
    running: int
    arrival_rate: float


class SimResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    policy: str
    trace: str
    requests: int
    slo_met_share: float = Field(description="share of requests whose TTFT met the target")
    p99_queue_delay_s: float
    gpu_hours: float
    scale_ups: int
    scale_downs: int
    reversals: int = Field(
        description="scale-ups less than one cold start after a scale-down: thrash, a released "
        "replica asked back before it could even have restarted"
    )
    peak_replicas: int
    unserved_at_end: int = Field(description="requests still queued when the trace ended (counted as misses)")
    timeline: tuple[TimelinePoint, ...]


class _WindowMean:
    """Mean of the last `size` per-tick values."""

    __slots__ = ("values",)

    def __init__(self, size: int) -> None:
        self.values: deque[float] = deque(maxlen=size)

    def add(self, value: float) -> None:
        self.values.append(value)

    def mean(self) -> float:
        return sum(self.values) / len(self.values)


class _Draining:
    """Replicas released by a scale-down: they finish what they run, then free their GPUs."""

    __slots__ = ("replicas", "running", "acc")

    def __init__(self, replicas: int, running: list[int]) -> None:
        self.replicas = replicas
        self.running = running
        self.acc = [0.0] * len(running)


def simulate(
    trace: Trace,
    controller: Controller,
    *,
    initial_replicas: int,
    ttft_target_s: float,
    replica: ReplicaModel = ReplicaModel(),
    cluster: Cluster = Cluster(),
    decision_period_s: float = 5.0,
    metrics_push_s: float = 10.0,
    look_back_s: float = 30.0,
    ttft_window_s: float = 60.0,
    timeline_period_s: float = 60.0,
    warmup_s: float = 600.0,
) -> SimResult:
    dt = trace.tick_s
    classes = trace.classes
    n_classes = len(classes)
    prompt = [c.prompt_tokens for c in classes]
    output = [c.output_tokens for c in classes]
    kv_need = [c.prompt_tokens + c.output_tokens for c in classes]
    slots, kv_tokens, prefill_rate = replica.max_num_seqs, replica.kv_cache_tokens, replica.prefill_tokens_per_s
    cold_start = replica.cold_start_s
    replicas_per_node = cluster.gpus_per_node // replica.gpus
    placeable_total = cluster.nodes * replicas_per_node

    # Fleet: serving pool, starting (ready times, oldest first), pending, draining.
    serving = initial_replicas
    starting: list[float] = []
    pending = 0
    draining: list[_Draining] = []
    target = initial_replicas
    running = [0] * n_classes
    acc = [0.0] * n_classes
    prefill_backlog = 0.0

    queue: deque[list[int]] = deque()  # [arrival tick, class, count]
    queued = 0
    wait_ticks: Counter[int] = Counter()
    met = 0.0
    recent_ttft: deque[tuple[float, float, int]] = deque()  # (time, ttft, requests)

    # Serve's view: each metric's mean over the last `look_back_s`, as Serve aggregates it.
    window = max(1, round(look_back_s / dt))
    windows = {name: _WindowMean(window) for name in ("running", "waiting", "kv", "arrivals")}
    seen: dict = {}
    last_scale_up_at: float | None = None
    last_scale_down_at = -math.inf
    ups = downs = reversals = 0
    peak = initial_replicas
    gpu_seconds = 0.0
    timeline: list[TimelinePoint] = []
    decide_every = max(1, round(decision_period_s / dt))
    push_every = max(1, round(metrics_push_s / dt))
    timeline_every = max(1, round(timeline_period_s / dt))

    # Warm-up: the initial fleet serves the trace's first minutes before the clock starts, so
    # the run begins in steady state and no controller mistakes a filling fleet for a trend.
    warmup_ticks = min(len(trace.arrivals), round(warmup_s / dt))
    for step_index in range(warmup_ticks + len(trace.arrivals)):
        tick = step_index - warmup_ticks
        measured = tick >= 0
        arrivals = trace.arrivals[tick if measured else step_index]
        now = tick * dt
        for c, count in enumerate(arrivals):
            if count:
                queue.append([tick, c, count])
                queued += count

        # Lifecycle: started replicas begin serving; waiting ones get GPUs as they free up.
        while starting and starting[0] <= now:
            starting.pop(0)
            serving += 1
        placed = serving + len(starting) + sum(d.replicas for d in draining)
        while pending and placed < placeable_total:
            pending -= 1
            placed += 1
            starting.append(now + cold_start)

        # Admission, FIFO, into free batch slots and KV cache.
        if serving and queue:
            room = serving * slots - sum(running)
            kv_free = serving * kv_tokens - sum(r * k for r, k in zip(running, kv_need))
            while queue and room > 0:
                head = queue[0]
                arrived, c, count = head
                take = min(count, room, int(kv_free // kv_need[c]))
                if take <= 0:
                    break
                wait = (tick - arrived) * dt
                per_replica_backlog = prefill_backlog / serving
                step = replica.step_s(sum(running) / serving)
                if arrived >= 0:
                    wait_ticks[tick - arrived] += take
                    # The j-th prompt a replica gets starts decoding after j prompts of prefill.
                    fits = ((ttft_target_s - wait - step) * prefill_rate - per_replica_backlog) / prompt[c]
                    met += min(take, max(0.0, serving * fits))
                share = take / serving
                recent_ttft.append(
                    (now, wait + step + (per_replica_backlog + prompt[c] * (share + 1) / 2) / prefill_rate, take)
                )
                prefill_backlog += take * prompt[c]
                running[c] += take
                room -= take
                kv_free -= take * kv_need[c]
                queued -= take
                if take == count:
                    queue.popleft()
                else:
                    head[2] = count - take

        # Service.
        if serving:
            prefilled = min(prefill_backlog, serving * prefill_rate * dt)
            prefill_backlog -= prefilled
            decode_s = dt - prefilled / (serving * prefill_rate)
            _decode(running, acc, output, decode_s / replica.step_s(sum(running) / serving))
        for d in draining:
            _decode(d.running, d.acc, output, dt / replica.step_s(sum(d.running) / d.replicas))
        draining = [d for d in draining if any(d.running)]

        if measured:
            billed = serving + len(starting) + sum(d.replicas for d in draining)
            gpu_seconds += billed * replica.gpus * dt

        # What Serve's controller would know.
        windows["arrivals"].add(sum(arrivals))
        windows["running"].add(sum(running))
        windows["waiting"].add(queued)
        windows["kv"].add(
            sum(r * k for r, k in zip(running, kv_need)) / (serving * kv_tokens) if serving else 0.0
        )
        if tick % push_every == 0:
            while recent_ttft and recent_ttft[0][0] < now - ttft_window_s:
                recent_ttft.popleft()
            seen = {name: w.mean() for name, w in windows.items()}
            seen["ttft"] = _p90(recent_ttft)

        if not measured:
            continue
        if tick % decide_every == 0:
            observation = Observation(
                now=now,
                running_replicas=serving,
                target_replicas=target,
                waiting_for_gpus=pending,
                running_per_replica=seen["running"] / serving if serving else 0.0,
                waiting_per_replica=seen["waiting"] / serving if serving else 0.0,
                arrivals_per_replica_per_s=seen["arrivals"] / dt / serving if serving else 0.0,
                handle_queued=0.0 if serving else seen["waiting"],
                kv_cache_usage=seen["kv"],
                ttft_p90_s=seen["ttft"],
                free_gpus_per_node=_free_gpus_per_node(cluster, replica, placed),
                last_scale_up_at=last_scale_up_at,
            )
            wanted = controller.target(observation)
            if wanted != target:
                if wanted > target:
                    ups += 1
                    reversals += now - last_scale_down_at < cold_start
                    last_scale_up_at = now
                else:
                    downs += 1
                    last_scale_down_at = now
                target = wanted
                peak = max(peak, target)
                serving, pending, running, acc, prefill_backlog = _reconcile(
                    target, serving, starting, pending, draining, running, acc, prefill_backlog
                )

        if tick % timeline_every == 0:
            timeline.append(
                TimelinePoint(
                    t_s=now,
                    target=target,
                    serving=serving,
                    starting=len(starting) + pending,
                    draining=sum(d.replicas for d in draining),
                    queued=queued,
                    running=sum(running),
                    arrival_rate=sum(trace.rates[tick]),
                )
            )

    end_tick = len(trace.arrivals)
    for arrived, _, count in queue:
        wait_ticks[end_tick - arrived] += count
    requests = trace.total_requests
    return SimResult(
        policy=controller.name,
        trace=trace.name,
        requests=requests,
        slo_met_share=met / requests if requests else 1.0,
        p99_queue_delay_s=_percentile_ticks(wait_ticks, 0.99) * dt,
        gpu_hours=gpu_seconds / 3600,
        scale_ups=ups,
        scale_downs=downs,
        reversals=reversals,
        peak_replicas=peak,
        unserved_at_end=queued,
        timeline=tuple(timeline),
    )


def _decode(running: list[int], acc: list[float], output: list[int], tokens_each: float) -> None:
    """Finish the requests whose output this many tokens per request completes."""
    for c, n in enumerate(running):
        if not n:
            continue
        acc[c] += n * tokens_each / output[c]
        done = min(n, int(acc[c]))
        acc[c] -= done
        running[c] = n - done
        if running[c] == 0:
            acc[c] = 0.0


def _reconcile(
    target: int,
    serving: int,
    starting: list[float],
    pending: int,
    draining: list[_Draining],
    running: list[int],
    acc: list[float],
    prefill_backlog: float,
) -> tuple[int, int, list[int], list[float], float]:
    """Add or remove replicas to reach `target`, in Serve's order of removal."""
    live = serving + len(starting) + pending
    if target > live:
        return serving, pending + target - live, running, acc, prefill_backlog
    excess = live - target
    dropped = min(pending, excess)
    pending -= dropped
    excess -= dropped
    while excess and starting:
        starting.pop()  # newest first
        excess -= 1
    if excess and serving:
        leaving = min(excess, serving)
        # The leaving replicas take their share of the pool's running requests along.
        moved = [n * leaving // serving for n in running]
        if any(moved):
            draining.append(_Draining(leaving, moved))
        running = [n - m for n, m in zip(running, moved)]
        prefill_backlog *= (serving - leaving) / serving
        serving -= leaving
    return serving, pending, running, acc, prefill_backlog


def _free_gpus_per_node(cluster: Cluster, replica: ReplicaModel, placed: int) -> tuple[float, ...]:
    used_nodes, partial = divmod(placed * replica.gpus, cluster.gpus_per_node)
    free = [float(cluster.gpus_per_node)] * (cluster.nodes - used_nodes)
    if partial and free:
        free[0] -= partial
    return tuple(free)


def _p90(samples: deque[tuple[float, float, int]]) -> float | None:
    total = sum(n for _, _, n in samples)
    if not total:
        return None
    seen = 0
    for _, ttft, n in sorted(samples, key=lambda s: s[1]):
        seen += n
        if seen >= 0.9 * total:
            return ttft
    return None


def _percentile_ticks(counts: Counter[int], q: float) -> int:
    total = sum(counts.values())
    if not total:
        return 0
    seen = 0
    for ticks in sorted(counts):
        seen += counts[ticks]
        if seen >= q * total:
            return ticks
    return max(counts)
