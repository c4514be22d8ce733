"""Replica counts for giant-model deployments on Ray Serve 2.60.

- `config`: every knob (`AutoscalingConfig`) and the Serve `autoscaling_config` it becomes.
- `signals`: what an engine replica reports through `record_autoscaling_stats()`, and the
  fleet-wide view the policy decides on.
- `capacity`: how many more gangs (replicas of TP x PP GPUs) the cluster can place.
- `policy`: the pure decision function and the thin Serve adapter `LLMAutoscalingPolicy`.
- `cold_start`: what a client gets while a scaled-to-zero model starts again.
- `traces`, `baselines`, `simulator`: a fast trace replay that compares policies.
"""
