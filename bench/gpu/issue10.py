"""Issue 10 on the lent GPU machine: our stack (build_app -> Ray Serve -> LLMEngine -> vLLM
with distributed_executor_backend="ray" in the replica's placement group) against bare
vLLM (`python -m vllm.entrypoints.openai.api_server`) on the same GPU, alternating,
with `vllm bench serve` (vllm.benchmarks.serve add_cli_args + main) at several concurrencies.

Run by bench/gpu/run_issue10.sh after setup.sh (PYTHONPATH = repo root + /tmp/site).
Both servers run at once on the one H200 with a fixed KV cache each (kv_cache_memory_bytes),
started one after the other; the idle one only spins its scheduler loop while the other
is measured. Everything it learns goes to --out (JSON + logs); it never raises past main.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections import Counter
import urllib.request
from pathlib import Path

import yaml

T0 = time.monotonic()
REPO = Path(__file__).resolve().parents[2]


def log(*parts) -> None:
    print(f"[issue10 {time.monotonic() - T0:6.1f}s]", *parts, flush=True)


def http_json(url: str, body: dict | None = None, timeout: float = 30.0):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read() or b"null")


def wait_ready(url: str, deadline: float, proc: subprocess.Popen | None = None) -> bool:
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            urllib.request.urlopen(url, timeout=5).read()
            return True
        except Exception:
            time.sleep(2)
    return False


# ---------------------------------------------------------------- GPU stats (NVML)
class GpuSampler:
    """NVML samples every 0.5 s over every GPU: utilization and SM clock of the busiest, memory and power summed.

    Uses cluster.gpu_stats when that module exists (another engineer's), else nvidia-ml-py."""

    def __init__(self) -> None:
        self.samples: list[dict] = []
        self.source = "nvidia-ml-py (pynvml) read directly by bench/gpu/issue10.py"
        self._stop = threading.Event()
        self._thread = None
        try:
            import pynvml

            pynvml.nvmlInit()
            self._nvml = pynvml
            self._handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
            self.name = ", ".join(pynvml.nvmlDeviceGetName(h) for h in self._handles)
            self.ok = True
        except Exception as error:  # no NVML: say so in the results
            self.ok, self.name = False, f"NVML unavailable: {error!r}"
        try:
            import cluster.gpu_stats as gpu_stats  # noqa: F401

            self.gpu_stats_module = [n for n in dir(gpu_stats) if not n.startswith("_")]
        except Exception as error:
            self.gpu_stats_module = f"not importable: {error!r}"

    def sample(self) -> dict:
        n, handles = self._nvml, self._handles
        # Only the measured target is loaded, so the busiest GPU is the one it runs on.
        util, busiest = max(((n.nvmlDeviceGetUtilizationRates(h), h) for h in handles),
                            key=lambda pair: pair[0].gpu)
        return {
            "t": time.time(),
            "gpu_util_pct": util.gpu,
            "mem_util_pct": util.memory,
            "mem_used_gib": sum(n.nvmlDeviceGetMemoryInfo(h).used for h in handles) / 2**30,
            "power_w": sum(n.nvmlDeviceGetPowerUsage(h) for h in handles) / 1000.0,
            "sm_clock_mhz": n.nvmlDeviceGetClockInfo(busiest, n.NVML_CLOCK_SM),
            "temp_c": n.nvmlDeviceGetTemperature(busiest, n.NVML_TEMPERATURE_GPU),
        }

    def start(self) -> None:
        if not self.ok:
            return

        def loop():
            while not self._stop.is_set():
                try:
                    self.samples.append(self.sample())
                except Exception:
                    pass
                self._stop.wait(0.5)

        self._thread = threading.Thread(target=loop, daemon=True)
        self._thread.start()

    def window(self, start: float, end: float) -> dict:
        rows = [s for s in self.samples if start <= s["t"] <= end]
        if not rows:
            return {}
        out = {"samples": len(rows)}
        for key in ("gpu_util_pct", "mem_used_gib", "power_w", "sm_clock_mhz", "temp_c"):
            values = [r[key] for r in rows]
            out[f"{key}_mean"] = round(sum(values) / len(values), 2)
            out[f"{key}_max"] = round(max(values), 2)
        return out

    def processes(self) -> list[dict]:
        if not self.ok:
            return []
        rows = []
        for index, handle in enumerate(self._handles):
            for p in self._nvml.nvmlDeviceGetComputeRunningProcesses(handle):
                try:
                    cmd = Path(f"/proc/{p.pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:160]
                except OSError:
                    cmd = "?"
                rows.append({"gpu": index, "pid": p.pid, "used_gib": round((p.usedGpuMemory or 0) / 2**30, 2),
                             "cmd": cmd})
        return rows


# ---------------------------------------------------------------- servers
def start_bare_vllm(a, out: Path) -> subprocess.Popen:
    cmd = [
        sys.executable, "-m", "vllm.entrypoints.openai.api_server",
        "--host", "127.0.0.1", "--port", str(a.bare_port),
        "--model", a.model_dir, "--served-model-name", *a.served_names,
        *a.shared_engine_cli,
    ]
    log("bare vLLM:", " ".join(cmd))
    return subprocess.Popen(
        cmd, stdout=open(out / "bare_vllm.log", "w"), stderr=subprocess.STDOUT,
        start_new_session=True, env=os.environ.copy(),
    )


def stage_dummy_weights(model_cfg, model_dir: str) -> str:
    """Make the config's `path` source look staged on this node (STAGED.json marker)."""
    from cluster.staging import FileEntry, Manifest, write_marker

    target = model_cfg.weights.staged_directory()
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(model_dir, target)
    files = tuple(
        FileEntry(path=str(p.relative_to(target)), size=p.stat().st_size)
        for p in sorted(target.rglob("*")) if p.is_file()
    )
    write_marker(target, Manifest(source=f"path:{model_cfg.weights.path}", files=files))
    return str(target)


def ray_accelerator_check() -> dict:
    """What Ray itself detects on this node (GPU count, accelerator type)."""
    info: dict = {}
    try:
        from ray._private.accelerators import NvidiaGPUAcceleratorManager as M

        info["ray_detected_gpus"] = M.get_current_node_num_accelerators()
        info["ray_detected_accelerator_type"] = M.get_current_node_accelerator_type()
    except Exception as error:
        info["ray_detect_error"] = repr(error)
    return info


def deploy_stack(args: dict, model_index: int, record: dict, deadline: float) -> bool:
    """Deploy (or replace) the app with one model of the config: one GPU holds one replica."""
    from ray import serve

    from deployments.app import build_app

    one = {**args, "models": [args["models"][model_index]]}
    log("serve: deploying build_app with", one["models"][0]["name"])
    t = time.monotonic()
    serve._run(build_app(one), _blocking=False, name="llm", route_prefix="/")
    status = None
    while time.monotonic() < deadline:
        status = serve.status().applications.get("llm")
        if status is not None and status.status in ("RUNNING", "DEPLOY_FAILED", "UNHEALTHY"):
            break
        time.sleep(3)
    record["deploy_s"] = round(time.monotonic() - t, 1)
    record["app_status"] = str(status.status) if status else None
    if status is not None:
        record["deployments"] = {
            name: {"status": str(d.status), "message": d.message[:2000]}
            for name, d in status.deployments.items()
        }
    log("stack status:", record["app_status"], f"after {record['deploy_s']} s")
    return status is not None and status.status == "RUNNING"


def start_stack(a, config: dict, out: Path, result: dict, deadline: float) -> bool:
    import ray
    from ray import serve

    from cluster.local_ray import init_local_ray
    from deployments.config import AppConfig

    args = config["applications"][0]["args"]
    model_cfg = AppConfig.model_validate(args).models[0]
    result["stack"]["staged_dir"] = stage_dummy_weights(model_cfg, a.model_dir)
    detect = ray_accelerator_check()
    result["stack"]["ray_detect"] = detect
    want = f"accelerator_type:{model_cfg.placement.accelerator}"
    extra = {}
    if detect.get("ray_detected_accelerator_type") != model_cfg.placement.accelerator:
        # Ray names the type from the NVML name; give the resource by hand if it differs.
        extra = {"resources": {want: 1}}
    result["stack"]["ray_init_extra"] = extra
    init_local_ray(num_cpus=a.ray_cpus, **extra)
    result["stack"]["cluster_resources"] = ray.cluster_resources()
    log("ray resources:", ray.cluster_resources())
    serve.start(http_options={"host": "127.0.0.1", "port": a.stack_port})
    ok = deploy_stack(args, 0, result["stack"], deadline)
    # The proof: the replica's placement group, bundle -> node, and Ray's GPU accounting.
    try:
        from ray.util import placement_group_table

        groups = placement_group_table()
        result["stack"]["placement_groups"] = [
            {
                "name": g.get("name"), "state": g.get("state"), "strategy": g.get("strategy"),
                "bundles": g.get("bundles"), "bundles_to_node_id": g.get("bundles_to_node_id"),
            }
            for g in groups.values()
        ]
        result["stack"]["available_resources"] = ray.available_resources()
        result["stack"]["nodes"] = [
            {"node_id": n["NodeID"], "ip": n["NodeManagerAddress"], "resources": n["Resources"]}
            for n in ray.nodes() if n.get("Alive")
        ]
    except Exception as error:
        result["stack"]["placement_error"] = repr(error)
    return ok


def stack_gpu_metrics() -> list[str]:
    """The GPU stats series (cluster.gpu_stats_actor) as the node's Ray metrics endpoint serves them."""
    import ray

    node = next(n for n in ray.nodes() if n.get("Alive"))
    url = f"http://{node['NodeManagerAddress']}:{node['MetricsExportPort']}/metrics"
    try:
        with urllib.request.urlopen(url, timeout=10) as reply:
            text = reply.read().decode()
    except Exception as error:
        return [f"scrape of {url} failed: {error!r}"]
    return [line for line in text.splitlines() if line.startswith("ray_giantserve_gpu_")]


def collect_ray_logs(out: Path) -> None:
    logs = Path("/tmp/ray/session_latest/logs")
    dest = out / "ray_logs"
    dest.mkdir(exist_ok=True)
    if not logs.exists():
        return
    for p in sorted(logs.rglob("*")):
        name = p.name
        if p.is_file() and (
            name.startswith(("replica_", "worker-", "serve_controller", "proxy_", "raylet"))
            or "serve" in str(p.parent.name)
        ) and p.stat().st_size > 0:
            text = p.read_bytes()[-200_000:]
            (dest / f"{p.parent.name}__{name}").write_bytes(text)


# ---------------------------------------------------------------- checks and bench
def greedy_probe(base: str, name: str) -> dict:
    body = {"model": name, "prompt": "t11 t22 t33 t44 t55", "max_tokens": 16, "temperature": 0.0}
    t = time.monotonic()
    reply = http_json(f"{base}/v1/completions", body, timeout=120)
    return {"text": reply["choices"][0]["text"], "latency_s": round(time.monotonic() - t, 3)}


SUMMARY_KEYS_DROP = {"ttfts", "itls", "generated_texts", "input_lens", "output_lens", "errors",
                     "start_times", "tpots"}


def run_bench(a, target: str, base: str, model: str, concurrency: int, num_prompts: int,
              tag: str, out: Path, sampler: GpuSampler) -> dict:
    from vllm.benchmarks.serve import add_cli_args, main
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    parser = FlexibleArgumentParser()
    add_cli_args(parser)
    argv = [
        "--backend", "vllm", "--base-url", base, "--endpoint", "/v1/completions",
        "--model", model, "--tokenizer", a.model_dir,
        "--dataset-name", "random", "--random-input-len", str(a.input_len),
        "--random-output-len", str(a.output_len), "--ignore-eos",
        "--num-prompts", str(num_prompts), "--max-concurrency", str(concurrency),
        "--request-rate", "inf", "--seed", "0", "--disable-tqdm",
        "--num-warmups", str(min(concurrency, 16)),
        "--percentile-metrics", "ttft,tpot,itl,e2el", "--metric-percentiles", "50,90,99",
        "--save-result", "--result-dir", str(out / "bench"), "--result-filename", f"{tag}.json",
    ]
    args = parser.parse_args(argv)
    start = time.time()
    try:
        res = main(args)
    except SystemExit as error:  # the bench exits on some failures
        res = {"error": f"SystemExit {error.code}"}
    except Exception as error:
        res = {"error": repr(error), "trace": traceback.format_exc()[-3000:]}
    end = time.time()
    summary = {k: v for k, v in (res or {}).items() if k not in SUMMARY_KEYS_DROP
               and not isinstance(v, (list, dict))}
    # Why requests failed, counted by message: the per-run files may not come back.
    failures = Counter(str(e)[:200] for e in (res or {}).get("errors") or [] if e)
    if failures:
        summary["failures"] = dict(failures.most_common(5))
    summary.update(target=target, concurrency=concurrency, num_prompts=num_prompts, tag=tag,
                   wall_s=round(end - start, 2), gpu=sampler.window(start, end))
    log(f"bench {tag}: out tok/s={summary.get('output_throughput')}",
        f"p50 ttft={summary.get('p50_ttft_ms')} p50 itl={summary.get('p50_itl_ms')}",
        f"completed={summary.get('completed')} failed={summary.get('failed')}")
    return summary


def main_() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "/tmp/issue10")))
    p.add_argument("--config", default=str(REPO / "bench/gpu/qwen3-8b-dummy-h200.yaml"))
    p.add_argument("--model-dir", default="/root/qwen3-8b-dummy")
    p.add_argument("--bare-port", type=int, default=8100)
    p.add_argument("--stack-port", type=int, default=8000)
    p.add_argument("--ray-cpus", type=int, default=16)
    p.add_argument("--budget-s", type=float, default=float(os.environ.get("ISSUE10_BUDGET_S", 500)))
    p.add_argument("--concurrency", default="1,64,256")
    p.add_argument("--prompts", default="12,256,768", help="num prompts per concurrency")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--input-len", type=int, default=256)
    p.add_argument("--output-len", type=int, default=128)
    p.add_argument("--skip-bare", action="store_true")
    p.add_argument("--skip-stack", action="store_true")
    a = p.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    hard_deadline = T0 + a.budget_s
    config = yaml.safe_load(Path(a.config).read_text())
    model_args = config["applications"][0]["args"]["models"][0]
    # Every model of the config is the same engine with other stack settings (e.g. stream
    # batching); bare vLLM answers to all their names.
    a.served_names = [m["name"] for m in config["applications"][0]["args"]["models"]]
    # Bare vLLM gets exactly the engine arguments of the config (same engine, same KV cache).
    a.shared_engine_cli = []
    for key, value in model_args.get("engine_args", {}).items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            a.shared_engine_cli.append(flag)
        elif value is not False:
            a.shared_engine_cli += [flag, str(value)]

    result: dict = {
        "issue": 10, "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "config": a.config, "engine_args": model_args.get("engine_args"),
        "bench": {"input_len": a.input_len, "output_len": a.output_len, "dataset": "random",
                  "ignore_eos": True, "endpoint": "/v1/completions", "rounds": a.rounds},
        "stack": {}, "bare": {}, "runs": [], "notes": [],
    }
    sampler = GpuSampler()
    result["gpu_stats_source"] = sampler.source
    result["cluster_gpu_stats"] = sampler.gpu_stats_module
    result["gpu_name"] = sampler.name
    sampler.start()
    try:
        import ray
        import torch
        import vllm

        result["versions"] = {"vllm": vllm.__version__, "ray": ray.__version__,
                              "torch": torch.__version__, "cuda": torch.version.cuda,
                              "python": sys.version.split()[0]}
    except Exception as error:
        result["versions"] = repr(error)

    bare_proc = None
    stack_ok = False
    bare_base = f"http://127.0.0.1:{a.bare_port}"
    stack_base = f"http://127.0.0.1:{a.stack_port}"
    try:
        # Both start at once (each compiles its CUDA graphs): start-up is most of the budget.
        t = time.monotonic()
        if not a.skip_bare:
            bare_proc = start_bare_vllm(a, a.out)
        if not a.skip_stack:
            try:
                stack_ok = start_stack(a, config, a.out, result,
                                       min(hard_deadline - 120, time.monotonic() + 300))
            except Exception:
                result["stack"]["error"] = traceback.format_exc()[-4000:]
                log("stack failed:\n", result["stack"]["error"])
        if bare_proc is not None:
            ok = wait_ready(f"{bare_base}/health", min(hard_deadline, time.monotonic() + 240), bare_proc)
            result["bare"] = {"ready": ok, "start_s": round(time.monotonic() - t, 1)}
            log("bare vLLM ready:", ok, result["bare"]["start_s"], "s")
        result["gpu_processes"] = sampler.processes()
        log("GPU processes:", result["gpu_processes"])
        bare = [("bare", bare_base, a.served_names[0])] if result["bare"].get("ready") else []
        result["greedy_probe"] = {}
        concurrencies = [int(c) for c in a.concurrency.split(",")]
        prompts = [int(n) for n in a.prompts.split(",")]
        # One phase per model of the config (the stack's settings differ, the engine not):
        # the first is deployed above, each later one replaces it.
        for phase, model in enumerate(a.served_names):
            if phase and stack_ok:
                record = result["stack"].setdefault("redeploys", {}).setdefault(model, {})
                stack_ok = deploy_stack(config["applications"][0]["args"], phase, record,
                                        hard_deadline - 60)
            targets = ([(f"stack:{model}", stack_base, model)] if stack_ok else []) + bare
            for name, base, served in targets:
                if name not in result["greedy_probe"]:
                    try:
                        result["greedy_probe"][name] = greedy_probe(base, served)
                    except Exception as error:
                        result["greedy_probe"][name] = {"error": repr(error)}
            texts = {probe.get("text") for probe in result["greedy_probe"].values()}
            result["greedy_equal_stack_vs_bare"] = len(result["greedy_probe"]) > 1 and len(texts) == 1
            for rnd in range(a.rounds):
                order = targets if rnd % 2 == 0 else list(reversed(targets))
                for conc, num in zip(concurrencies, prompts):
                    if phase and conc == 1:
                        continue  # the phases' settings differ only once streams overlap
                    for name, base, served in order:
                        if time.monotonic() > hard_deadline - 25:
                            result["notes"].append(f"stopped before {model} round {rnd} c={conc} {name}: budget")
                            raise TimeoutError("budget")
                        tag = f"p{phase}_r{rnd}_c{conc}_{name.split(':')[0]}"
                        summary = run_bench(a, name, base, served, conc, num, tag, a.out, sampler)
                        summary.update(round=rnd, phase=phase)
                        result["runs"].append(summary)
                        if name.startswith("stack:") and "gpu_metrics" not in result["stack"]:
                            # Read while the GPU is busy: the stack's own GPU stats, not the bench's.
                            result["stack"]["gpu_metrics"] = stack_gpu_metrics()
                            log("GPU stats in the stack's metrics:", result["stack"]["gpu_metrics"][:8])
                        (a.out / "issue10.json").write_text(json.dumps(result, indent=1, default=str))
    except TimeoutError:
        log("budget reached")
    except Exception:
        result["error"] = traceback.format_exc()[-4000:]
        log("error:\n", result["error"])
    finally:
        result["gpu_processes_end"] = sampler.processes()
        result["elapsed_s"] = round(time.monotonic() - T0, 1)
        (a.out / "issue10.json").write_text(json.dumps(result, indent=1, default=str))
        try:
            (a.out / "gpu_samples.json").write_text(json.dumps(sampler.samples))
            collect_ray_logs(a.out)
        except Exception as error:
            log("log collection failed:", repr(error))
        if bare_proc is not None and bare_proc.poll() is None:
            os.killpg(bare_proc.pid, signal.SIGTERM)
    log("done; results in", a.out / "issue10.json")
    return 0


if __name__ == "__main__":
    sys.exit(main_())
