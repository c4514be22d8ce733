"""Observability on the real stack (the session's two-model app): Ray metrics on the
node's export endpoint, one trace across the ingress and engine processes, the JSON
request log line, and the GPU-stats actor's no-NVML path."""

from __future__ import annotations

import json
import os
import re
import tempfile
import threading
import time
from pathlib import Path

import httpx
import pytest

from deployments.observability.metrics import SERVING_METRICS
from deployments.observability.request import TRACE_ID_HEADER
from deployments.observability.tracing import TRACES_DIR_ENV

# Set at collection, before the session's Ray starts: its ingress and engine processes
# inherit them (a file exporter per process, flushed quickly).
os.environ.setdefault(TRACES_DIR_ENV, tempfile.mkdtemp(prefix="giantserve-traces-"))
os.environ.setdefault("OTEL_BSP_SCHEDULE_DELAY", "200")
TRACES_DIR = Path(os.environ[TRACES_DIR_ENV])

SMOL, TINY = "smollm2-135m-instruct", "tiny-random-llama"
# Long enough to fill whole KV blocks, so that a repeat hits the prefix cache.
LONG_PROMPT = " ".join(f"word{i}" for i in range(400))


def scrape() -> dict[str, list[tuple[dict, float]]]:
    """The node's Ray metrics: series name -> [(labels, value)]."""
    import ray

    port = ray.nodes()[0]["MetricsExportPort"]
    series: dict[str, list[tuple[dict, float]]] = {}
    for line in httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text.splitlines():
        match = re.match(r"^(ray_giantserve_\w+)\{(.*)\} (\S+)$", line)
        if match:
            labels = dict(re.findall(r'(\w+)="([^"]*)"', match[2]))
            series.setdefault(match[1], []).append((labels, float(match[3])))
    return series


def nonzero_series_name(spec) -> str:
    return {"counter": f"ray_{spec.name}_total", "histogram": f"ray_{spec.name}_count"}.get(
        spec.kind, f"ray_{spec.name}"
    )


def missing_metrics(series) -> list[str]:
    return [
        spec.name
        for spec in SERVING_METRICS
        if not any(
            value > 0 and labels.get("model") in (SMOL, TINY) and labels.get("replica")
            for labels, value in series.get(nonzero_series_name(spec), [])
        )
    ]


class HeldStreams:
    """More long streams than the tiny model's max_num_seqs (32): some run, some wait."""

    def __init__(self, base_url: str, count: int = 40):
        self._stop = threading.Event()
        body = {"model": TINY, "prompt": "hello", "max_tokens": 900, "ignore_eos": True, "stream": True}

        def hold() -> None:
            with httpx.stream("POST", f"{base_url}/v1/completions", json=body, timeout=300) as reply:
                for _ in reply.iter_raw():
                    if self._stop.is_set():
                        return

        self._threads = [threading.Thread(target=hold, daemon=True) for _ in range(count)]
        for thread in self._threads:
            thread.start()

    def close(self) -> None:
        # Closing the connections makes the ingress cancel and vLLM abort the requests.
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)


def test_every_serving_metric_reaches_the_nodes_export_endpoint(base_url, client):
    # The openai client closes a stream as soon as it reads `[DONE]`: the request must
    # still count as answered, with its engine replica (TTFT is recorded for streams only).
    stream = client.chat.completions.create(
        model=SMOL, messages=[{"role": "user", "content": "Count to five."}], max_tokens=8, stream=True
    )
    assert [chunk for chunk in stream]
    # Last, so that the hit rate's latest interval with queries has the repeat's hits.
    for _ in range(2):
        client.completions.create(model=SMOL, prompt=LONG_PROMPT, max_tokens=4)
    held = HeldStreams(base_url)
    try:
        deadline, missing = time.monotonic() + 120, ["not scraped yet"]
        while missing and time.monotonic() < deadline:
            time.sleep(2)
            missing = missing_metrics(scrape())
    finally:
        held.close()
    assert not missing, f"no non-zero series for {missing}"
    deadline, statuses = time.monotonic() + 60, set()
    while not statuses >= {"200", "499"} and time.monotonic() < deadline:
        time.sleep(2)
        statuses = {labels["status"] for labels, _ in scrape().get("ray_giantserve_requests_total", [])}
    assert statuses >= {"200", "499"}  # the streams closed early count as client-gone


def spans_of(trace_id: str) -> list[dict]:
    spans = []
    for path in TRACES_DIR.glob("*.jsonl"):
        for line in path.read_text().splitlines():
            span = json.loads(line)
            if span["context"]["trace_id"] == f"0x{trace_id}":
                spans.append({**span, "file": path.name})
    return spans


def test_one_trace_spans_the_ingress_and_engine_processes(base_url):
    body = {"model": SMOL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4, "stream": True}
    with httpx.stream("POST", f"{base_url}/v1/chat/completions", json=body, timeout=120) as reply:
        assert reply.status_code == 200
        trace_id = reply.headers[TRACE_ID_HEADER]
        reply.read()
    wanted = {"POST /v1/chat", "route", "engine", "queue", "prefill", "decode"}
    deadline = time.monotonic() + 60
    spans = spans_of(trace_id)
    while {span["name"] for span in spans} != wanted and time.monotonic() < deadline:
        time.sleep(0.5)
        spans = spans_of(trace_id)
    by_name = {span["name"]: span for span in spans}
    assert set(by_name) == wanted
    assert by_name["route"]["parent_id"] == by_name["POST /v1/chat"]["context"]["span_id"]
    assert by_name["engine"]["parent_id"] == by_name["route"]["context"]["span_id"]
    assert by_name["engine"]["file"] != by_name["route"]["file"]  # another process
    for phase in ("queue", "prefill", "decode"):
        assert by_name[phase]["parent_id"] == by_name["engine"]["context"]["span_id"]


def request_log_line(request_id: str) -> dict | None:
    import ray

    # Ray sends each worker's stderr (the ingress replica's included) to worker-*.err.
    logs = Path(ray._private.worker.global_worker.node.get_logs_dir_path())  # noqa: SLF001
    for path in logs.glob("worker-*.err"):
        for line in path.read_text(errors="replace").splitlines():
            if request_id in line and '"event":"request"' in line:
                return json.loads(line[line.index("{") :])
    return None


def wait_for_log_line(request_id: str) -> dict | None:
    deadline = time.monotonic() + 60
    while (line := request_log_line(request_id)) is None and time.monotonic() < deadline:
        time.sleep(0.5)
    return line


def test_one_json_log_line_per_request_without_the_prompt(base_url):
    body = {"model": SMOL, "prompt": "The secret word is swordfish.", "max_tokens": 3}
    reply = httpx.post(f"{base_url}/v1/completions", json=body, timeout=120)
    assert reply.status_code == 200
    line = wait_for_log_line(reply.headers["x-request-id"])
    assert line is not None
    assert line["model"] == SMOL and line["status"] == 200 and line["key_id"] == "anonymous"
    assert line["generated_tokens"] == 3 and line["prompt_tokens"] > 0
    assert line["overhead_s"] > 0 and line["engine_s"] > 0 and line["replica"]
    assert "swordfish" not in json.dumps(line)


def test_streams_closed_as_soon_as_done_arrives_are_logged_as_answered(base_url):
    # A race when it goes wrong (the client's close against the engine's last message): several tries.
    body = {"model": SMOL, "prompt": "Count to three:", "max_tokens": 2, "stream": True}
    request_ids = []
    for _ in range(20):
        with httpx.stream("POST", f"{base_url}/v1/completions", json=body, timeout=120) as reply:
            request_ids.append(reply.headers["x-request-id"])
            for event in reply.iter_lines():
                if event == "data: [DONE]":
                    break  # leaving the block closes the connection without reading on
    lines = [wait_for_log_line(request_id) for request_id in request_ids]
    assert all(line is not None for line in lines)
    assert [(line["status"], bool(line["replica"]), line["generated_tokens"]) for line in lines] == [
        (200, True, 2)
    ] * len(lines)


def test_gpu_stats_actor_without_nvml_says_so_and_keeps_running(base_url):
    import ray

    from cluster.gpu_stats_actor import ensure_gpu_stats_actors

    node = ray.get_runtime_context().get_node_id()
    (actor,) = ensure_gpu_stats_actors([node])
    try:
        assert ray.get(actor.status.remote(), timeout=60) == "no NVML on this node"
        (again,) = ensure_gpu_stats_actors([node, node])  # one per node, however often asked
        assert ray.get(again.status.remote(), timeout=60) == "no NVML on this node"
    finally:
        ray.kill(actor)
