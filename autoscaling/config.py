"""Every autoscaling knob of one model's engine deployment, and the Serve config it becomes.

Serve 2.60 applies its upscale/downscale delays around a custom policy's answer
(`_apply_autoscaling_config`). The policy owns the scale-down timing (its scale-down window
and cooldown), so Serve's downscale delays are set to 0 here, or every delay would count
twice; `upscale_delay_s` is passed to Serve as is.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

POLICY_IMPORT_PATH = "autoscaling.policy:LLMAutoscalingPolicy"


class AutoscalingConfig(BaseModel):
    """Knobs of the LLM autoscaling policy; defaults suit an 8-GPU replica starting in ~10 min."""

    # A typo in a knob must fail at build time, not leave a default silently in place.
    model_config = ConfigDict(extra="forbid", frozen=True)

    # --- fleet bounds -------------------------------------------------------------------
    min_replicas: int = Field(
        1, ge=1, description="replicas kept while the model has traffic (see scale_to_zero)"
    )
    max_replicas: int = Field(4, ge=1, description="replicas never exceeded")
    initial_replicas: int | None = Field(
        None, ge=0, description="replicas started at deploy time; default min_replicas"
    )
    scale_to_zero: bool = Field(
        False, description="drop to 0 replicas after scale_to_zero_idle_s without any request"
    )
    scale_to_zero_idle_s: float = Field(
        1800.0, gt=0, description="seconds without any request before scaling to zero"
    )
    cold_request_hold_s: float = Field(
        30.0,
        ge=0,
        description="how long the ingress holds a request for a model at zero replicas "
        "before answering 503 with Retry-After",
    )

    # --- what 'enough replicas' means -----------------------------------------------------
    ttft_target_s: float = Field(
        2.0,
        gt=0,
        description="the model's time-to-first-token SLO (the builder copies slo.ttft_target_s)",
    )
    ttft_pressure_ratio: float = Field(
        0.8,
        gt=0,
        le=2,
        description="recent TTFT p90 above this fraction of ttft_target_s asks for one more "
        "replica",
    )
    target_ongoing_requests_per_replica: float = Field(
        56.0,
        gt=0,
        description="running + waiting requests one replica should carry: ~7/8 of the "
        "engine's max_num_seqs (64 for a giant model's batch); spare_replicas and the "
        "trend forecast, not this, absorb bursts",
    )
    spare_replicas: int = Field(
        2,
        ge=0,
        description="replicas kept on top of the need: a replica can fail, and a burst can "
        "outrun its trend for the first minutes; each costs a cold start to replace",
    )
    target_waiting_per_replica: float = Field(
        4.0,
        ge=0,
        description="waiting requests per replica above which the fleet counts as saturated: "
        "scale up at once, ignoring the upscale cooldown",
    )
    max_upscale_factor: float = Field(
        2.0,
        gt=1,
        description="a scale-up asks for at most this multiple of the running replicas (or "
        "one more): a queue that grew while saturated is a backlog, not lasting load",
    )
    kv_cache_usage_high_watermark: float = Field(
        0.85,
        gt=0,
        le=1,
        description="mean KV-cache usage that counts as full (long contexts fill memory before "
        "the batch slots)",
    )

    # --- timing -------------------------------------------------------------------------
    upscale_delay_s: float = Field(
        0.0,
        ge=0,
        description="Serve's own delay: the wanted count must exceed the target this long "
        "before a scale-up; 0 because the 30 s metric window and the trend's noise test "
        "already filter blips, and every second here adds to a 10 min cold start",
    )
    upscale_cooldown_s: float = Field(
        60.0, ge=0, description="least time between two scale-ups, unless saturated"
    )
    downscale_delay_s: float = Field(
        600.0,
        ge=0,
        description="the need must stay below the scale-down threshold this long (and this "
        "long after the last scale-up) before replicas are released; at least one cold "
        "start, so that nothing released would have been needed again before it restarted",
    )
    downscale_cooldown_s: float = Field(
        120.0,
        ge=0,
        description="least time between two scale-downs: Serve's metrics window (30 s) plus "
        "its push interval (10 s) must show the smaller fleet before the next step",
    )
    max_downscale_step: int = Field(
        4, ge=1, description="replicas released by one scale-down at most"
    )
    hysteresis_band: float = Field(
        0.2,
        ge=0,
        lt=1,
        description="scale down only to a count that keeps this fraction of headroom (on top "
        "of spare_replicas) over the most replicas needed during the whole downscale delay",
    )
    trend_confidence_se: float = Field(
        1.0,
        ge=0,
        description="the arrival trend is extrapolated at its fitted slope less this many "
        "standard errors (a lower confidence bound): every scale-up is held for a downscale "
        "delay, so extrapolating a noisy slope's upward errors would ratchet the fleet up; "
        "spare_replicas covers a rise the bound leaves out",
    )
    upscale_noise_tolerance: float = Field(
        2.0,
        ge=0,
        description="a need above the fleet by less than this many standard deviations of the "
        "arrival rate's noise (turned into replicas by Little's law; at most half of "
        "spare_replicas) orders no replica: the spare replicas absorb it, and a replica "
        "ordered on noise would be held for a whole downscale delay",
    )
    trend_window_s: float = Field(
        300.0,
        gt=0,
        description="arrival-rate history the trend (a Theil-Sen slope) is fitted on",
    )
    signal_period_s: float = Field(
        10.0,
        gt=0,
        description="spacing of the policy's samples; Serve pushes replica metrics every 10 s",
    )
    expected_cold_start_s: float = Field(
        600.0,
        gt=0,
        description="seconds from asking for a replica to its first request; unless set, the "
        "builder fills in the model's estimate (cluster.cold_start: staged weights per node / "
        "measured load bandwidth + engine init) where the catalog knows its checkpoint",
    )
    forecast_horizon_s: float | None = Field(
        None,
        gt=0,
        description="how far ahead the arrival trend is extrapolated; default "
        "expected_cold_start_s",
    )
    look_back_period_s: float = Field(
        30.0,
        gt=10,
        description="Serve's metric averaging window; above Serve's 10 s metrics interval",
    )

    # --- gangs and cluster capacity -------------------------------------------------------
    gpus_per_replica: int = Field(
        8, ge=1, description="GPUs of one replica, TP x PP (the builder copies the plan's)"
    )
    gpus_per_stage: int | None = Field(
        None,
        ge=1,
        description="GPUs one pipeline stage needs on a single node (TP); default "
        "gpus_per_replica",
    )
    capacity_source: Literal["ray", "unbounded"] = Field(
        "ray",
        description="'ray': never ask for more gangs than the free GPUs of the cluster's "
        "nodes place (plus autoscaler_headroom_gpus); 'unbounded': leave it to Serve",
    )
    autoscaler_headroom_gpus: int = Field(
        0,
        ge=0,
        description="GPUs the cluster autoscaler may add on top of the free ones, so that a "
        "replica may wait for a node that does not exist yet; unless set, the builder fills in "
        "a GPU model's node-pool growth from min to max replicas (what `cluster tfvars` sizes "
        "the Terraform pool and Ray worker group for); set 0 on a cluster that cannot grow",
    )
    capacity_refresh_s: float = Field(
        5.0, gt=0, description="how long a read of the cluster's free GPUs is reused"
    )

    @model_validator(mode="after")
    def _consistent(self) -> AutoscalingConfig:
        if self.max_replicas < self.min_replicas:
            raise ValueError(
                f"max_replicas ({self.max_replicas}) must be >= min_replicas ({self.min_replicas})"
            )
        if self.initial_replicas is not None:
            lowest = 0 if self.scale_to_zero else self.min_replicas
            if not lowest <= self.initial_replicas <= self.max_replicas:
                raise ValueError(
                    f"initial_replicas ({self.initial_replicas}) must lie in "
                    f"[{lowest}, max_replicas={self.max_replicas}]"
                )
        if self.gpus_per_replica % self.stage_gpus:
            raise ValueError(
                f"gpus_per_replica ({self.gpus_per_replica}) must be a multiple of "
                f"gpus_per_stage ({self.gpus_per_stage})"
            )
        if self.trend_window_s < 3 * self.signal_period_s:
            raise ValueError(
                f"trend_window_s ({self.trend_window_s}) must hold >= 3 samples of "
                f"signal_period_s ({self.signal_period_s})"
            )
        return self

    @property
    def stage_gpus(self) -> int:
        return self.gpus_per_stage or self.gpus_per_replica

    @property
    def horizon_s(self) -> float:
        return self.forecast_horizon_s or self.expected_cold_start_s

    def for_replica(
        self, *, gpus_per_replica: int, gpus_per_stage: int, ttft_target_s: float
    ) -> AutoscalingConfig:
        """This config with the facts the builder knows from the plan and the model's SLO."""
        return AutoscalingConfig.model_validate(
            {
                **self.model_dump(),
                "gpus_per_replica": gpus_per_replica,
                "gpus_per_stage": gpus_per_stage,
                "ttft_target_s": ttft_target_s,
            }
        )

    def to_serve_autoscaling_config(self) -> dict[str, Any]:
        """The deployment's `autoscaling_config` (set it instead of `num_replicas`)."""
        return {
            # Serve's floor: 0 lets the policy reach zero; the policy keeps min_replicas itself.
            "min_replicas": 0 if self.scale_to_zero else self.min_replicas,
            "max_replicas": self.max_replicas,
            "initial_replicas": self.initial_replicas,
            # Unused by our policy; Serve exports it as a gauge, so make it say the truth.
            "target_ongoing_requests": self.target_ongoing_requests_per_replica,
            "look_back_period_s": self.look_back_period_s,
            "upscale_delay_s": self.upscale_delay_s,
            # The policy's own scale-down window replaces Serve's delay (see the module docstring).
            "downscale_delay_s": 0.0,
            "downscale_to_zero_delay_s": 0.0,
            "policy": {
                "policy_function": POLICY_IMPORT_PATH,
                "policy_kwargs": self.model_dump(mode="json"),
            },
        }
