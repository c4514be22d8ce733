"""The autoscaling config: defaults, validation naming the bad field, the dict Serve gets."""

import pytest
from pydantic import ValidationError

from autoscaling.config import POLICY_IMPORT_PATH, AutoscalingConfig


def test_defaults_suit_a_giant_model_that_starts_in_ten_minutes():
    config = AutoscalingConfig()
    assert config.gpus_per_replica == 8 and config.stage_gpus == 8
    assert config.expected_cold_start_s == 600
    # Releasing what could be needed again before it restarted is thrash.
    assert config.downscale_delay_s >= config.expected_cold_start_s
    assert config.horizon_s == config.expected_cold_start_s
    assert not config.scale_to_zero and config.capacity_source == "ray"


@pytest.mark.parametrize(
    "fields, bad_field",
    [
        ({"min_replicas": 0}, "min_replicas"),
        ({"min_replicas": 3, "max_replicas": 2}, "max_replicas"),
        ({"initial_replicas": 9, "max_replicas": 4}, "initial_replicas"),
        ({"gpus_per_replica": 12, "gpus_per_stage": 8}, "gpus_per_stage"),
        ({"kv_cache_usage_high_watermark": 1.5}, "kv_cache_usage_high_watermark"),
        ({"hysteresis_band": 1.0}, "hysteresis_band"),
        ({"trend_window_s": 20}, "trend_window_s"),
        ({"look_back_period_s": 5}, "look_back_period_s"),
        ({"max_upscale_factor": 1.0}, "max_upscale_factor"),
        ({"capacity_source": "kubernetes"}, "capacity_source"),
        # Serve's knob name, not ours: a typo must not be dropped silently.
        ({"target_ongoing_requests": 8}, "target_ongoing_requests"),
    ],
)
def test_validation_errors_name_the_bad_field(fields, bad_field):
    with pytest.raises(ValidationError) as error:
        AutoscalingConfig(**fields)
    assert bad_field in str(error.value)


def test_serve_accepts_the_autoscaling_config_and_gets_our_policy_with_every_knob():
    from ray.serve.config import AutoscalingConfig as ServeAutoscalingConfig

    ours = AutoscalingConfig(min_replicas=2, max_replicas=6, upscale_delay_s=5)
    serve = ServeAutoscalingConfig(**ours.to_serve_autoscaling_config())

    assert (serve.min_replicas, serve.max_replicas, serve.upscale_delay_s) == (2, 6, 5)
    # The policy owns the scale-down timing; Serve's delays would count it twice.
    assert serve.downscale_delay_s == 0 and serve.downscale_to_zero_delay_s == 0
    assert serve.policy.policy_function == POLICY_IMPORT_PATH
    assert AutoscalingConfig(**serve.policy.policy_kwargs) == ours


def test_serve_builds_the_policy_class_once_from_its_kwargs():
    from ray.serve._private.autoscaling_state import _resolve_policy_callable
    from ray.serve.config import AutoscalingConfig as ServeAutoscalingConfig

    ours = AutoscalingConfig(max_replicas=3, spare_replicas=1)
    serve = ServeAutoscalingConfig(**ours.to_serve_autoscaling_config())
    policy = _resolve_policy_callable(serve.policy)

    assert type(policy).__name__ == "LLMAutoscalingPolicy"
    assert policy.config == ours


def test_scale_to_zero_lets_serve_reach_zero_while_the_policy_keeps_min_replicas():
    config = AutoscalingConfig(
        scale_to_zero=True, min_replicas=2, initial_replicas=0, max_replicas=4
    )
    serve = config.to_serve_autoscaling_config()
    assert serve["min_replicas"] == 0 and serve["initial_replicas"] == 0
    assert serve["policy"]["policy_kwargs"]["min_replicas"] == 2


def test_builder_fills_the_plan_and_slo_and_they_are_validated():
    config = AutoscalingConfig().for_replica(
        gpus_per_replica=16, gpus_per_stage=8, ttft_target_s=1.5
    )
    assert (config.gpus_per_replica, config.stage_gpus, config.ttft_target_s) == (16, 8, 1.5)
    with pytest.raises(ValidationError, match="gpus_per_stage"):
        AutoscalingConfig().for_replica(gpus_per_replica=12, gpus_per_stage=8, ttft_target_s=1.5)
