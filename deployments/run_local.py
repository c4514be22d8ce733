"""Serve a config file on this machine through the full stack and say how to call it.

    python -m deployments.run_local configs/local.yaml

The same as `serve run configs/local.yaml`, plus the loopback-only Ray settings, a
probe request that measures the time to the first token, and a usage message.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
import urllib.request
from pathlib import Path

import yaml


def first_token_seconds(base_url: str, model: str, started: float) -> float:
    """Stream one chat request; seconds from `started` to its first content token."""
    body = json.dumps(
        {
            "model": model,
            "messages": [{"role": "user", "content": "Say hello."}],
            "max_tokens": 8,
            "stream": True,
        }
    ).encode()
    request = urllib.request.Request(
        f"{base_url}/v1/chat/completions", body, {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        for line in response:
            if line.startswith(b"data: ") and b'"content"' in line:
                return time.monotonic() - started
    raise RuntimeError("the probe stream ended without a token")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path, help="a Serve config file, e.g. configs/local.yaml")
    options = parser.parse_args(argv)
    started = time.monotonic()

    from ray import serve

    from cluster.local_ray import init_local_ray
    from deployments.app import build_app

    document = yaml.safe_load(options.config.read_text())
    http = document.get("http_options") or {}
    host, port = http.get("host", "127.0.0.1"), int(http.get("port", 8000))
    application = document["applications"][0]

    init_local_ray(include_dashboard=True)
    serve.start(http_options={"host": host, "port": port})
    print(f"[giantserve] deploying {options.config} (engines load, ~30 s per model on 2 cores)")
    serve.run(
        build_app(application.get("args") or {}),
        name=application.get("name", "default"),
        route_prefix=application.get("route_prefix", "/"),
    )
    base_url = f"http://{host}:{port}"
    model = application["args"]["models"][0]["name"]
    ttft = first_token_seconds(base_url, model, started)
    print(
        f"""
[giantserve] ready: first token {ttft:.1f} s after the serve command.
  Models:   curl {base_url}/v1/models
  Chat:     curl {base_url}/v1/chat/completions -H 'Content-Type: application/json' \\
              -d '{{"model": "{model}", "messages": [{{"role": "user", "content": "What is the capital of France?"}}]}}'
  Python:   OpenAI(base_url="{base_url}/v1", api_key="unused").chat.completions.create(...)
  Dashboard: http://127.0.0.1:8265   Stop: Ctrl-C
""",
        flush=True,
    )
    # `kill`, a container stop or a service manager send SIGTERM: stop as Ctrl-C does, where
    # Ray's own handler would print a stack dump and abort with the cluster still up.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        serve.shutdown()
        sys.exit(0)


if __name__ == "__main__":
    main()
