"""Replica counts for giant-model deployments on Ray Serve 2.60.

The policy, as deployed:
- `config`: every knob (`AutoscalingConfig`) and the Serve `autoscaling_config` it becomes.
- `signals`: what an engine replica reports through `record_autoscaling_stats()`, and the
  fleet-wide view the policy decides on.
- `capacity`: how many more gangs (replicas of TP x PP GPUs) the cluster can place.
- `policy`: the pure decision function and the thin Serve adapter `LLMAutoscalingPolicy`.
- `cold_start`: what a client gets while a scaled-to-zero model starts again.

The trace simulator that compares it with Ray's default, a fixed fleet and an oracle:
- `traces`: the request traces; `simulator`: the fleet model and the replay loop;
- `sim_policies`: the controllers it replays; `comparison`: the experiment and its goal.
"""
