"""Serving overhead benchmark: our stack vs bare vLLM vs Ray Serve LLM, one invocation.

Same model, same engine arguments (those of configs/local.yaml), same machine, and
`vllm bench serve` as the client. Runs alternate (A B C A B C ...) at every
concurrency so the noisy machine weighs on all targets alike; ratios are taken
within a round, then summarised by their median and spread.

    python bench/serving/run.py                       # 1, 16, 64; 2 rounds
    python bench/serving/run.py --concurrency 16 --targets giantserve,bare-vllm

Writes bench/serving/results.{md,json} (date, machine, commit).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from bench.common import (  # noqa: E402
    alternating, cpu_seconds, provenance, summarise, wait_ready,
)
from bench.ray_serve_llm import ray_serve_llm_cpu_app  # noqa: E402
from cluster.local_ray import (  # noqa: E402
    LOOPBACK_ENV, apply_loopback_env, free_loopback_port, init_local_ray,
)
from deployments.config import load_app_config  # noqa: E402

METRICS = {
    "output_throughput": "output tok/s",
    "median_ttft_ms": "TTFT p50 ms",
    "p99_ttft_ms": "TTFT p99 ms",
    "median_itl_ms": "ITL p50 ms",
    "p99_itl_ms": "ITL p99 ms",
    # Per request (end-to-end minus first token, over the tokens after it): unlike ITL, which
    # `vllm bench serve` samples per SSE event, it does not fall when events arrive merged.
    "median_tpot_ms": "TPOT p50 ms",
    "p99_tpot_ms": "TPOT p99 ms",
    "serving_cpu_us_per_token": "serving-layer CPU µs/token",
}
BASELINE = "bare-vllm"
# Optional target: our stack with `ingress.direct_streams: false`.
RAY_STREAMS = "giantserve-ray-streams"
PROMPTS_PER_CONCURRENCY = {1: 16, 16: 128, 64: 256}


def engine_cli_flags(engine_args: dict) -> list[str]:
    flags = []
    for key, value in engine_args.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            flags.append(flag)
        elif value is not False:
            flags += [flag, json.dumps(value) if isinstance(value, (dict, list)) else str(value)]
    return flags


class Targets:
    """Starts the three servers once; they idle while another target is measured."""

    def __init__(self, config_path: Path, names: list[str]):
        self.app = load_app_config(config_path)
        self.model = self.app.models[0]
        self.model_path = self.model.weights.resolve()
        self.urls: dict[str, str] = {}
        self._bare: subprocess.Popen | None = None
        self._ray_started = False
        try:
            if BASELINE in names:
                self._start_bare_vllm()
            if {"giantserve", RAY_STREAMS, "ray-serve-llm"} & set(names):
                self._start_serve_apps(names)
            for name, url in self.urls.items():
                wait_ready(url, self.model.name)
                print(f"[bench] {name} ready at {url}", flush=True)
        except BaseException:
            self.close()
            raise

    def _start_bare_vllm(self) -> None:
        port = free_loopback_port()
        command = [
            sys.executable, "-m", "vllm.entrypoints.openai.api_server",
            "--model", self.model_path, "--served-model-name", self.model.name,
            "--host", "127.0.0.1", "--port", str(port), "--disable-uvicorn-access-log",
            *engine_cli_flags(self.model.engine_args),
        ]  # fmt: skip
        env = {**os.environ, **LOOPBACK_ENV}
        self._bare = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.urls[BASELINE] = f"http://127.0.0.1:{port}"

    def _start_serve_apps(self, names: list[str]) -> None:
        from ray import serve

        from deployments.app import build_app

        init_local_ray(num_cpus=16)
        self._ray_started = True
        port = free_loopback_port()
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        if "giantserve" in names:
            serve.run(build_app(self.app.model_dump()), name="giantserve", route_prefix="/", blocking=False)
            self.urls["giantserve"] = f"http://127.0.0.1:{port}"
        if RAY_STREAMS in names:
            # Every streamed piece in Serve messages: the stack before the direct channel.
            args = self.app.model_dump()
            args["ingress"]["direct_streams"] = False
            serve.run(build_app(args), name=RAY_STREAMS, route_prefix=f"/{RAY_STREAMS}", blocking=False)
            self.urls[RAY_STREAMS] = f"http://127.0.0.1:{port}/{RAY_STREAMS}"
        if "ray-serve-llm" in names:
            app = ray_serve_llm_cpu_app(
                {"model_id": self.model.name, "model_source": self.model_path},
                engine_kwargs=dict(self.model.engine_args),
            )
            serve.run(app, name="ray-serve-llm", route_prefix="/rayllm", blocking=False)
            self.urls["ray-serve-llm"] = f"http://127.0.0.1:{port}/rayllm"

    @property
    def bare_pid(self) -> int | None:
        return self._bare.pid if self._bare else None

    def close(self) -> None:
        if self._bare is not None:
            self._bare.terminate()
            self._bare.wait(timeout=60)
        if self._ray_started:
            import ray
            from ray import serve

            serve.shutdown()
            ray.shutdown()


def serving_layer_processes(target: str, bare_pid: int | None) -> list[psutil.Process]:
    """The processes that serve HTTP but run no model: what the serving layer costs.

    Bare vLLM: its API server process (the engine core is a child process). Serve
    targets (each the Serve application of its name): the HTTP proxy (HAProxy, its
    manager actor and Serve's fallback proxy) and
    the target application's replica actors; the vLLM engine processes those replicas
    spawn are excluded, as for bare vLLM.
    """
    if target == BASELINE:
        return [psutil.Process(bare_pid)] if bare_pid else []
    found = []
    for process in psutil.process_iter(["name", "cmdline"]):
        title = " ".join(process.info["cmdline"] or [])
        proxy = title.startswith(("ray::ProxyActor", "ray::HAProxyManager"))
        if proxy or process.info["name"] == "haproxy" or title.startswith(f"ray::ServeReplica:{target}:"):
            found.append(process)
    return found


def bench_once(base_url: str, model: str, tokenizer: str, concurrency: int, out_dir: Path,
               serving_layer: list[psutil.Process] | None = None) -> dict:  # fmt: skip
    result_file = out_dir / f"r{time.monotonic_ns()}.json"
    client = (
        "import argparse, sys\n"
        "from vllm.benchmarks.serve import add_cli_args, main\n"
        "p = argparse.ArgumentParser(); add_cli_args(p); main(p.parse_args(sys.argv[1:]))\n"
    )
    args = [
        "--backend", "vllm", "--base-url", base_url, "--endpoint", "/v1/completions",
        "--model", model, "--tokenizer", tokenizer, "--dataset-name", "random",
        "--random-input-len", "128", "--random-output-len", "64", "--ignore-eos",
        "--num-prompts", str(PROMPTS_PER_CONCURRENCY.get(concurrency, 4 * concurrency)),
        "--max-concurrency", str(concurrency), "--percentile-metrics", "ttft,tpot,itl",
        "--metric-percentiles", "50,99", "--disable-tqdm", "--seed", "0",
        "--save-result", "--result-dir", str(out_dir), "--result-filename", result_file.name,
    ]  # fmt: skip
    cpu_before = cpu_seconds(serving_layer or [])
    subprocess.run(
        [sys.executable, "-c", client, *args],
        check=True, env={**os.environ, **LOOPBACK_ENV}, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    result = json.loads(result_file.read_text())
    if serving_layer:
        spent = cpu_seconds(serving_layer) - cpu_before
        result["serving_cpu_us_per_token"] = 1e6 * spent / max(1, result["total_output_tokens"])
    return result


def write_report(results: dict, out: Path) -> None:
    out.with_suffix(".json").write_text(json.dumps(results, indent=1))
    lines = [
        "# Serving overhead: giantserve vs bare vLLM vs Ray Serve LLM",
        "",
        f"- date: {results['date']}",
        f"- machine: {results['machine']['cpu']}, {results['machine']['cores']} cores",
        f"- commit: {results['commit']}",
        f"- model: {results['model']} ({results['engine_args']})",
        "- client: `vllm bench serve`, random 128 in / 64 out, ignore_eos; runs alternate per round",
        f"- rounds: {results['rounds']}; cells: median [min-max] over rounds; ratio = target / bare vLLM within a round",
        "",
    ]
    for concurrency, by_target in results["concurrency"].items():
        lines += [f"## Concurrency {concurrency}", ""]
        header = "| target | " + " | ".join(METRICS.values()) + " |"
        lines += [header, "|" + "---|" * (len(METRICS) + 1)]
        for target, stats in by_target.items():
            cells = []
            for key in METRICS:
                s = stats[key]
                cell = f"{s['median']:.1f} [{s['min']:.1f}-{s['max']:.1f}]"
                if f"{key}_ratio" in stats:
                    r = stats[f"{key}_ratio"]
                    cell += f" ({r['median']:.3f}x)"
                cells.append(cell)
            lines.append(f"| {target} | " + " | ".join(cells) + " |")
        lines.append("")
    out.with_suffix(".md").write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "local.yaml")
    parser.add_argument("--targets", default="giantserve,bare-vllm,ray-serve-llm")
    parser.add_argument("--concurrency", default="1,16,64")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "serving" / "results")
    options = parser.parse_args(argv)
    names = options.targets.split(",")
    concurrencies = [int(c) for c in options.concurrency.split(",")]
    apply_loopback_env()

    targets = Targets(options.config, names)
    raw: dict[int, dict[str, list[dict]]] = {c: {n: [] for n in names} for c in concurrencies}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            # One unmeasured run per target first: the first requests of a fresh server
            # pay for lazy initialisation that no later request sees.
            for name in names:
                bench_once(targets.urls[name], targets.model.name, targets.model_path, 4, Path(tmp))
            for concurrency in concurrencies:
                for round_index in range(options.rounds):
                    for name in alternating(names, round_index):
                        serving_layer = serving_layer_processes(
                            name, targets.bare_pid
                        )
                        result = bench_once(
                            targets.urls[name], targets.model.name, targets.model_path,
                            concurrency, Path(tmp), serving_layer,
                        )  # fmt: skip
                        raw[concurrency][name].append(result)
                        print(
                            f"[bench] c={concurrency} round {round_index} {name}: "
                            f"{result['output_throughput']:.1f} tok/s, "
                            f"TTFT p50 {result['median_ttft_ms']:.0f} ms",
                            flush=True,
                        )
    finally:
        targets.close()

    results = {
        **provenance(),
        "model": targets.model.name,
        "engine_args": targets.model.engine_args,
        "rounds": options.rounds,
        "concurrency": {},
    }
    for concurrency, by_target in raw.items():
        table = {}
        for name, runs in by_target.items():
            stats = {key: summarise([run[key] for run in runs]) for key in METRICS}
            if name != BASELINE and BASELINE in by_target:
                for key in METRICS:
                    ratios = [
                        run[key] / base[key]
                        for run, base in zip(runs, by_target[BASELINE])
                        if base[key]
                    ]
                    if ratios:
                        stats[f"{key}_ratio"] = summarise(ratios)
            table[name] = stats
        results["concurrency"][str(concurrency)] = table
    write_report(results, options.out)
    print(options.out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
