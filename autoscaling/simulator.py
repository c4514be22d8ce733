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
        667_696,
        description="`python -m cluster plan kimi-k2.5 --gpu H200` (int4, MLA latent cache)",
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
    unserved_at_end: int = Field(
        description="requests still queued when the trace ended (counted as misses)"
    )
    carried_in: int = Field(
        description="requests running or queued from the warm-up when the trace began"
    )
    completed: int = Field(description="requests that finished during the trace")
    in_flight_at_end: int = Field(
        description="requests still running, on serving or draining replicas"
    )
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


class _Requests:
    """The FIFO queue and what became of each request: queueing delay and TTFT."""

    def __init__(self, ttft_target_s: float) -> None:
        self.ttft_target_s = ttft_target_s
        self.queue: deque[list[int]] = deque()  # [arrival tick, class, count]
        self.queued = 0
        self.wait_ticks: Counter[int] = Counter()
        self.met = 0.0
        self.recent_ttft: deque[tuple[float, float, int]] = deque()  # (time, ttft, requests)

    def arrive(self, tick: int, arrivals: tuple[int, ...]) -> None:
        for c, count in enumerate(arrivals):
            if count:
                self.queue.append([tick, c, count])
                self.queued += count

    def admitted(
        self,
        tick: int,
        now: float,
        dt: float,
        arrived: int,
        take: int,
        prompt: int,
        replicas: int,
        backlog_per_replica: float,
        step_s: float,
        prefill_rate: float,
    ) -> None:
        """Account `take` requests that left the queue, spread over `replicas` replicas."""
        wait = (tick - arrived) * dt
        if arrived >= 0:  # warm-up requests are not measured
            self.wait_ticks[tick - arrived] += take
            # The j-th prompt a replica gets starts decoding after j prompts of prefill.
            prefill_budget = (self.ttft_target_s - wait - step_s) * prefill_rate
            fits = (prefill_budget - backlog_per_replica) / prompt
            self.met += min(take, max(0.0, replicas * fits))
        # The middle one of the prompts each replica got stands for them all.
        middle_prefill = backlog_per_replica + prompt * (take / replicas + 1) / 2
        self.recent_ttft.append((now, wait + step_s + middle_prefill / prefill_rate, take))
        self.queued -= take

    def ttft_p90(self, now: float, window_s: float) -> float | None:
        while self.recent_ttft and self.recent_ttft[0][0] < now - window_s:
            self.recent_ttft.popleft()
        return _p90(self.recent_ttft)


class _Fleet:
    """The replicas: pending (no GPUs yet), starting, serving as one pool, draining."""

    def __init__(self, replica: ReplicaModel, classes: tuple, serving: int) -> None:
        self.replica = replica
        self.prompt = [c.prompt_tokens for c in classes]
        self.output = [c.output_tokens for c in classes]
        self.kv_need = [c.prompt_tokens + c.output_tokens for c in classes]
        self.serving = serving
        self.starting: list[float] = []  # ready times, oldest first
        self.pending = 0
        self.draining: list[_Draining] = []
        self.running = [0] * len(classes)
        self.acc = [0.0] * len(classes)
        self.prefill_backlog = 0.0

    @property
    def placed(self) -> int:
        return self.serving + len(self.starting) + self.draining_replicas

    @property
    def draining_replicas(self) -> int:
        return sum(d.replicas for d in self.draining)

    @property
    def in_flight(self) -> int:
        return sum(self.running) + sum(sum(d.running) for d in self.draining)

    def kv_usage(self) -> float:
        if not self.serving:
            return 0.0
        used = sum(r * k for r, k in zip(self.running, self.kv_need))
        return used / (self.serving * self.replica.kv_cache_tokens)

    def advance_lifecycle(self, now: float, placeable: int) -> None:
        """Started replicas begin serving; pending ones get GPUs as they free up."""
        while self.starting and self.starting[0] <= now:
            self.starting.pop(0)
            self.serving += 1
        placed = self.placed
        while self.pending and placed < placeable:
            self.pending -= 1
            placed += 1
            self.starting.append(now + self.replica.cold_start_s)

    def admit(self, requests: _Requests, tick: int, now: float, dt: float) -> None:
        """FIFO into free batch slots and KV cache, as vLLM's scheduler admits."""
        if not (self.serving and requests.queue):
            return
        replica = self.replica
        room = self.serving * replica.max_num_seqs - sum(self.running)
        kv_free = self.serving * replica.kv_cache_tokens - sum(
            r * k for r, k in zip(self.running, self.kv_need)
        )
        while requests.queue and room > 0:
            head = requests.queue[0]
            arrived, c, count = head
            take = min(count, room, int(kv_free // self.kv_need[c]))
            if take <= 0:
                break
            requests.admitted(
                tick,
                now,
                dt,
                arrived,
                take,
                self.prompt[c],
                self.serving,
                backlog_per_replica=self.prefill_backlog / self.serving,
                step_s=replica.step_s(sum(self.running) / self.serving),
                prefill_rate=replica.prefill_tokens_per_s,
            )
            self.prefill_backlog += take * self.prompt[c]
            self.running[c] += take
            room -= take
            kv_free -= take * self.kv_need[c]
            if take == count:
                requests.queue.popleft()
            else:
                head[2] = count - take

    def serve(self, dt: float) -> int:
        """One tick of prefill and decoding; the requests that finished."""
        replica, finished = self.replica, 0
        if self.serving:
            prefill_rate = replica.prefill_tokens_per_s
            prefilled = min(self.prefill_backlog, self.serving * prefill_rate * dt)
            self.prefill_backlog -= prefilled
            decode_s = dt - prefilled / (self.serving * prefill_rate)
            step_s = replica.step_s(sum(self.running) / self.serving)
            finished += _decode(self.running, self.acc, self.output, decode_s / step_s)
        for d in self.draining:
            step_s = replica.step_s(sum(d.running) / d.replicas)
            finished += _decode(d.running, d.acc, self.output, dt / step_s)
        self.draining = [d for d in self.draining if any(d.running)]
        return finished

    def reconcile(self, target: int) -> None:
        """Add or remove replicas to reach `target`, in Serve's order of removal."""
        live = self.serving + len(self.starting) + self.pending
        if target > live:
            self.pending += target - live
            return
        excess = live - target
        dropped = min(self.pending, excess)
        self.pending -= dropped
        excess -= dropped
        while excess and self.starting:
            self.starting.pop()  # newest first
            excess -= 1
        if excess and self.serving:
            leaving = min(excess, self.serving)
            # The leaving replicas take their share of the pool's running requests along.
            moved = [n * leaving // self.serving for n in self.running]
            if any(moved):
                self.draining.append(_Draining(leaving, moved))
            self.running = [n - m for n, m in zip(self.running, moved)]
            self.prefill_backlog *= (self.serving - leaving) / self.serving
            self.serving -= leaving


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
    fleet = _Fleet(replica, trace.classes, initial_replicas)
    requests = _Requests(ttft_target_s)
    placeable = cluster.nodes * (cluster.gpus_per_node // replica.gpus)
    target = peak = initial_replicas

    # Serve's view: each metric's mean over the last `look_back_s`, as Serve aggregates it.
    window_ticks = max(1, round(look_back_s / dt))
    windows = {name: _WindowMean(window_ticks) for name in ("running", "waiting", "kv", "arrivals")}
    seen: dict = {}
    last_scale_up_at: float | None = None
    last_scale_down_at = -math.inf
    ups = downs = reversals = carried_in = completed = 0
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
        if tick == 0:
            carried_in = requests.queued + fleet.in_flight
        requests.arrive(tick, arrivals)
        fleet.advance_lifecycle(now, placeable)
        fleet.admit(requests, tick, now, dt)
        finished = fleet.serve(dt)
        if measured:
            completed += finished
            gpu_seconds += fleet.placed * replica.gpus * dt

        windows["arrivals"].add(sum(arrivals))
        windows["running"].add(sum(fleet.running))
        windows["waiting"].add(requests.queued)
        windows["kv"].add(fleet.kv_usage())
        if tick % push_every == 0:
            seen = {name: w.mean() for name, w in windows.items()}
            seen["ttft"] = requests.ttft_p90(now, ttft_window_s)

        if not measured:
            continue
        if tick % decide_every == 0:
            serving = fleet.serving
            wanted = controller.target(
                Observation(
                    now=now,
                    running_replicas=serving,
                    target_replicas=target,
                    waiting_for_gpus=fleet.pending,
                    running_per_replica=seen["running"] / serving if serving else 0.0,
                    waiting_per_replica=seen["waiting"] / serving if serving else 0.0,
                    arrivals_per_replica_per_s=seen["arrivals"] / dt / serving if serving else 0.0,
                    handle_queued=0.0 if serving else seen["waiting"],
                    kv_cache_usage=seen["kv"],
                    ttft_p90_s=seen["ttft"],
                    free_gpus_per_node=_free_gpus_per_node(cluster, replica, fleet.placed),
                    last_scale_up_at=last_scale_up_at,
                )
            )
            if wanted > target:
                ups += 1
                reversals += now - last_scale_down_at < replica.cold_start_s
                last_scale_up_at = now
            elif wanted < target:
                downs += 1
                last_scale_down_at = now
            if wanted != target:
                target = wanted
                peak = max(peak, target)
                fleet.reconcile(target)

        if tick % timeline_every == 0:
            timeline.append(
                TimelinePoint(
                    t_s=now,
                    target=target,
                    serving=fleet.serving,
                    starting=len(fleet.starting) + fleet.pending,
                    draining=fleet.draining_replicas,
                    queued=requests.queued,
                    running=sum(fleet.running),
                    arrival_rate=sum(trace.rates[tick]),
                )
            )

    end_tick = len(trace.arrivals)
    for arrived, _, count in requests.queue:
        requests.wait_ticks[end_tick - arrived] += count
    total = trace.total_requests
    return SimResult(
        policy=controller.name,
        trace=trace.name,
        requests=total,
        slo_met_share=requests.met / total if total else 1.0,
        p99_queue_delay_s=_percentile_ticks(requests.wait_ticks, 0.99) * dt,
        gpu_hours=gpu_seconds / 3600,
        scale_ups=ups,
        scale_downs=downs,
        reversals=reversals,
        peak_replicas=peak,
        unserved_at_end=requests.queued,
        carried_in=carried_in,
        completed=completed,
        in_flight_at_end=fleet.in_flight,
        timeline=tuple(timeline),
    )


def _decode(running: list[int], acc: list[float], output: list[int], tokens_each: float) -> int:
    """Finish the requests whose output this many tokens per request completes; how many did."""
    finished = 0
    for c, n in enumerate(running):
        if not n:
            continue
        acc[c] += n * tokens_each / output[c]
        done = min(n, int(acc[c]))
        acc[c] -= done
        running[c] = n - done
        finished += done
        if running[c] == 0:
            acc[c] = 0.0
    return finished


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
