"""One real local Ray + Serve + vLLM for the whole end-to-end run.

Every e2e module shares one Serve application built from
`configs/local-two-models.yaml` (the real SmolLM2 and a random-weight Llama), so
the engines load once per run.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
TWO_MODELS = REPO / "configs" / "local-two-models.yaml"
APP_NAME = "llm"


@pytest.fixture(scope="session")
def ray_cluster():
    import ray

    from cluster.local_ray import init_local_ray

    init_local_ray(num_cpus=16)
    yield
    from ray import serve

    serve.shutdown()
    ray.shutdown()


@pytest.fixture(scope="session")
def app_config() -> dict:
    return yaml.safe_load(TWO_MODELS.read_text())["applications"][0]["args"]


@pytest.fixture(scope="session")
def base_url(ray_cluster, app_config) -> str:
    from ray import serve

    from cluster.local_ray import free_loopback_port
    from deployments.app import build_app

    port = free_loopback_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(build_app(app_config), name=APP_NAME, route_prefix="/")
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=5).status_code == 200:
                return url
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError("the ingress did not become healthy")


@pytest.fixture(scope="session")
def model_names(app_config) -> list[str]:
    return [model["name"] for model in app_config["models"]]


@pytest.fixture(scope="session")
def engine_handle(base_url):
    """A handle to the SmolLM2 engine deployment, to read what the engine holds."""
    from ray import serve

    return serve.get_deployment_handle("engine-smollm2-135m-instruct", app_name=APP_NAME)


@pytest.fixture()
def client(base_url):
    from openai import OpenAI

    return OpenAI(base_url=f"{base_url}/v1", api_key="unused", max_retries=0, timeout=120)
