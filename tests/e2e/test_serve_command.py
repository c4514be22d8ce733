"""The README's first command: `python -m deployments.run_local configs/local.yaml` (what
`make serve` runs) serves the default model through the full stack and stops cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from cluster.local_ray import free_loopback_port

REPO = Path(__file__).resolve().parents[2]
READY = "[giantserve] ready"
READY_WITHIN_S = 400

pytestmark = pytest.mark.e2e


def test_the_serve_command_answers_the_openai_client_and_stops_on_sigterm(tmp_path):
    from openai import OpenAI

    document = yaml.safe_load((REPO / "configs" / "local.yaml").read_text())
    port = free_loopback_port()
    document["http_options"]["port"] = port
    config = tmp_path / "local.yaml"
    config.write_text(yaml.safe_dump(document))
    # A cluster of its own, not one a RAY_ADDRESS in the environment names.
    env = {key: value for key, value in os.environ.items() if key != "RAY_ADDRESS"}
    server = subprocess.Popen(
        [sys.executable, "-m", "deployments.run_local", str(config)],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    output: list[str] = []
    ready = threading.Event()

    def read() -> None:
        for line in server.stdout:
            output.append(line)
            if READY in line:
                ready.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + READY_WITHIN_S
        while not ready.wait(timeout=1):
            assert server.poll() is None, "it exited:\n" + "".join(output[-40:])
            assert time.monotonic() < deadline, "not ready in time:\n" + "".join(output[-40:])
        client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0)
        assert [m.id for m in client.models.list().data][0] == "smollm2-135m-instruct"
        reply = client.chat.completions.create(
            model="default",
            messages=[{"role": "user", "content": "What is the capital of France?"}],
            temperature=0, max_tokens=12,
        )  # fmt: skip
        assert "Paris" in reply.choices[0].message.content
    finally:
        server.send_signal(signal.SIGTERM)
        returncode = server.wait(timeout=120)
        reader.join(timeout=10)
    log = "".join(output)
    assert returncode == 0, log[-4000:]
    assert "SIGTERM received" not in log
