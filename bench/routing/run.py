"""Prefix-aware routing vs power-of-two-choices, in one invocation on this machine.

Two replicas of the local SmolLM2 behind the ingress; a shared-prefix workload: 8 long
system prompts (~1,000 tokens each) x N questions, shuffled, sent at a fixed concurrency
with the official `openai` client. Each routing policy gets a fresh application (cold
prefix caches) and the very same request sequence. Measured per policy:

- vLLM's prefix-cache hit rate, as vLLM reports it: the sum of
  `usage.prompt_tokens_details.cached_tokens` over the sum of `prompt_tokens`;
- time to first token (client side, streamed), median and p90.

Each replica's KV cache is sized to hold about 5 of the 8 prefixes: the working set fits
the pair of replicas but not one, which is where routing decides the hit rate (with caches
large enough for everything, any routing reaches a high hit rate after warm-up).

    python bench/routing/run.py                 # 8 prefixes x 8 questions, concurrency 4
Writes bench/routing/results.{md,json} (date, machine, commit).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import socket
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path


REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from bench.common import wait_ready  # noqa: E402
from cluster.local_ray import init_local_ray  # noqa: E402

MODEL = "smollm2-135m-instruct"
POLICIES = ("power_of_two", "prefix_affinity")
# SmolLM2-135M: 30 layers x 3 KV heads x 64 x 2 (K, V) x 2 bytes = 23,040 B per token.
KV_BYTES_PER_TOKEN = 23_040
WORDS = (
    "river stone ledger harbor signal copper lantern orchard meadow circuit velvet "
    "granite compass ember thistle canyon beacon willow quarry falcon prism saddle "
    "anchor marble cobalt juniper tundra harvest glacier cinder"
).split()


def app_args(policy: str, kv_tokens: int) -> dict:
    return {
        "models": [{
            "name": MODEL,
            "weights": {"local": MODEL},
            "num_replicas": 2,
            "routing": policy,
            "engine_args": {
                "dtype": "bfloat16",
                "enforce_eager": True,
                "max_model_len": 2048,
                "kv_cache_memory_bytes": kv_tokens * KV_BYTES_PER_TOKEN,
                "max_num_seqs": 16,
                "enable_prefix_caching": True,
                # vLLM reports cached prompt tokens in usage only when asked to.
                "enable_prompt_tokens_details": True,
                "seed": 0,
            },
        }],
    }  # fmt: skip


def workload(prefixes: int, questions: int, prefix_words: int, seed: int) -> list[list[dict]]:
    rng = random.Random(seed)
    systems = [
        f"You are assistant number {p}. Reference notes follow. "
        + " ".join(rng.choice(WORDS) for _ in range(prefix_words))
        for p in range(prefixes)
    ]
    requests = [
        [{"role": "system", "content": systems[p]},
         {"role": "user", "content": f"Question {q}: which word of the notes comes first?"}]
        for p in range(prefixes) for q in range(questions)
    ]  # fmt: skip
    rng.shuffle(requests)
    return requests


async def run_workload(url: str, requests: list[list[dict]], concurrency: int) -> list[dict]:
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=600)
    gate = asyncio.Semaphore(concurrency)

    async def one(messages: list[dict]) -> dict:
        async with gate:
            started = time.perf_counter()
            ttft, usage = None, None
            stream = await client.chat.completions.create(
                model=MODEL, messages=messages, max_tokens=4, temperature=0, stream=True,
                stream_options={"include_usage": True}, extra_body={"ignore_eos": True},
            )  # fmt: skip
            async for chunk in stream:
                if ttft is None and chunk.choices and chunk.choices[0].delta.content:
                    ttft = time.perf_counter() - started
                usage = chunk.usage or usage
            details = usage.prompt_tokens_details
            return {
                "ttft_s": ttft,
                "prompt_tokens": usage.prompt_tokens,
                "cached_tokens": (details.cached_tokens or 0) if details else 0,
            }

    return await asyncio.gather(*(one(m) for m in requests))


def summarize(results: list[dict]) -> dict:
    ttfts = sorted(r["ttft_s"] for r in results)
    prompt = sum(r["prompt_tokens"] for r in results)
    cached = sum(r["cached_tokens"] for r in results)
    return {
        "requests": len(results),
        "prompt_tokens": prompt,
        "cached_tokens": cached,
        "prefix_cache_hit_rate": round(cached / prompt, 4),
        "ttft_p50_s": round(statistics.median(ttfts), 3),
        "ttft_p90_s": round(ttfts[int(0.9 * (len(ttfts) - 1))], 3),
        "ttft_mean_s": round(statistics.fmean(ttfts), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prefixes", type=int, default=8)
    parser.add_argument("--questions", type=int, default=8)
    parser.add_argument("--prefix-words", type=int, default=750, help="~1,000 tokens")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--kv-tokens", type=int, default=5_500, help="KV cache per replica")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from ray import serve

    from deployments.app import build_app

    init_local_ray(num_cpus=16)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    url = f"http://127.0.0.1:{port}"
    requests = workload(args.prefixes, args.questions, args.prefix_words, args.seed)
    measured = {}
    try:
        for policy in POLICIES:
            serve.run(build_app(app_args(policy, args.kv_tokens)), name="routing", route_prefix="/")
            wait_ready(url, MODEL, timeout_s=300)
            started = time.monotonic()
            results = asyncio.run(run_workload(url, requests, args.concurrency))
            measured[policy] = {**summarize(results), "wall_s": round(time.monotonic() - started, 1)}
            print(policy, measured[policy], flush=True)
            serve.delete("routing")
    finally:
        serve.shutdown()

    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True
    ).stdout.strip()
    report = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.node()}: {os.cpu_count()} CPUs, {platform.machine()}, "
        f"{platform.python_version()}",
        "commit": commit,
        "note": "working tree may hold uncommitted changes on top of this commit",
        "settings": vars(args),
        "results": measured,
    }
    out = Path(__file__).resolve().parent
    (out / "results.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
