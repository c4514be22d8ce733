"""Serving-layer cost without a model: the simulated token engine behind our ingress.

The engine is `deployments.simulated_engine` (a token-timing test double), so every CPU
cycle measured is the serving layer's: the HTTP proxy (HAProxy), our ingress replica, the
engine replica's streaming (direct channel or Ray messages) and stream batching. Streaming clients (aiohttp, in
their own process) open `--streams` concurrent streams that each ask for `--tokens`
tokens at `--rate` tokens/s; the offered load is streams x rate tokens/s.

The `ray-serve-llm` variant puts Ray Serve LLM's app (its ingress and `LLMServer`, its
own code and defaults) around the same simulated engine: the peer's serving layer,
measured the same way (it needs the `bench` extra).

Reported per run: tokens/s delivered vs offered, SSE chunks/s (Ray messages per hop),
time to first byte and inter-chunk gap p50/p99 as clients see it, and CPU microseconds per streamed token of
each serving process (from /proc, over the measured window only).

    python bench/overhead/run.py --streams 16,64,256 --rate 100
    python bench/overhead/run.py --variants default,no-batching

Variants run alternately (A B A B ...) in one invocation; each gets its own Ray cluster
because Serve's flags are read when its processes start.
Writes bench/overhead/results.{md,json} (date, machine, commit).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import psutil

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from bench.common import alternating, cpu_seconds, provenance, summarise  # noqa: E402
from cluster.local_ray import free_loopback_port  # noqa: E402

MODEL = "sim"


class Variant(NamedTuple):
    env: dict[str, str] = {}  # extra environment for the Ray cluster
    model: dict = {}  # extra model settings
    ingress: dict = {}  # extra ingress settings
    # Ray Serve LLM's app around the same simulated engine (bench/overhead/peer_engine.py)
    # in place of ours; the Ray cluster's settings stay ours, as in bench/serving.
    peer: bool = False


VARIANTS: dict[str, Variant] = {
    # What a config gets by default (cluster/data/serving_env.yaml included).
    "default": Variant(),
    # Every piece in Serve messages, batched per stream: the default before the direct channel.
    "ray-streams": Variant(ingress={"direct_streams": False}),
    # One Ray message per token, as before stream batching existed.
    "no-batching": Variant(model={"stream_batching": {"max_delay_ms": 0}}, ingress={"direct_streams": False}),
    # Serve's default: replica code on a thread and event loop of its own.
    "separate-thread": Variant(env={"RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "1"}),
    # Serve's handles route on the caller's loop too, not on a router loop of their own.
    "router-on-main-loop": Variant(env={"RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP": "0"}),
    # Serve's Python HTTP proxy in front of the ingress, as before HAProxy was the default.
    "serve-proxy": Variant(env={"RAY_SERVE_ENABLE_HA_PROXY": "0"}),
    # The peer: its replicas import the engine from this repository's bench package.
    "ray-serve-llm": Variant(peer=True, env={"PYTHONPATH": str(REPO)}),
}

# Ingress deployments: ours and Ray Serve LLM's. Every other replica is an engine replica.
INGRESS_DEPLOYMENTS = ("ingress", "OpenAiIngress")
REPLICA_TITLE = "ray::ServeReplica:"


def app_args(rate: float, variant: Variant) -> dict:
    model = {
        "name": MODEL,
        "simulated_engine": {"ttft_s": 0.0, "tokens_per_s": rate, "max_running": 4096},
        "max_ongoing_requests": 4096,
        "limits": {"max_queued_requests_per_replica": 4096, "request_timeout_s": 600},
        **variant.model,
    }
    return {"models": [model], "ingress": {"max_ongoing_requests": 8192, **variant.ingress}}


CLIENT = r"""
import asyncio, json, sys, time
import aiohttp

url, streams, tokens, seconds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
body = {"model": "sim", "prompt": "x", "max_tokens": tokens, "stream": True}
counted = {"tokens": 0, "chunks": 0, "streams": 0, "errors": 0}
gaps, first_bytes = [], []

async def one(session, stop_at):
    while time.monotonic() < stop_at:
        sent = time.monotonic()
        try:
            async with session.post(url, json=body) as reply:
                if reply.status != 200:
                    counted["errors"] += 1
                    await reply.read()
                    continue
                last = None
                async for chunk in reply.content.iter_any():
                    now = time.monotonic()
                    if last is not None:
                        gaps.append(now - last)
                    else:
                        first_bytes.append(now - sent)
                    last = now
                    counted["chunks"] += 1
                    counted["tokens"] += chunk.count(b" token")
                counted["streams"] += 1
        except aiohttp.ClientError:
            counted["errors"] += 1

async def main():
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=None)) as session:
        warm = time.monotonic() + 3
        await asyncio.gather(*(one(session, warm) for _ in range(streams)))
        for key in counted: counted[key] = 0
        gaps.clear(); first_bytes.clear()
        print("MEASURE", flush=True)
        started = time.monotonic()
        await asyncio.gather(*(one(session, started + seconds) for _ in range(streams)))
        elapsed = time.monotonic() - started
    gaps.sort(); first_bytes.sort()
    pick = lambda xs, q: xs[min(len(xs) - 1, int(q * len(xs)))] if xs else 0.0
    print(json.dumps({**counted, "elapsed_s": elapsed, "first_byte_p50_ms": 1e3 * pick(first_bytes, 0.5),
                      "gap_p50_ms": 1e3 * pick(gaps, 0.5), "gap_p99_ms": 1e3 * pick(gaps, 0.99)}), flush=True)

asyncio.run(main())
"""


def serving_processes() -> dict[str, list[psutil.Process]]:
    """Serving processes by role; "proxy" is Serve's proxy, or HAProxy and its manager."""
    found: dict[str, list[psutil.Process]] = {"proxy": [], "ingress": [], "engine": []}
    for process in psutil.process_iter(["name", "cmdline"]):
        title = " ".join(process.info["cmdline"] or [])
        if title.startswith(("ray::ProxyActor", "ray::HAProxyManager")) or (
            process.info["name"] == "haproxy"
        ):
            found["proxy"].append(process)
        elif title.startswith(REPLICA_TITLE):
            # "ray::ServeReplica:<app>:<deployment>[.<method running>]"
            app_and_deployment = title.split(" ")[0][len(REPLICA_TITLE):]
            deployment = re.split(r"[.:]", app_and_deployment.split(":", 1)[1])[0]
            found["ingress" if deployment in INGRESS_DEPLOYMENTS else "engine"].append(process)
    return found


def measure(url: str, streams: int, tokens: int, seconds: float) -> dict:
    processes = serving_processes()
    client = subprocess.Popen(
        [sys.executable, "-c", CLIENT, url, str(streams), str(tokens), str(seconds)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert client.stdout is not None
    assert client.stdout.readline().strip() == "MEASURE"
    before = {name: cpu_seconds(group) for name, group in processes.items()}
    result = json.loads(client.stdout.readline())
    after = {name: cpu_seconds(group) for name, group in processes.items()}
    client.wait(timeout=60)
    delivered = max(1, result["tokens"])
    result["tokens_per_s"] = result["tokens"] / result["elapsed_s"]
    result["chunks_per_s"] = result["chunks"] / result["elapsed_s"]
    for name in processes:
        result[f"{name}_cpu_us_per_token"] = 1e6 * (after[name] - before[name]) / delivered
    result["serving_cpu_us_per_token"] = sum(
        result[f"{name}_cpu_us_per_token"] for name in processes
    )
    return result


class Cluster:
    """One Ray cluster + Serve app for one variant."""

    def __init__(self, variant: str, rate: float):
        from ray import serve

        from cluster.local_ray import init_local_ray
        from deployments.app import build_app

        settings = VARIANTS[variant]
        self._saved = {key: os.environ.get(key) for key in settings.env}
        os.environ.update(settings.env)
        init_local_ray(num_cpus=16, log_to_driver=False)
        port = free_loopback_port()
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        if settings.peer:
            from bench.overhead.peer_engine import peer_app

            app = peer_app(MODEL, rate)
        else:
            app = build_app(app_args(rate, settings))
        serve.run(app, name="overhead", route_prefix="/")
        self.url = f"http://127.0.0.1:{port}/v1/completions"

    def close(self) -> None:
        import ray
        from ray import serve

        serve.shutdown()
        ray.shutdown()
        for key, value in self._saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


KEYS = {
    "tokens_per_s": "tokens/s",
    "chunks_per_s": "chunks/s",
    "first_byte_p50_ms": "first byte p50 ms",
    "gap_p50_ms": "gap p50 ms",
    "gap_p99_ms": "gap p99 ms",
    "serving_cpu_us_per_token": "serving CPU µs/token",
    "proxy_cpu_us_per_token": "proxy",
    "ingress_cpu_us_per_token": "ingress",
    "engine_cpu_us_per_token": "engine replica",
}


def _fmt(value: float) -> str:
    return f"{value:.1f}" if abs(value) < 100 else f"{value:.0f}"


def write_report(results: dict, out: Path) -> None:
    out.with_suffix(".json").write_text(json.dumps(results, indent=1))
    lines = [
        "# Serving-layer cost with the simulated engine",
        "",
        f"- date: {results['date']}",
        f"- machine: {results['machine']['cpu']}, {results['machine']['cores']} cores",
        f"- commit: {results['commit']}",
        f"- offered: each stream asks {results['tokens']} tokens at {results['rate']} tok/s; "
        f"{results['seconds']} s measured per run after 3 s warm-up; {results['rounds']} rounds, "
        "variants alternate; cells: median [min-max]",
        "",
    ]
    for streams, by_variant in results["streams"].items():
        offered = int(streams) * results["rate"]
        lines += [f"## {streams} streams (offered {offered:.0f} tok/s)", ""]
        lines += ["| variant | " + " | ".join(KEYS.values()) + " | errors |"]
        lines += ["|" + "---|" * (len(KEYS) + 2)]
        for variant, stats in by_variant.items():
            cells = [
                f"{_fmt(stats[k]['median'])} [{_fmt(stats[k]['min'])}-{_fmt(stats[k]['max'])}]"
                for k in KEYS
            ]
            lines.append(f"| {variant} | " + " | ".join(cells) + f" | {stats['errors']} |")
        lines.append("")
    out.with_suffix(".md").write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--streams", default="16,64,256")
    parser.add_argument("--rate", type=float, default=100.0, help="tokens/s per stream")
    parser.add_argument("--tokens", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "overhead" / "results")
    options = parser.parse_args(argv)
    variants = options.variants.split(",")
    stream_counts = [int(s) for s in options.streams.split(",")]

    raw: dict[int, dict[str, list[dict]]] = {s: {v: [] for v in variants} for s in stream_counts}
    for round_index in range(options.rounds):
        for variant in alternating(variants, round_index):
            cluster = Cluster(variant, options.rate)
            try:
                for streams in stream_counts:
                    result = measure(cluster.url, streams, options.tokens, options.seconds)
                    raw[streams][variant].append(result)
                    print(
                        f"[overhead] round {round_index} {variant} streams={streams}: "
                        f"{result['tokens_per_s']:.0f} tok/s, {result['chunks_per_s']:.0f} chunks/s, "
                        f"{result['serving_cpu_us_per_token']:.0f} µs/token, errors {result['errors']}",
                        flush=True,
                    )
            finally:
                cluster.close()

    results = {
        **provenance(),
        "rate": options.rate,
        "tokens": options.tokens,
        "seconds": options.seconds,
        "rounds": options.rounds,
        "streams": {},
    }
    for streams, by_variant in raw.items():
        table = {}
        for variant, runs in by_variant.items():
            stats = {k: summarise([run.get(k, 0.0) for run in runs]) for k in KEYS}
            stats["errors"] = sum(run["errors"] for run in runs)
            table[variant] = stats
        results["streams"][str(streams)] = table
    write_report(results, options.out)
    print(options.out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
