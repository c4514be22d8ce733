"""What the planner knows about models and GPUs: typed, frozen facts loaded from cluster/data/.

Every fact in the data files is `{value, source[, unverified][, note]}`. Loading strips that
wrapper so the planner reads plain values (`model.num_hidden_layers`), while the provenance of
each fact stays on the object (`model.sources["num_hidden_layers"].citation`). A source is either
a key of the file's `sources:` table or a `computed: <formula>` string; anything else is a data
error, caught at load time.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

DATA_DIR = Path(__file__).parent / "data"


class CatalogLookupError(LookupError):
    """An id the catalog does not know; the message lists the ids it does know."""


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Source(Frozen):
    citation: str
    unverified: bool = False
    note: str | None = None


class Precision(StrEnum):
    """How linear weights are stored; embeddings, norms and routers stay bf16 in every scheme."""

    BF16 = "bf16"
    FP8 = "fp8"
    INT4 = "int4"
    NVFP4 = "nvfp4"

    @property
    def bits(self) -> int:
        return {"bf16": 16, "fp8": 8, "int4": 4, "nvfp4": 4}[self.value]


class AttentionKind(StrEnum):
    GQA = "gqa"
    MHA = "mha"
    MLA = "mla"


class QkNorm(StrEnum):
    NONE = "none"
    PER_HEAD = "per_head"  # Qwen3: one head_dim-wide norm shared by all heads
    FULL = "full"  # Olmo 3: a norm over the whole q and k projections


class MlaFacts(Frozen):
    q_lora_rank: int
    kv_lora_rank: int
    qk_nope_head_dim: int
    qk_rope_head_dim: int
    v_head_dim: int

    @property
    def qk_head_dim(self) -> int:
        return self.qk_nope_head_dim + self.qk_rope_head_dim

    @property
    def cached_width(self) -> int:
        """Values vLLM caches per token and layer: the compressed latent plus the rope key."""
        return self.kv_lora_rank + self.qk_rope_head_dim


class MoeFacts(Frozen):
    num_routed_experts: int
    num_shared_experts: int
    num_experts_per_token: int
    moe_intermediate_size: int
    first_dense_layers: int
    topk_method: str | None

    @property
    def router_has_bias(self) -> bool:
        # DeepSeek-V3-style aux-loss-free routing adds a per-expert score-correction bias.
        return self.topk_method == "noaux_tc"


class SlidingWindowFacts(Frozen):
    window: int
    full_attention_every: int

    def is_sliding(self, layer: int, num_layers: int) -> bool:
        full = (layer + 1) % self.full_attention_every == 0 or layer == num_layers - 1
        return not full


class ParamCounts(Frozen):
    total: int = Field(
        description="decoder + embeddings + head; MTP layers and vision encoder excluded"
    )
    active: int | None = None
    vision: int = 0
    published: str


class Checkpoint(Frozen):
    precision: Precision
    hf_repo: str
    quantized_parts: Literal["all_linear", "routed_experts"] = "all_linear"
    fp8_weight_block: tuple[int, int] | None = None
    int4_group_size: int | None = None
    weight_bytes: int | None = Field(
        default=None, description="exact size when known, else estimated"
    )


class ModelSpec(Frozen):
    id: str
    name: str
    aliases: tuple[str, ...] = ()
    hf_repos: tuple[str, ...]
    architectures: tuple[str, ...]
    model_type: str
    torch_dtype: Literal["bfloat16"]
    num_hidden_layers: int
    hidden_size: int
    intermediate_size: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int | None = None
    vocab_size: int
    tie_word_embeddings: bool
    max_position_embeddings: int
    mtp_layers: int
    attention: AttentionKind
    qkv_bias: bool = False
    qk_norm: QkNorm = QkNorm.NONE
    mla: MlaFacts | None = None
    moe: MoeFacts | None = None
    sliding_window: SlidingWindowFacts | None = None
    params: ParamCounts
    native_checkpoint: Checkpoint
    other_checkpoints: tuple[Checkpoint, ...] = ()
    kv_bytes_per_token_bf16: int
    notes: tuple[str, ...] = ()
    sources: Mapping[str, Source] = Field(default_factory=dict, repr=False)

    @model_validator(mode="after")
    def _attention_facts_agree(self) -> ModelSpec:
        if (self.attention is AttentionKind.MLA) != (self.mla is not None):
            raise ValueError(f"{self.id}: mla facts must be present exactly for attention: mla")
        if self.attention is not AttentionKind.MLA and self.head_dim is None:
            raise ValueError(f"{self.id}: {self.attention} attention needs head_dim")
        is_mha = self.num_key_value_heads == self.num_attention_heads
        if self.attention is not AttentionKind.MLA and is_mha != (
            self.attention is AttentionKind.MHA
        ):
            raise ValueError(
                f"{self.id}: attention {self.attention} disagrees with the head counts"
            )
        return self

    @property
    def dense_layers(self) -> int:
        """Layers with a dense MLP: all of a dense model, the first few of a DeepSeek-style MoE."""
        return self.moe.first_dense_layers if self.moe else self.num_hidden_layers

    @property
    def checkpoints(self) -> tuple[Checkpoint, ...]:
        return (self.native_checkpoint, *self.other_checkpoints)

    @property
    def unverified_facts(self) -> tuple[str, ...]:
        return tuple(path for path, source in self.sources.items() if source.unverified)


class GpuType(Frozen):
    id: str
    name: str
    memory_gb: float = Field(description="vendor figure; the planner counts 1 GB as 1e9 bytes")
    hbm_bandwidth_tb_s: float
    peer_link: Literal["nvlink", "xgmi", "pcie"]
    peer_link_description: str
    peer_bandwidth_gb_s: float
    ray_accelerator_type: str
    sources: Mapping[str, Source] = Field(default_factory=dict, repr=False)

    @property
    def memory_bytes(self) -> int:
        return int(self.memory_gb * 1e9)


class MachineType(Frozen):
    cloud: Literal["aws", "gcp", "azure"]
    instance_type: str
    gpu: str
    gpus: int
    scale_out_per_gpu: str
    cloud_accelerator: str | None = None
    sources: Mapping[str, Source] = Field(default_factory=dict, repr=False)


def models() -> tuple[ModelSpec, ...]:
    return _catalog()[0]


def gpus() -> tuple[GpuType, ...]:
    return _catalog()[1]


def machine_types(gpu_id: str | None = None) -> tuple[MachineType, ...]:
    machines = _catalog()[2]
    return tuple(m for m in machines if gpu_id is None or m.gpu == gpu_id)


def get_model(model_id: str) -> ModelSpec:
    """The model whose id or alias is `model_id` (case-insensitive)."""
    wanted = model_id.lower()
    for model in models():
        if wanted == model.id or wanted in model.aliases:
            return model
    known = ", ".join(m.id for m in models())
    aliases = ", ".join(f"{a} (= {m.id})" for m in models() for a in m.aliases)
    raise CatalogLookupError(
        f"unknown model {model_id!r}; known models: {known}; aliases: {aliases}"
    )


def get_gpu(gpu_id: str) -> GpuType:
    """The GPU type `gpu_id` (case-insensitive: h200 = H200)."""
    for gpu in gpus():
        if gpu.id.lower() == gpu_id.lower():
            return gpu
    known = ", ".join(g.id for g in gpus())
    raise CatalogLookupError(f"unknown GPU {gpu_id!r}; known GPUs: {known}")


@functools.cache
def _catalog() -> tuple[tuple[ModelSpec, ...], tuple[GpuType, ...], tuple[MachineType, ...]]:
    model_doc = yaml.safe_load((DATA_DIR / "models.yaml").read_text())
    gpu_doc = yaml.safe_load((DATA_DIR / "gpus.yaml").read_text())
    loaded_models = _load_entries(model_doc, "models", ModelSpec)
    loaded_gpus = _load_entries(gpu_doc, "gpus", GpuType)
    loaded_machines = _load_entries(gpu_doc, "machines", MachineType)
    _check_unique(
        [m.id for m in loaded_models] + [a for m in loaded_models for a in m.aliases], "model id"
    )
    _check_unique([g.id for g in loaded_gpus], "GPU id")
    gpu_ids = {g.id for g in loaded_gpus}
    for machine in loaded_machines:
        if machine.gpu not in gpu_ids:
            raise ValueError(f"machine {machine.instance_type} names unknown GPU {machine.gpu!r}")
    return loaded_models, loaded_gpus, loaded_machines


def _load_entries(document: dict[str, Any], section: str, cls: type[Frozen]) -> tuple[Any, ...]:
    table: dict[str, str] = document["sources"]
    entries = []
    for raw in document[section]:
        sources: dict[str, Source] = {}
        values = _unwrap_facts(raw, "", table, sources)
        entries.append(cls.model_validate({**values, "sources": sources}))
    return tuple(entries)


def _unwrap_facts(node: Any, path: str, table: dict[str, str], sources: dict[str, Source]) -> Any:
    """`node` with each `{value, source, ...}` leaf replaced by its value; sources kept by path."""
    if isinstance(node, dict) and "value" in node and "source" in node:
        sources[path] = Source(
            citation=_resolve_citation(node["source"], path, table),
            unverified=node.get("unverified", False),
            note=node.get("note"),
        )
        return node["value"]
    if isinstance(node, dict):
        return {
            k: _unwrap_facts(v, f"{path}.{k}" if path else k, table, sources)
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_unwrap_facts(v, f"{path}.{i}", table, sources) for i, v in enumerate(node)]
    return node


def _resolve_citation(source: str, path: str, table: dict[str, str]) -> str:
    if source in table:
        return table[source]
    if source.startswith("computed:"):
        return source
    raise ValueError(f"{path}: source {source!r} is neither a key of sources: nor 'computed: ...'")


def _check_unique(ids: list[str], what: str) -> None:
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise ValueError(f"duplicate {what}s in the catalog: {', '.join(duplicates)}")
