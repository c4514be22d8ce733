"""Replay the four traces against every policy; write results.md, results.json and timeline.png.

Run from the repository root (about two minutes on one core):

    .venv/bin/python -m bench.autoscaling.run_sim
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

from autoscaling import traces
from autoscaling.comparison import (
    GPU_HOURS_GOAL,
    ORACLE_UTILIZATION_GRID,
    RAY_TARGET_GRID,
    SLO_GOAL,
    Setup,
    TraceComparison,
    cheapest_oracle,
    compare,
    ours,
    ray_default,
    tune_ray_target,
)
from autoscaling.simulator import SimResult
from autoscaling.traces import Trace

OUT = Path(__file__).resolve().parent
BURST_RAMPS_MIN = (15, 30, 60, 120)
BURST_SEEDS = (3, 4, 5, 6, 7)
# One knob at a time away from the defaults, on the burst: what each buys and costs.
KNOB_VARIANTS = (
    {"trend_confidence_se": 0.0, "upscale_noise_tolerance": 0.0},
    {"trend_confidence_se": 0.0},
    {"trend_confidence_se": 2.0},
    {"upscale_noise_tolerance": 0.0},
    {"upscale_noise_tolerance": 3.0},
    {"spare_replicas": 0},
    {"spare_replicas": 1},
    {"spare_replicas": 3},
    {"target_ongoing_requests_per_replica": 48.0},
    {"target_ongoing_requests_per_replica": 64.0},
    {"hysteresis_band": 0.1},
    {"hysteresis_band": 0.3},
    {"downscale_delay_s": 300.0},
    {"downscale_delay_s": 900.0},
    {"trend_window_s": 180.0},
    {"trend_window_s": 600.0},
)


def main() -> None:
    setup = Setup()
    steady = traces.steady()
    ray_target, ray_on_steady = tune_ray_target(steady, setup)
    headline = [steady, traces.diurnal(), traces.burst(), traces.long_context_wave()]
    comparisons = [compare(trace, ray_target, setup) for trace in headline]
    ramps = [compare(traces.burst(ramp_up_s=m * 60.0), ray_target, setup) for m in BURST_RAMPS_MIN]
    seeds = [compare(traces.burst(seed=seed), ray_target, setup) for seed in BURST_SEEDS]
    ray_on_burst = _ray_grid(traces.burst(), setup)
    knobs = _knob_variants(traces.burst(), setup)
    info = _run_info()

    sections = [
        _header(info),
        _goal_section(comparisons[2], seeds),
        _traces_section(comparisons, ray_target),
        _ramp_section(ramps, setup),
        _knob_section(knobs, comparisons[2]),
        _ray_section(ray_target, ray_on_steady, ray_on_burst),
        _assumptions(setup),
    ]
    (OUT / "results.md").write_text("\n".join(line for section in sections for line in section))
    (OUT / "results.json").write_text(
        json.dumps(
            {
                "run": info,
                "ray_target_ongoing_requests": ray_target,
                "traces": [_json(c) for c in comparisons],
                "burst_ramp_sweep": [_json(c) for c in ramps],
                "burst_seed_sweep": [_json(c) for c in seeds],
                "ray_grid_on_burst": [_summary(r) for r in ray_on_burst],
                "ours_knob_variants_on_burst": [
                    {"knobs": changed, **_summary(r)} for changed, r in knobs
                ],
            },
            indent=1,
        )
    )
    _plot(comparisons, OUT / "timeline.png")
    print((OUT / "results.md").read_text())


def _ray_grid(trace: Trace, setup: Setup) -> list[SimResult]:
    initial = cheapest_oracle(trace, setup)[0].initial_replicas()
    return [setup.run(trace, ray_default(t, setup), initial) for t in RAY_TARGET_GRID]


def _knob_variants(trace: Trace, setup: Setup) -> list[tuple[dict, SimResult]]:
    initial = cheapest_oracle(trace, setup)[0].initial_replicas()
    return [
        (changed, setup.run(trace, ours(setup, **changed), initial))
        for changed in ({}, *KNOB_VARIANTS)
    ]


def _run_info() -> dict:
    import ray

    try:
        commit = _git("rev-parse", "HEAD")
        # This script's own outputs do not count: a rerun finds the last run's there.
        outputs = (":!bench/autoscaling/results.*", ":!bench/autoscaling/timeline.png")
        if _git("status", "--porcelain", "--", "autoscaling", "bench/autoscaling", *outputs):
            commit += " + uncommitted changes to autoscaling/ or bench/autoscaling/"
    except (OSError, subprocess.CalledProcessError):
        commit = None
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}",
        "python": sys.version.split()[0],
        "ray": ray.__version__,
        "commit": commit,
    }


def _git(*args: str) -> str:
    root = OUT.parent.parent
    done = subprocess.run(["git", *args], capture_output=True, text=True, check=True, cwd=root)
    return done.stdout.strip()


def _summary(result: SimResult) -> dict:
    return result.model_dump(exclude={"timeline"})


def _json(c: TraceComparison) -> dict:
    goal = c.goal()
    return {
        "trace": c.trace,
        "description": c.description,
        "oracle_utilization": c.oracle_utilization,
        "results": [_summary(r) for r in c.results],
        "goal": {**goal.model_dump(), "met": goal.met},
    }


def _table(headers: list[str], rows: list[list[str]]) -> list[str]:
    return [
        "| " + " | ".join(headers) + " |",
        "|" + "---|" * len(headers),
        *("| " + " | ".join(row) + " |" for row in rows),
        "",
    ]


def _pct(share: float) -> str:
    return f"{100 * share:.2f}%"


def _ratio(c: TraceComparison, result: SimResult, digits: int = 2) -> str:
    return f"{result.gpu_hours / c.oracle.gpu_hours:.{digits}f}"


def _header(info: dict) -> list[str]:
    return [
        "# Autoscaling policies on replayed traces",
        "",
        f"Generated by `python -m bench.autoscaling.run_sim` on {info['date']}; machine: "
        f"{info['machine']}; Python {info['python']}, Ray {info['ray']}; commit: "
        f"{info['commit'] or 'none (uncommitted tree)'}. Simulated, not measured on GPUs: "
        "the assumptions are at the end.",
        "",
    ]


def _goal_section(burst: TraceComparison, seeds: list[TraceComparison]) -> list[str]:
    goal = burst.goal()
    checks = [
        (f">= {100 * SLO_GOAL:.0f}% of requests within the TTFT target", goal.slo_met,
         _pct(burst.ours.slo_met_share)),
        (f"<= {GPU_HOURS_GOAL}x the oracle's GPU-hours", goal.cost_met,
         f"{goal.gpu_hours_ratio:.3f}x"),
        ("more requests within target than Ray's default", goal.better_than_ray_on_slo,
         f"{_pct(burst.ours.slo_met_share)} vs {_pct(burst.ray.slo_met_share)}"),
        ("fewer GPU-hours than Ray's default", goal.better_than_ray_on_gpu_hours,
         f"{burst.ours.gpu_hours:.0f} vs {burst.ray.gpu_hours:.0f}"),
    ]
    rows = [
        [str(seed), _pct(c.ours.slo_met_share), _ratio(c, c.ours, 3), _pct(c.ray.slo_met_share),
         _ratio(c, c.ray), "met" if c.goal().met else "missed"]
        for seed, c in zip(BURST_SEEDS, seeds)
    ]
    return [
        "## Goal on the burst trace",
        "",
        f"Trace: {burst.description}.",
        "",
        *(f"- {'met' if ok else '**missed**'}: {name} ({value})" for name, ok, value in checks),
        "",
        "The same trace with its Poisson arrivals redrawn:",
        "",
        *_table(
            ["seed", "ours: within target", "ours: x oracle GPU-hours", "Ray: within target",
             "Ray: x oracle", "goal"],
            rows,
        ),
    ]


def _traces_section(comparisons: list[TraceComparison], ray_target: float) -> list[str]:
    lines = [
        "## Results per trace",
        "",
        "Ray's default is `replica_queue_length_autoscaling_policy` with "
        f"target_ongoing_requests={ray_target:g} (tuning below) and Ray's other defaults "
        "(upscale_delay_s 30, downscale_delay_s 600); ours is `LLMAutoscalingPolicy` with the "
        "`AutoscalingConfig` defaults; both run through Serve 2.60's own decision wrapper. The "
        "fixed fleet is the oracle's peak for the whole trace. Reversals are scale-ups less "
        "than one cold start after a scale-down (thrash).",
        "",
    ]
    for c in comparisons:
        rows = [
            [r.policy, _pct(r.slo_met_share), f"{r.p99_queue_delay_s:.0f}", f"{r.gpu_hours:.0f}",
             _ratio(c, r), f"{r.scale_ups} / {r.scale_downs}", str(r.reversals),
             str(r.peak_replicas)]
            for r in c.results
        ]
        lines += [
            f"### {c.trace}",
            "",
            f"{c.description}; {c.ours.requests:,} requests. "
            f"Oracle utilization {c.oracle_utilization:g}.",
            "",
            *_table(
                ["policy", "requests within TTFT target", "p99 queueing delay (s)", "GPU-hours",
                 "x oracle", "scale-ups / downs", "reversals", "peak replicas"],
                rows,
            ),
        ]
    return lines


def _ramp_section(ramps: list[TraceComparison], setup: Setup) -> list[str]:
    rows = [
        [f"{m} min", _pct(c.ours.slo_met_share), _ratio(c, c.ours), _pct(c.ray.slo_met_share),
         _ratio(c, c.ray), _ratio(c, c.fixed), "met" if c.goal().met else "missed"]
        for m, c in zip(BURST_RAMPS_MIN, ramps)
    ]
    return [
        "## Burst: how fast can a 5x burst rise?",
        "",
        "The same burst with its ramp-up time varied. A replica asked for when a ramp becomes "
        f"visible serves {setup.replica.cold_start_s / 60:.0f} min later; until then only the "
        "spare capacity absorbs the rise, so no causal policy keeps up with a steep enough "
        "ramp short of holding the peak's fleet all day. The oracle orders ahead and always "
        "keeps up.",
        "",
        *_table(
            ["ramp-up", "ours: within target", "ours: x oracle", "Ray: within target",
             "Ray: x oracle", "fixed: x oracle", "goal"],
            rows,
        ),
    ]


def _knob_section(knobs: list[tuple[dict, SimResult]], burst: TraceComparison) -> list[str]:
    rows = [
        [", ".join(f"{k}={v:g}" for k, v in changed.items()) or "none (defaults)",
         _pct(r.slo_met_share), _ratio(burst, r, 3), f"{r.scale_ups} / {r.scale_downs}",
         str(r.reversals)]
        for changed, r in knobs
    ]
    return [
        "## Our knobs on the burst, one at a time",
        "",
        "Where the GPU-hours above the oracle's go, and what each knob buys with them. The "
        "spare replicas carry the first minutes of the ramp (without them the fleet saturates "
        "before the trend shows); the scale-down delay is the price of never releasing a "
        "replica that would be needed again before it could restart. A scale-up is held for "
        "that delay, so one ordered on noise costs a replica for 10 min: with "
        "trend_confidence_se=0 and upscale_noise_tolerance=0 (the policy before they existed) "
        "every upward error of the fitted trend and every blip of the level ordered one.",
        "",
        *_table(
            ["change from the defaults", "within target", "x oracle GPU-hours",
             "scale-ups / downs", "reversals"],
            rows,
        ),
    ]


def _ray_section(
    ray_target: float, on_steady: list[SimResult], on_burst: list[SimResult]
) -> list[str]:
    rows = [
        [f"{t:g}", _pct(s.slo_met_share), f"{s.gpu_hours:.0f}", _pct(b.slo_met_share),
         f"{b.gpu_hours:.0f}"]
        for t, s, b in zip(RAY_TARGET_GRID, on_steady, on_burst)
    ]
    return [
        "## Ray's default: target_ongoing_requests",
        "",
        f"Tuned as an operator would: the largest value of {list(RAY_TARGET_GRID)} that keeps "
        f">= {100 * SLO_GOAL:.0f}% within the TTFT target on the steady trace (the cheapest "
        f"that works there): {ray_target:g}. The whole grid, on the steady and the burst trace:",
        "",
        *_table(
            ["target_ongoing_requests", "steady: within target", "steady: GPU-hours",
             "burst: within target", "burst: GPU-hours"],
            rows,
        ),
        "Lower targets buy the burst back with idle GPUs all day. The burst also shows the LLM "
        "trap of counting requests: a smaller fleet runs bigger batches, which decode slower, "
        "so each replica holds more requests; after a scale-down to `requests / target` the "
        "fleet saturates again, scales back up, and waits another cold start.",
        "",
    ]


def _assumptions(setup: Setup) -> list[str]:
    from cluster.cold_start import estimate_cold_start

    replica, config = setup.replica, setup.ours_config()
    estimate = estimate_cold_start(round(replica.weights_gb * 1e9), 1, "H200")
    full_batch_tokens_s = replica.max_num_seqs / replica.step_s(replica.max_num_seqs)
    return [
        "## Assumptions",
        "",
        f"- Replica: a Kimi-K2.5-class model (595 GB int4) on {replica.gpus} x H200, TP "
        f"{replica.gpus}. Batch of {replica.max_num_seqs}; a decode step takes "
        f"{1000 * replica.decode_step_base_s:.0f} ms + {1000 * replica.decode_step_per_seq_s:.1f} "
        f"ms per running request (~{full_batch_tokens_s:,.0f} tokens/s at a full batch); "
        f"prefill {replica.prefill_tokens_per_s:,.0f} tokens/s, sharing the GPUs with decoding; "
        f"KV cache {replica.kv_cache_tokens:,} tokens "
        "(`python -m cluster plan kimi-k2.5 --gpu H200`).",
        f"- Cold start {replica.cold_start_s:.0f} s = {replica.provision_s:.0f} s placement and "
        f"container + {replica.weights_gb:.0f} GB at {replica.weight_load_gb_per_s} GB/s + "
        f"{replica.warmup_s:.0f} s warm-up. GPUs are billed from placement to release; a "
        "released replica drains its running requests first.",
        f"- Requests: chat = {traces.CHAT.prompt_tokens:,} prompt + "
        f"{traces.CHAT.output_tokens} output tokens; long-context = "
        f"{traces.LONG_CONTEXT.prompt_tokens:,} + {traces.LONG_CONTEXT.output_tokens}. Poisson "
        f"arrivals. TTFT target {setup.ttft_target_s:g} s.",
        f"- Cluster: {setup.cluster.nodes} nodes of {setup.cluster.gpus_per_node} GPUs; "
        f"max_replicas {setup.max_replicas} for every autoscaler.",
        "- The fleet (`autoscaling/simulator.py`): 1 s ticks; one FIFO queue and evenly loaded "
        "replicas (Serve's router balances them); fluid completions; TTFT = queueing + the "
        "prompt's place in the replica's prefill queue + one step. Controllers see Serve's "
        "view: 30 s means refreshed every 10 s, asked every 5 s. Each run starts after a 10 min "
        "unmeasured warm-up on the trace's first minutes.",
        "- Oracle: knows each class's arrival rate ahead; keeps the replicas these rates need at "
        "its utilization (GPU time, batch slots, KV cache) from one cold start before they are "
        "needed, and releases them when they are not needed for a cold start ahead. Its "
        f"utilization is the highest of {list(ORACLE_UTILIZATION_GRID)} that meets the SLO on "
        "the trace.",
        f"- Ours: the defaults, with the deployment's facts set (gpus_per_replica "
        f"{config.gpus_per_replica}, ttft_target_s {config.ttft_target_s:g}, "
        f"expected_cold_start_s {config.expected_cold_start_s:g}, max_replicas "
        f"{config.max_replicas}). Knobs: target_ongoing_requests_per_replica "
        f"{config.target_ongoing_requests_per_replica:g}, spare_replicas {config.spare_replicas}, "
        f"trend_window_s {config.trend_window_s:g}, hysteresis_band {config.hysteresis_band:g}, "
        f"downscale_delay_s {config.downscale_delay_s:g}, downscale_cooldown_s "
        f"{config.downscale_cooldown_s:g}, max_downscale_step {config.max_downscale_step}, "
        f"upscale_cooldown_s {config.upscale_cooldown_s:g}, trend_confidence_se "
        f"{config.trend_confidence_se:g}, upscale_noise_tolerance "
        f"{config.upscale_noise_tolerance:g}.",
        f"- Cold start told to the policy: the replica model's own ({config.expected_cold_start_s:g}"
        " s), as a deployment's builder fills `expected_cold_start_s` with "
        "`cluster.cold_start`'s estimate. For this checkpoint that estimate is "
        f"{estimate.total_s:,.0f} s today ({estimate.load_bytes_per_s / 1e9:.2f} GB/s, "
        "measured on a CPU box's local disk, no GPU node measured yet) against the "
        f"{replica.weight_load_gb_per_s} GB/s assumed here; a slower start makes every ramp "
        "relatively steeper (see the ramp table).",
        "- Not modelled: replica failures, prefix caching, imbalance between replicas, "
        "preemption, the spread of output lengths within a class, the cluster autoscaler's node "
        "start time (nodes are there; capacity binds only at the cluster's size).",
        "",
        "![replicas and queue over time, per policy](timeline.png)",
        "",
    ]


def _plot(comparisons: list[TraceComparison], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(comparisons), 2, figsize=(14, 3.2 * len(comparisons)))
    for (replicas_ax, queue_ax), c in zip(axes, comparisons):
        hours = [p.t_s / 3600 for p in c.ours.timeline]
        for result in c.results:
            label = result.policy.split(" (")[0]
            billed = [p.serving + p.starting + p.draining for p in result.timeline]
            replicas_ax.plot(hours, billed, label=label, linewidth=1)
            queue_ax.plot(hours, [p.queued for p in result.timeline], label=label, linewidth=1)
        rate_ax = replicas_ax.twinx()
        rates = [p.arrival_rate for p in c.ours.timeline]
        rate_ax.plot(hours, rates, color="grey", linestyle=":", linewidth=1)
        rate_ax.set_ylabel("arrivals/s (dotted)")
        replicas_ax.set_title(f"{c.trace}: replicas holding GPUs")
        replicas_ax.set_ylabel("replicas")
        queue_ax.set_title(f"{c.trace}: requests queued")
        queue_ax.set_ylabel("requests")
        queue_ax.set_yscale("symlog")
        for ax in (replicas_ax, queue_ax):
            ax.set_xlabel("hours")
            ax.grid(alpha=0.3)
    axes[0][0].legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)


if __name__ == "__main__":
    main()
