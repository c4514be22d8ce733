"""Load: 2,000 requests at concurrency 64 (streamed and not, mixed lengths) through our
stack; every request must end in a completion or a clean 429/503, and the serving
processes' memory must stay flat.

    python bench/load/run.py [--requests 2000 --concurrency 64 --config configs/local.yaml]

Writes bench/load/results.{md,json} (date, machine, commit).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
import psutil
import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from bench.common import provenance  # noqa: E402
from cluster.local_ray import free_loopback_port  # noqa: E402
from cluster.local_ray import init_local_ray  # noqa: E402

CLEAN_REFUSALS = {429, 503}


def serving_processes() -> list[psutil.Process]:
    """Ray's Serve processes and the vLLM engine processes they spawned."""
    found = []
    for process in psutil.process_iter(["name", "cmdline"]):
        title = " ".join(process.info["cmdline"] or []) or (process.info["name"] or "")
        if title.startswith(("ray::ServeReplica", "ray::ProxyActor", "ray::ServeController", "VLLM::")):
            found.append(process)
    return found


def rss_mb(processes: list[psutil.Process]) -> float:
    total = 0
    for process in processes:
        try:
            total += process.memory_info().rss
        except psutil.Error:
            pass
    return total / 1e6


async def one_request(client: httpx.AsyncClient, url: str, model: str, rng: random.Random) -> tuple[str, int]:
    stream = rng.random() < 0.5
    max_tokens = rng.choice([1, 4, 16, 32, 64])
    words = rng.choice([4, 32, 256])
    body = {
        "model": model,
        "messages": [{"role": "user", "content": " ".join(["word"] * words)}],
        "max_tokens": max_tokens,
        "ignore_eos": True,
        "stream": stream,
    }
    if stream:
        body["stream_options"] = {"include_usage": True}
    try:
        if not stream:
            reply = await client.post(f"{url}/v1/chat/completions", json=body)
            if reply.status_code == 200:
                ok = reply.json()["usage"]["completion_tokens"] == max_tokens
                return ("completed" if ok else "wrong token count"), 200
            return ("refused" if reply.status_code in CLEAN_REFUSALS else "error"), reply.status_code
        async with client.stream("POST", f"{url}/v1/chat/completions", json=body) as reply:
            if reply.status_code != 200:
                await reply.aread()
                return ("refused" if reply.status_code in CLEAN_REFUSALS else "error"), reply.status_code
            last, completion_tokens = "", None
            async for line in reply.aiter_lines():
                if line.startswith("data: "):
                    last = line
                    if '"usage"' in line and line != "data: [DONE]":
                        usage = json.loads(line[len("data: ") :]).get("usage") or {}
                        completion_tokens = usage.get("completion_tokens", completion_tokens)
            if last != "data: [DONE]":
                return "stream cut", 200
            return ("completed" if completion_tokens == max_tokens else "wrong token count"), 200
    except httpx.HTTPError as error:
        return f"transport: {type(error).__name__}", 0


async def drive(url: str, model: str, requests: int, concurrency: int, seed: int = 0):
    rng = random.Random(seed)
    outcomes: Counter = Counter()
    statuses: Counter = Counter()
    memory: list[tuple[float, float]] = []
    processes = serving_processes()
    queue: asyncio.Queue = asyncio.Queue()
    for _ in range(requests):
        queue.put_nowait(None)
    started = time.monotonic()

    async def worker(client):
        while not queue.empty():
            queue.get_nowait()
            outcome, status = await one_request(client, url, model, rng)
            outcomes[outcome] += 1
            statuses[status] += 1

    async def sample_memory():
        while True:
            memory.append((time.monotonic() - started, rss_mb(processes)))
            await asyncio.sleep(2)

    sampler = asyncio.create_task(sample_memory())
    async with httpx.AsyncClient(timeout=600, limits=httpx.Limits(max_connections=concurrency)) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    sampler.cancel()
    return outcomes, statuses, memory, time.monotonic() - started


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "local.yaml")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "load" / "results")
    options = parser.parse_args(argv)

    from ray import serve

    from deployments.app import build_app

    application = yaml.safe_load(options.config.read_text())["applications"][0]
    init_local_ray(num_cpus=16)
    port = free_loopback_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(build_app(application["args"]), name="load", route_prefix="/")
    model = application["args"]["models"][0]["name"]
    try:
        outcomes, statuses, memory, seconds = asyncio.run(
            drive(f"http://127.0.0.1:{port}", model, options.requests, options.concurrency)
        )
    finally:
        serve.shutdown()

    quarter = max(1, len(memory) // 4)
    early = statistics.median(m for _, m in memory[:quarter])
    late = statistics.median(m for _, m in memory[-quarter:])
    results = {
        **provenance(),
        "config": str(options.config.relative_to(REPO)),
        "requests": options.requests,
        "concurrency": options.concurrency,
        "seconds": round(seconds, 1),
        "outcomes": dict(outcomes),
        "statuses": {str(k): v for k, v in statuses.items()},
        "serving_rss_mb_first_quarter_median": round(early, 1),
        "serving_rss_mb_last_quarter_median": round(late, 1),
        "serving_rss_mb_growth": round(late - early, 1),
        "memory_samples": [(round(t, 1), round(m, 1)) for t, m in memory],
    }
    options.out.with_suffix(".json").write_text(json.dumps(results, indent=1))
    lost = options.requests - outcomes["completed"] - outcomes["refused"]
    options.out.with_suffix(".md").write_text(
        "\n".join(
            [
                "# Load: nothing lost, memory flat",
                "",
                f"- date: {results['date']}; machine: {results['machine']['cpu']}, "
                f"{results['machine']['cores']} cores; commit: {results['commit']}",
                f"- {options.requests} requests at concurrency {options.concurrency} "
                f"({results['config']}), half streamed, max_tokens 1-64, prompts 4-256 words",
                f"- took {results['seconds']} s",
                f"- outcomes: {dict(outcomes)}; HTTP statuses: {results['statuses']}",
                f"- lost (neither completed nor a clean 429/503): **{lost}**",
                f"- RSS of the serving processes (proxy, controller, replicas, vLLM): "
                f"{early:.0f} MB in the first quarter, {late:.0f} MB in the last "
                f"({late - early:+.0f} MB)",
                "",
            ]
        )
    )
    print(options.out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
