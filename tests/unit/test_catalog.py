"""The catalog: every model of the guide; facts that agree with each other and the reference."""

import pydantic
import pytest

from cluster import catalog
from cluster.catalog import AttentionKind, CatalogLookupError, Precision
from cluster.kv_cache import kv_bytes_per_token
from cluster.weights import stage_params, total_params, weight_format

GUIDE_MODELS = [
    "deepseek-r1",
    "deepseek-r1-distill-qwen-1.5b",
    "deepseek-r1-distill-qwen-7b",
    "deepseek-r1-distill-qwen-14b",
    "deepseek-r1-distill-qwen-32b",
    "deepseek-r1-distill-llama-8b",
    "deepseek-r1-distill-llama-70b",
    "kimi-k2.5",
    "mistral-large-3",
    "glm-4.7-flash",
    "qwen3-0.6b",
    "qwen3-1.7b",
    "qwen3-4b",
    "qwen3-8b",
    "qwen3-14b",
    "qwen3-32b",
    "qwen3-30b-a3b",
    "qwen3-235b-a22b",
    "llama-3.3-70b-instruct",
    "olmo-3-7b",
    "olmo-3-32b",
    "nemotron-orchestrator-8b",
    "smollm2-135m-instruct",
]
ALL_MODELS = [m.id for m in catalog.models()]


def test_catalog_holds_every_model_of_the_guide():
    assert sorted(ALL_MODELS) == sorted(GUIDE_MODELS)


def test_deepseek_r1_0528_is_an_alias_of_r1_marked_unverified():
    model = catalog.get_model("DeepSeek-R1-0528")
    assert model.id == "deepseek-r1"
    assert "deepseek-ai/DeepSeek-R1-0528" in model.hf_repos
    assert model.sources["aliases"].unverified


def test_unknown_model_error_lists_the_known_ids():
    with pytest.raises(CatalogLookupError) as error:
        catalog.get_model("gpt-5")
    message = str(error.value)
    assert "'gpt-5'" in message
    assert all(model_id in message for model_id in GUIDE_MODELS)


def test_unknown_gpu_error_lists_the_known_gpus():
    with pytest.raises(CatalogLookupError, match="H100, H200, B200, A100, L40S, MI300X"):
        catalog.get_gpu("X100")


def test_gpu_lookup_ignores_case():
    assert catalog.get_gpu("h200").id == "H200"


@pytest.mark.parametrize("model_id", ALL_MODELS)
def test_parameter_count_rebuilt_from_the_architecture_matches_the_catalog(model_id):
    # Guards every architecture number: the totals were cross-checked against the checkpoints.
    model = catalog.get_model(model_id)
    expected = model.params.total
    if model_id == "mistral-large-3":
        # The reference counts a router bias vLLM does not build here (see params.total's note).
        expected -= 58 * 128
    assert total_params(model) == expected


@pytest.mark.parametrize("model_id", ALL_MODELS)
def test_native_weight_bytes_rebuilt_from_the_architecture_match_the_checkpoint(model_id):
    model = catalog.get_model(model_id)
    whole = stage_params(model, range(model.num_hidden_layers), 1, first=True, last=True)
    rebuilt = whole.bytes_in(weight_format(model, "native"))
    assert rebuilt == pytest.approx(model.native_checkpoint.weight_bytes, rel=1e-3)


@pytest.mark.parametrize("model_id", ALL_MODELS)
def test_kv_bytes_per_token_from_the_architecture_match_the_reference(model_id):
    model = catalog.get_model(model_id)
    assert kv_bytes_per_token(model) == model.kv_bytes_per_token_bf16


@pytest.mark.parametrize(
    ("model_id", "layers", "cached"),
    [
        ("deepseek-r1", 61, 70_272),
        ("kimi-k2.5", 61, 70_272),
        ("mistral-large-3", 61, 70_272),
        ("glm-4.7-flash", 47, 54_144),
    ],
)
def test_mla_models_cache_a_576_wide_latent_per_layer(model_id, layers, cached):
    model = catalog.get_model(model_id)
    assert model.attention is AttentionKind.MLA
    assert model.mla.cached_width == 512 + 64
    assert model.num_hidden_layers == layers
    assert kv_bytes_per_token(model) == cached


def test_moe_facts_of_deepseek_r1():
    moe = catalog.get_model("deepseek-r1").moe
    assert (moe.num_routed_experts, moe.num_experts_per_token, moe.num_shared_experts) == (
        256,
        8,
        1,
    )
    assert (moe.moe_intermediate_size, moe.first_dense_layers, moe.router_has_bias) == (
        2048,
        3,
        True,
    )


def test_native_precisions_and_fp8_block_constraints():
    r1 = catalog.get_model("deepseek-r1").native_checkpoint
    kimi = catalog.get_model("kimi-k2.5").native_checkpoint
    assert (r1.precision, r1.fp8_weight_block) == (Precision.FP8, (128, 128))
    assert (kimi.precision, kimi.quantized_parts, kimi.int4_group_size) == (
        Precision.INT4,
        "routed_experts",
        32,
    )
    qwen_fp8 = next(
        c for c in catalog.get_model("qwen3-235b-a22b").checkpoints if c.precision is Precision.FP8
    )
    assert (qwen_fp8.hf_repo, qwen_fp8.fp8_weight_block) == ("Qwen/Qwen3-235B-A22B-FP8", (128, 128))


def test_olmo3_sliding_window_pattern_gives_one_full_layer_in_four():
    model = catalog.get_model("olmo-3-7b")
    window = model.sliding_window
    sliding = [layer for layer in range(32) if window.is_sliding(layer, 32)]
    assert window.window == 4096
    assert len(sliding) == 24
    assert not window.is_sliding(31, 32)


def test_smollm2_matches_its_hf_config():
    model = catalog.get_model("smollm2-135m-instruct")
    assert model.architectures == ("LlamaForCausalLM",)
    shape = (
        model.num_hidden_layers,
        model.hidden_size,
        model.num_attention_heads,
        model.num_key_value_heads,
    )
    assert shape == (30, 576, 9, 3)
    assert (model.head_dim, model.intermediate_size, model.vocab_size) == (64, 1536, 49152)
    assert model.tie_word_embeddings and model.max_position_embeddings == 8192
    assert model.native_checkpoint.precision is Precision.BF16
    assert "SmolLM2-135M-Instruct" in model.sources["hidden_size"].citation


def test_unverified_markers_are_kept():
    assert "num_hidden_layers" in catalog.get_model("olmo-3-7b").unverified_facts
    assert (
        "num_attention_heads" in catalog.get_model("deepseek-r1-distill-llama-70b").unverified_facts
    )
    assert (
        "native_checkpoint.fp8_weight_block"
        in catalog.get_model("mistral-large-3").unverified_facts
    )
    assert catalog.get_model("qwen3-32b").unverified_facts == ()


def test_every_fact_cites_a_source():
    for model in catalog.models():
        assert "num_hidden_layers" in model.sources
        assert all(source.citation for source in model.sources.values())
    citation = catalog.get_model("kimi-k2.5").sources["hidden_size"].citation
    assert citation.startswith("ai-dynamo/aiconfigurator@095f58a5")


def test_facts_are_frozen():
    model = catalog.get_model("qwen3-8b")
    with pytest.raises(pydantic.ValidationError):
        model.num_hidden_layers = 1


@pytest.mark.parametrize(
    ("gpu_id", "memory_gb", "ray_type", "link"),
    [
        ("H100", 80, "H100", "nvlink"),
        ("H200", 141, "H200", "nvlink"),
        ("B200", 180, "B200", "nvlink"),
        ("A100", 80, "A100", "nvlink"),
        ("L40S", 48, "L40S", "pcie"),
        ("MI300X", 192, "AMD-Instinct-MI300X-OAM", "xgmi"),
    ],
)
def test_gpu_types(gpu_id, memory_gb, ray_type, link):
    gpu = catalog.get_gpu(gpu_id)
    assert (gpu.memory_gb, gpu.ray_accelerator_type, gpu.peer_link) == (memory_gb, ray_type, link)


def test_h200_machine_types_per_cloud():
    machines = {(m.cloud, m.instance_type): m for m in catalog.machine_types("H200")}
    assert set(machines) == {
        ("aws", "p5e.48xlarge"),
        ("aws", "p5en.48xlarge"),
        ("gcp", "a3-ultragpu-8g"),
        ("azure", "Standard_ND96isr_H200_v5"),
    }
    assert all(m.gpus == 8 for m in machines.values())
    assert machines[("gcp", "a3-ultragpu-8g")].scale_out_per_gpu == "400 Gb/s RDMA (gIB)"
    assert machines[("aws", "p5e.48xlarge")].scale_out_per_gpu == "400 Gb/s EFA"
