"""The schema of a Serve application's `args`: the single source of truth for every config.

YAML in (`applications[].args` of a Serve config file), validated objects out. A bad
config fails at `build_app` time with pydantic's message, which names the bad field
(e.g. `models.0.parallelism.tensor_parallel_size`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from autoscaling.config import AutoscalingConfig
from cluster.local_model import LOCAL_MODELS

# Engine arguments that the schema owns elsewhere: letting them in `engine_args` too
# would give two sources of truth for the same setting.
_ENGINE_ARGS_OWNED_BY_SCHEMA = {
    "model": "weights",
    "served_model_name": "name / aliases",
    "tensor_parallel_size": "parallelism.tensor_parallel_size",
    "pipeline_parallel_size": "parallelism.pipeline_parallel_size",
    "distributed_executor_backend": "placement (chosen from the accelerator)",
}

Accelerator = Literal["CPU", "H100", "H200", "B200", "A100", "L40S", "MI300X"]


class StrictModel(BaseModel):
    """Unknown keys are errors: a typo in a config must not be silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# vLLM load formats that load a giant checkpoint faster than the default safetensors reader.
FastLoadFormat = Literal[
    # Files saved per tensor-parallel rank by vLLM's save_sharded_state: each rank reads only
    # its own shard instead of every rank scanning every file.
    "sharded_state",
    # Run:ai Model Streamer: reads safetensors with many concurrent streams (local disk or
    # object store); needs the `runai-model-streamer` package on the GPU nodes.
    "runai_streamer",
    # The streamer over a sharded_state checkpoint.
    "runai_streamer_sharded",
    # InstantTensor: pipelined direct-I/O loading of safetensors onto CUDA devices (GPU only).
    "instanttensor",
    # fastsafetensors: pipelined safetensors reads into GPU memory, with GPUDirect Storage at
    # TP 1 where the filesystem has it (vLLM 0.32 reads through host buffers otherwise); GPU
    # only, needs the `fastsafetensors` package.
    "fastsafetensors",
]

_SOURCES = ("local", "twin", "path", "hf_repo", "url")


class WeightsNotStagedError(RuntimeError):
    """A replica started on a node without a complete staged copy of its weights."""


class WeightsSource(StrictModel):
    """Where the checkpoint comes from; exactly one of `local`, `twin`, `path`, `hf_repo`, `url`.

    Every source but `local` and `twin` is staged: `python -m cluster stage CONFIG` copies it onto the
    local disk of each node that hosts a worker, and the engine loads that copy only."""

    local: Literal[LOCAL_MODELS] | None = Field(  # type: ignore[valid-type]
        None, description="a model prepared on this machine by `python -m cluster.local_model`"
    )
    twin: str | None = Field(
        None,
        description="a catalog id: its scaled-down random-weight twin, written on this machine "
        "by cluster.twin_models (set by `twin: true`, see deployments.twin)",
    )
    path: str | None = Field(None, description="a directory on a shared filesystem")
    hf_repo: str | None = Field(None, description="a Hugging Face repo id, e.g. moonshotai/Kimi-K2.5")
    url: str | None = Field(
        None,
        description="an object-store prefix, e.g. s3://bucket/kimi-k2.5 (any fsspec URL; its "
        "filesystem package, e.g. s3fs, must be installed where `stage` runs)",
    )
    revision: str | None = Field(None, description="a commit or tag of `hf_repo`")
    allow_patterns: list[str] | None = Field(
        None, description="file patterns of the chosen format, e.g. ['*.safetensors', '*.json']"
    )
    staging_dir: str | None = Field(
        None,
        description="node-local directory for staged copies; default: the node's "
        "$GIANTSERVE_STAGING_DIR, else ~/.cache/giantserve/staged. A `path` source is "
        "staged only when this is set, else used where it is",
    )
    load_format: FastLoadFormat | None = Field(
        None, description="a faster vLLM loader for giant checkpoints; default: vLLM's auto"
    )

    @model_validator(mode="after")
    def _exactly_one_source(self) -> WeightsSource:
        chosen = [k for k in _SOURCES if getattr(self, k) is not None]
        if len(chosen) != 1:
            raise ValueError(
                f"set exactly one of {', '.join(_SOURCES)} (got {chosen or 'none'})"
            )
        if self.hf_repo is None and (self.revision or self.allow_patterns):
            raise ValueError("revision and allow_patterns apply only to hf_repo")
        if (self.local or self.twin) is not None and self.staging_dir is not None:
            raise ValueError("staging_dir does not apply to local models (they are not staged)")
        return self

    @property
    def is_staged(self) -> bool:
        """Whether replicas load these weights from a node-local staged copy: every source but
        a local model, a twin, and a `path` without a staging_dir (used where it is)."""
        return (
            self.hf_repo is not None
            or self.url is not None
            or (self.path is not None and self.staging_dir is not None)
        )

    def staged_directory(self) -> Path:
        """Where this node keeps (or would keep) its staged copy."""
        from cluster.staging import source_slug, staging_root

        if self.hf_repo is not None:
            slug = source_slug("hf", self.hf_repo, self.revision or "main")
        elif self.url is not None:
            slug = source_slug("url", self.url)
        elif self.path is not None:
            slug = source_slug("path", self.path)
        else:
            raise ValueError("local models are not staged")
        return staging_root(self.staging_dir) / slug

    def resolve(self) -> str:
        """The model argument vLLM gets: a local directory that holds a complete copy.

        Raises WeightsNotStagedError on a node without one: a replica must never download
        hundreds of GB inside its start-up."""
        if self.local is not None:
            from cluster.local_model import ensure_local_model

            return str(ensure_local_model(self.local))
        if self.twin is not None:
            from cluster.twin_models import ensure_twin

            return str(ensure_twin(self.twin))
        if not self.is_staged:
            # A path without a staging dir is used where it is: a shared filesystem, or
            # a directory already on every node.
            return str(self.path)
        import socket

        from cluster.staging import staged_copy_status

        directory = self.staged_directory()
        verdict = staged_copy_status(directory)
        if not verdict.ok:
            source = self.hf_repo or self.url or self.path
            raise WeightsNotStagedError(
                f"weights of {source} are not staged on node {socket.gethostname()}: "
                f"{verdict.detail}. Run `python -m cluster stage <serve config> --address "
                "<ray address>` before deploying."
            )
        return str(directory)


class ParallelismConfig(StrictModel):
    tensor_parallel_size: int = Field(1, ge=1, description="GPUs per TP group, inside one node")
    pipeline_parallel_size: int = Field(1, ge=1, description="pipeline stages, one node each")

    @property
    def workers(self) -> int:
        return self.tensor_parallel_size * self.pipeline_parallel_size


class PlacementConfig(StrictModel):
    accelerator: Accelerator = Field("CPU", description="GPU type of the nodes, or CPU")
    gpus_per_node: int = Field(8, ge=1, description="GPUs of one node of that type (GPU only)")
    cpus_per_worker: float = Field(1.0, gt=0, description="logical CPUs each engine worker holds")


class SloConfig(StrictModel):
    ttft_target_s: float = Field(2.0, gt=0, description="time-to-first-token target, seconds")


class SimulatedEngineConfig(StrictModel):
    """Replaces vLLM by a token-timing test double (deployments/simulated_engine.py)."""

    ttft_s: float = Field(0.05, ge=0, description="time to the first token")
    tokens_per_s: float = Field(50.0, gt=0, description="tokens per second per request")
    max_running: int = Field(64, ge=1, description="requests decoded at once; the rest wait")

class StreamBatchingConfig(StrictModel):
    """How an engine replica groups a stream's SSE pieces into Ray messages.

    Every message costs the same CPU on each hop (engine replica, ingress, proxy) however
    many tokens it carries, so under load the per-token cost, not the GPU, caps a
    replica's throughput. The first piece of a stream always leaves at once; after it,
    pieces wait up to a delay that grows with the streams in flight, so the replica's
    messages stay near `messages_per_s`: a lone stream is sent token by token.
    """

    messages_per_s: float = Field(
        1000.0, gt=0, description="stream messages per second one replica aims to stay under"
    )
    max_delay_ms: float = Field(
        50.0, ge=0, description="longest a token waits for others; 0 sends every piece at once"
    )

    def delay_s(self, streams_in_flight: int) -> float:
        """How long, after a message, the next one of a stream waits to gather pieces."""
        wanted = max(0, streams_in_flight - 1) / self.messages_per_s
        return min(wanted, self.max_delay_ms / 1000)


class LimitsConfig(StrictModel):
    """Per-model request limits, enforced in the ingress before an engine sees the request."""

    max_prompt_tokens: int | None = Field(
        None,
        ge=1,
        description="refuse prompts estimated above this many tokens (UTF-8 bytes / 4: the "
        "ingress does not tokenize; max_model_len stays the engine's exact limit)",
    )
    max_tokens_cap: int | None = Field(
        None,
        ge=1,
        description="largest max_tokens a client may ask for; also the value used when unset",
    )
    max_queued_requests_per_replica: int = Field(
        64,
        ge=1,
        description="requests that may wait for a free engine slot, per replica; beyond "
        "them the ingress answers 503 with Retry-After at once instead of piling up. Serve "
        "counts a request as waiting until a replica takes it, burst arrivals included, so "
        "its bound is max_ongoing_requests + this per replica",
    )
    request_timeout_s: float = Field(
        600.0, gt=0, description="a request (streams included) is cancelled after this long"
    )
    retry_after_s: int = Field(2, ge=1, description="Retry-After sent when the queue is full")


class SamplingDefaults(StrictModel):
    """Sampling values a model card recommends; vLLM request field names."""

    temperature: float | None = Field(None, ge=0)
    top_p: float | None = Field(None, gt=0, le=1)
    top_k: int | None = Field(None, ge=-1)
    min_p: float | None = Field(None, ge=0, le=1)
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    repetition_penalty: float | None = Field(None, gt=0)

    def values(self) -> dict[str, float | int]:
        return self.model_dump(exclude_none=True)


class ModeSwitch(StrictModel):
    """A chat-template switch (e.g. Qwen3 `enable_thinking`, Kimi `thinking`) with the
    sampling each of its two modes wants."""

    kwarg: str = Field(description="the chat_template_kwargs key, e.g. enable_thinking")
    default: bool = Field(True, description="the mode when the client leaves the key unset")
    when_on: SamplingDefaults = SamplingDefaults()
    when_off: SamplingDefaults = SamplingDefaults()


class RequestPolicy(StrictModel):
    """A model card's usage rules, applied only to fields the client left unset."""

    sampling: SamplingDefaults = SamplingDefaults()
    mode: ModeSwitch | None = None
    system_prompt: Literal["keep", "fold_into_first_user"] = Field(
        "keep", description="fold_into_first_user: for models that should get no system prompt"
    )
    math_instruction: str | None = Field(
        None,
        description="appended to the last user message (opt-in), e.g. DeepSeek-R1's "
        "'Please reason step by step, and put your final answer within \\boxed{}.'",
    )
    source: str | None = Field(None, description="where the values come from (model card)")


class ModelConfig(StrictModel):
    """One model behind the shared ingress: what it is, how the engine runs, where."""

    name: str = Field(description="the `model` clients send")
    aliases: list[str] = Field(default_factory=list, description="other names that route here")
    catalog_id: str | None = Field(
        None, description="the planner's id of this architecture (python -m cluster plan)"
    )
    weights: WeightsSource | None = Field(None, description="required unless simulated_engine")
    engine_args: dict[str, Any] = Field(
        default_factory=dict,
        description="vLLM engine and frontend arguments, by their `vllm serve` names "
        "(underscores), e.g. max_model_len, tool_call_parser",
    )
    parallelism: ParallelismConfig = ParallelismConfig()
    placement: PlacementConfig = PlacementConfig()
    num_replicas: int = Field(1, ge=1, description="a fixed fleet; leave unset with autoscaling")
    autoscaling: AutoscalingConfig | None = Field(
        None,
        description="replica counts from autoscaling.policy (instead of num_replicas); the "
        "builder fills in GPUs per replica and the TTFT target from this model",
    )
    max_ongoing_requests: int = Field(
        256, ge=1, description="requests one engine replica accepts at once"
    )
    slo: SloConfig = SloConfig()
    limits: LimitsConfig = LimitsConfig()
    request_policy: RequestPolicy | None = Field(
        None, description="model-card defaults applied where the client left a field unset"
    )
    routing: Literal["prefix_affinity", "power_of_two"] = Field(
        "prefix_affinity",
        description="how requests pick among replicas: prefix/session affinity bounded by "
        "load (deployments.routing), or Serve's plain power-of-two-choices",
    )
    stream_batching: StreamBatchingConfig = StreamBatchingConfig()
    simulated_engine: SimulatedEngineConfig | None = Field(
        None, description="serve this model with a token-timing test double instead of vLLM"
    )

    @field_validator("name", "aliases")
    @classmethod
    def _valid_model_names(cls, value: str | list[str]) -> str | list[str]:
        for name in [value] if isinstance(value, str) else value:
            if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}", name):
                raise ValueError(f"{name!r} is not a valid model name")
        return value

    @field_validator("engine_args")
    @classmethod
    def _engine_args_not_owned_elsewhere(cls, value: dict[str, Any]) -> dict[str, Any]:
        for key in value:
            if key in _ENGINE_ARGS_OWNED_BY_SCHEMA:
                raise ValueError(
                    f"engine_args.{key} is set by {_ENGINE_ARGS_OWNED_BY_SCHEMA[key]}, not here"
                )
            if "-" in key:
                raise ValueError(f"engine_args.{key}: use underscores ({key.replace('-', '_')})")
        return value

    @model_validator(mode="after")
    def _fixed_or_autoscaled(self) -> ModelConfig:
        if self.autoscaling is not None and "num_replicas" in self.model_fields_set:
            raise ValueError(
                "num_replicas: set either num_replicas (a fixed fleet) or autoscaling, not both"
            )
        return self

    @model_validator(mode="after")
    def _weights_unless_simulated(self) -> ModelConfig:
        if self.weights is None and self.simulated_engine is None:
            raise ValueError("weights: required (unless the model sets simulated_engine)")
        return self

    @model_validator(mode="after")
    def _one_load_format(self) -> ModelConfig:
        if self.weights and self.weights.load_format and "load_format" in self.engine_args:
            raise ValueError(
                "set load_format in weights.load_format or engine_args.load_format, not both"
            )
        return self

    @model_validator(mode="after")
    def _tensor_parallel_fits_a_node(self) -> ModelConfig:
        tp = self.parallelism.tensor_parallel_size
        if self.placement.accelerator != "CPU" and tp > self.placement.gpus_per_node:
            raise ValueError(
                f"parallelism.tensor_parallel_size={tp} exceeds placement.gpus_per_node="
                f"{self.placement.gpus_per_node}: a TP group must sit inside one node"
            )
        return self

    @property
    def served_names(self) -> list[str]:
        return [self.name, *self.aliases]

    @property
    def deployment_name(self) -> str:
        """A Serve deployment name derived from the model name (Serve forbids '/')."""
        return "engine-" + re.sub(r"[^A-Za-z0-9._-]", "-", self.name)


class RateLimits(StrictModel):
    requests_per_min: int | None = Field(None, ge=1, description="None: unlimited")
    tokens_per_min: int | None = Field(
        None, ge=1, description="prompt + completion tokens; None: unlimited"
    )


class AuthConfig(StrictModel):
    """API keys for the shared ingress. The keys themselves live outside the config: in the
    environment variable `keys_env` or the file `keys_file` (see deployments.auth)."""

    mode: Literal["off", "api_keys"] = Field(
        "off", description="off: anyone may call (logged loudly at start); api_keys: keys required"
    )
    keys_env: str = Field("GIANTSERVE_API_KEYS", description="environment variable with the keys")
    keys_file: str | None = Field(None, description="a secret file with the keys (wins over keys_env)")


class IngressConfig(StrictModel):
    num_replicas: int = Field(1, ge=1)
    max_ongoing_requests: int = Field(
        4096, ge=1, description="open requests one ingress replica holds (streams included)"
    )
    max_body_bytes: int = Field(4 * 1024 * 1024, ge=1024, description="request body size limit")
    node_labels: dict[str, str] = Field(
        default_factory=dict,
        description="Ray node labels the ingress replicas must run on, e.g. "
        "{giantserve.io/pool: ray-head}: an ingress on a GPU node that is lost cuts every "
        "stream it carries, for every model",
    )
    direct_streams: bool = Field(
        True,
        description="engine replicas send streamed pieces (after the first) to the ingress "
        "replica over one direct ZeroMQ TCP connection per pair, many streams to a message, "
        "not one Ray message per stream (deployments.response_channel). The ingress listens "
        "on a random port of its node's address; false keeps everything on Ray's ports",
    )
    auth: AuthConfig = AuthConfig()
    rate_limits: RateLimits = Field(
        RateLimits(),
        description="per-key limits for keys that set none (and for everyone when auth is off)",
    )


class AppConfig(StrictModel):
    """The `args` of one Serve application: every model behind one shared ingress."""

    models: list[ModelConfig] = Field(min_length=1)
    ingress: IngressConfig = IngressConfig()
    twin: bool = Field(
        False,
        description="serve every model as its CPU twin: same architecture, engine flags and "
        "ingress policies, tiny random weights (deployments.twin)",
    )

    @model_validator(mode="after")
    def _names_unique(self) -> AppConfig:
        seen: dict[str, str] = {}
        for model in self.models:
            for name in model.served_names:
                if name in seen:
                    raise ValueError(
                        f"model name {name!r} is used by both {seen[name]!r} and {model.name!r}"
                    )
                seen[name] = model.name
        deployments = [m.deployment_name for m in self.models]
        if len(set(deployments)) != len(deployments):
            raise ValueError(f"model names collide as Serve deployment names: {deployments}")
        return self


def load_app_config(serve_config_path: str | Path, application: str | None = None) -> AppConfig:
    """The AppConfig of one application of a Serve config file (the first if not named)."""
    document = yaml.safe_load(Path(serve_config_path).read_text())
    applications = document.get("applications") or []
    for app in applications:
        if application is None or app.get("name") == application:
            return AppConfig.model_validate(app.get("args") or {})
    raise ValueError(f"{serve_config_path}: no application {application or ''} found")
