"""The planner against published facts: memory table, recipes' layouts, vLLM's rules."""

import itertools

import pytest

from cluster import catalog
from cluster.kv_cache import kv_bytes_per_token_per_layer, kv_cache_capacity
from cluster.planner import (
    InfeasiblePlanError,
    PlanRequest,
    candidate_layouts,
    pipeline_stage_layers,
    plan,
    tensor_parallel_problem,
)
from cluster.runtime_reserve import FIXED_OVERHEAD_BYTES, runtime_reserve_bytes
from cluster.weights import PrecisionNotAvailableError, total_weight_bytes, weight_format


def _plan(model, gpu, **overrides):
    return plan(PlanRequest(model=model, gpu=gpu, **overrides))


@pytest.mark.parametrize(
    ("model_id", "precision", "guide_gb"),
    [
        ("llama-3.3-70b-instruct", "bf16", 140),
        ("llama-3.3-70b-instruct", "fp8", 70),
        ("qwen3-32b", "bf16", 64),
        ("qwen3-8b", "bf16", 16),
        ("olmo-3-7b", "native", 14),
    ],
)
def test_weights_match_the_guides_memory_table_within_10_percent(model_id, precision, guide_gb):
    model = catalog.get_model(model_id)
    weights_gb = total_weight_bytes(model, weight_format(model, precision)) / 1e9
    assert weights_gb == pytest.approx(guide_gb, rel=0.10)
    assert _plan(model_id, "H200", precision=precision).weights_total_gb == pytest.approx(
        weights_gb, abs=0.01
    )


def test_deepseek_r1_fp8_fits_one_h200_node():
    result = _plan("deepseek-r1", "H200", concurrency=8)
    assert (result.nodes, result.tensor_parallel_size, result.pipeline_parallel_size) == (1, 8, 1)
    assert result.checkpoint == "deepseek-ai/DeepSeek-R1"
    assert result.weights_total_gb == pytest.approx(673.15, abs=0.01)


def test_deepseek_r1_fp8_on_h100_takes_two_nodes_as_tp8_pp2():
    result = _plan("deepseek-r1", "H100", concurrency=8)
    assert (result.nodes, result.tensor_parallel_size, result.pipeline_parallel_size) == (2, 8, 2)
    assert result.layers_per_stage == (31, 30)
    assert any(
        "TP8 x PP1 (8 GPUs, 1 node)" in reason and "exceed 72.0 GB usable" in reason
        for reason in result.reasons
    )


def test_deepseek_r1_does_not_fit_one_h100_node_and_the_error_names_what_would():
    with pytest.raises(InfeasiblePlanError) as error:
        _plan("deepseek-r1", "H100", concurrency=1, max_nodes=1)
    infeasibility = error.value.infeasibility
    assert "GB" in str(error.value) and "Smallest layouts that fit" in str(error.value)
    assert infeasibility.shortfall_per_gpu_gb > 0
    fits = {
        (p.gpu, p.nodes, p.tensor_parallel_size, p.pipeline_parallel_size)
        for p in infeasibility.alternatives
    }
    assert ("H100", 2, 8, 2) in fits
    assert ("H200", 1, 8, 1) in fits
    assert [p.gpus_per_replica for p in infeasibility.alternatives] == sorted(
        p.gpus_per_replica for p in infeasibility.alternatives
    )


def test_kimi_k25_int4_on_one_h200_node():
    result = _plan("kimi-k2.5", "H200")
    assert (result.nodes, result.gpus_per_replica, result.tensor_parallel_size) == (1, 8, 8)
    assert (result.precision, result.checkpoint) == ("int4", "moonshotai/Kimi-K2.5")
    assert result.weights_total_gb == pytest.approx(595.15, abs=0.01)


def test_kimi_kv_capacity_is_within_10_percent_of_the_recipe_figure():
    # Kimi-K2-Thinking recipe (same text backbone): 715,072 KV tokens at TP8 on 8x H200. Only
    # possible if every TP rank keeps the full MLA latent, and with a reserve of a few GB.
    result = _plan("kimi-k2.5", "H200")
    assert result.kv_cache_tokens == pytest.approx(715_072, rel=0.10)


@pytest.mark.parametrize("gpu", ["H100", "H200", "B200"])
@pytest.mark.parametrize("concurrency", [1, 16, 64, 256])
def test_glm_47_flash_is_never_tp8(gpu, concurrency):
    assert _plan("glm-4.7-flash", gpu, concurrency=concurrency).tensor_parallel_size != 8


def test_glm_47_flash_tp8_is_rejected_for_its_20_heads():
    model = catalog.get_model("glm-4.7-flash")
    problem = tensor_parallel_problem(model, weight_format(model, "native"), 8)
    assert "20 attention heads" in problem


@pytest.mark.parametrize("concurrency", [1, 16, 64])
def test_qwen3_235b_bf16_on_h200_is_tp4_or_tp8_in_one_node(concurrency):
    result = _plan("qwen3-235b-a22b", "H200", precision="bf16", concurrency=concurrency)
    assert result.tensor_parallel_size in (4, 8)
    assert result.nodes == 1


def test_fp8_block_checkpoints_limit_tensor_parallelism():
    qwen235 = catalog.get_model("qwen3-235b-a22b")
    qwen30 = catalog.get_model("qwen3-30b-a3b")
    r1 = catalog.get_model("deepseek-r1")
    fp8_235, fp8_30 = weight_format(qwen235, "fp8"), weight_format(qwen30, "fp8")
    assert "1536/8 = 192" in tensor_parallel_problem(qwen235, fp8_235, 8)
    assert tensor_parallel_problem(qwen235, fp8_235, 4) is None
    assert tensor_parallel_problem(qwen235, weight_format(qwen235, "bf16"), 8) is None
    assert tensor_parallel_problem(qwen30, fp8_30, 4) is not None
    assert tensor_parallel_problem(qwen30, fp8_30, 2) is None
    assert tensor_parallel_problem(r1, weight_format(r1, "native"), 8) is None
    assert _plan("qwen3-235b-a22b", "H100", precision="fp8").tensor_parallel_size <= 4


def test_gqa_kv_per_gpu_divides_by_min_of_tp_and_kv_heads():
    llama = catalog.get_model("llama-3.3-70b-instruct")  # 8 KV heads
    qwen = catalog.get_model("qwen3-235b-a22b")  # 4 KV heads
    per_layer_llama = 2 * 8 * 128 * 2
    assert kv_bytes_per_token_per_layer(llama, 4, "auto") == per_layer_llama // 4
    assert kv_bytes_per_token_per_layer(llama, 8, "auto") == per_layer_llama // 8
    assert kv_bytes_per_token_per_layer(qwen, 8, "auto") == kv_bytes_per_token_per_layer(
        qwen, 4, "auto"
    )
    assert kv_bytes_per_token_per_layer(llama, 8, "fp8") == per_layer_llama // 16


def test_mla_kv_is_not_divided_by_tp_but_by_pp():
    on_h200 = _plan("deepseek-r1", "H200", concurrency=8)
    on_h100 = _plan("deepseek-r1", "H100", concurrency=8)
    assert on_h200.kv_bytes_per_token_per_gpu == 70_272  # TP8: the full latent on every rank
    assert on_h100.kv_bytes_per_token_per_gpu == 30 * 1_152  # TP8 x PP2: the last stage's 30 layers


def test_the_smallest_layout_that_fits_wins():
    assert _plan("qwen3-8b", "H200").gpus_per_replica == 1
    more_load = _plan("qwen3-8b", "H200", concurrency=64)
    assert more_load.gpus_per_replica > 1
    assert more_load.max_concurrent_sequences >= 64


def test_pcie_gpus_prefer_pipeline_over_tensor_parallelism():
    on_l40s = _plan("llama-3.3-70b-instruct", "L40S", precision="fp8")
    on_h100 = _plan("llama-3.3-70b-instruct", "H100", precision="fp8", concurrency=48)
    assert on_l40s.pipeline_parallel_size > on_l40s.tensor_parallel_size
    assert on_h100.tensor_parallel_size > on_h100.pipeline_parallel_size


def test_layouts_keep_tp_in_a_node_and_take_whole_nodes_across_nodes():
    model = catalog.get_model("deepseek-r1")
    layouts = candidate_layouts(
        model, weight_format(model, "native"), catalog.get_gpu("H100"), 8, 4
    )
    assert all(layout.tensor_parallel_size <= 8 for layout in layouts)
    assert all(8 % layout.gpus == 0 or layout.gpus % 8 == 0 for layout in layouts)
    assert {layout.nodes for layout in layouts} == {1, 2, 3, 4}
    assert [layout.gpus for layout in layouts] == sorted(layout.gpus for layout in layouts)


def test_pipeline_stages_split_layers_like_vllm():
    assert [len(s) for s in pipeline_stage_layers(61, 2)] == [31, 30]
    assert [len(s) for s in pipeline_stage_layers(61, 8)] == [7, 7, 8, 8, 8, 8, 8, 7]
    stages = pipeline_stage_layers(94, 4)
    assert stages[0].start == 0 and stages[-1].stop == 94
    assert all(a.stop == b.start for a, b in itertools.pairwise(stages))


def test_uneven_pipeline_splits_are_rejected():
    model = catalog.get_model("deepseek-r1")
    layouts = candidate_layouts(
        model, weight_format(model, "native"), catalog.get_gpu("H100"), 8, 3
    )
    on_three_nodes = {
        (layout.tensor_parallel_size, layout.pipeline_parallel_size)
        for layout in layouts
        if layout.nodes == 3
    }
    assert (8, 3) in on_three_nodes  # stages of 20-21 layers
    assert (
        1,
        24,
    ) not in on_three_nodes  # stages of 2-3 layers: the 3-layer stages are 18% over the mean


def test_context_beyond_the_model_maximum_is_refused():
    with pytest.raises(ValueError, match="max_position_embeddings 40,960"):
        _plan("qwen3-8b", "H200", context=65536)


def test_precision_without_meaning_is_refused():
    with pytest.raises(PrecisionNotAvailableError, match=r"kimi-k2\.5 ships int4"):
        _plan("kimi-k2.5", "H200", precision="fp8")


def test_published_and_estimated_checkpoints():
    nvfp4 = _plan("deepseek-r1", "B200", precision="nvfp4")
    assert nvfp4.checkpoint == "nvidia/DeepSeek-R1-0528-NVFP4-v2" and nvfp4.weights_estimated
    assert nvfp4.gpus_per_replica == 4  # the recipe's 4x B200
    online_fp8 = _plan("olmo-3-7b", "H100", precision="fp8")
    assert online_fp8.checkpoint is None
    assert "--quantization fp8" in online_fp8.weights_description


def test_sliding_window_layers_hold_only_the_window():
    model = catalog.get_model("olmo-3-7b")
    windowed = kv_cache_capacity(model, 0, max_model_len=32768).bytes_per_sequence
    every_token = 32768 * 32 * kv_bytes_per_token_per_layer(model, 1, "auto")
    per_layer_block = 16 * kv_bytes_per_token_per_layer(model, 1, "auto")
    # 8 full layers x 2048 blocks + 24 sliding layers x (ceil((4095 + 8192) / 16) + 1) blocks
    assert windowed == (8 * 2048 + 24 * 769) * per_layer_block
    assert windowed < every_token


def test_kv_cache_capacity_matches_vllms_block_arithmetic_for_smollm2():
    model = catalog.get_model("smollm2-135m-instruct")
    # vLLM on CPU: block_size 128; a block costs 30 layers x 128 tokens x 2 x 3 heads x 64 x 2 B.
    capacity = kv_cache_capacity(model, 1 << 30, max_model_len=2048, block_size=128)
    assert capacity.num_blocks == (1 << 30) // (30 * 128 * 768)
    assert capacity.tokens == capacity.num_blocks * 128
    odd = kv_cache_capacity(model, 1 << 30, max_model_len=2000, block_size=128)
    assert odd.tokens == int(
        capacity.num_blocks / 16 * 2000
    )  # vLLM reports concurrency x max_model_len


def test_runtime_reserve_follows_its_documented_formula():
    model = catalog.get_model("llama-3.3-70b-instruct")
    reserve = runtime_reserve_bytes(
        model, 4, range(80), max_num_batched_tokens=8192, max_num_seqs=16
    )
    activations = 8192 * 2 * (4 * 8192 + 3 * 28672 // 4)
    logits = 2 * 16 * 128256 * 4
    assert reserve == FIXED_OVERHEAD_BYTES + activations + logits


def test_memory_adds_up_on_every_plan():
    for model in catalog.models():
        context = min(32768, model.max_position_embeddings)
        result = _plan(model.id, "H200", context=context, concurrency=1)
        used = result.weights_per_gpu_gb + result.reserve_per_gpu_gb + result.kv_cache_per_gpu_gb
        assert used <= result.usable_memory_per_gpu_gb + 0.05
        assert result.max_concurrent_sequences >= 1
        assert result.kv_cache_tokens >= context


def test_plan_round_trips_through_json():
    result = _plan("kimi-k2.5", "H200")
    assert type(result).model_validate_json(result.model_dump_json()) == result
