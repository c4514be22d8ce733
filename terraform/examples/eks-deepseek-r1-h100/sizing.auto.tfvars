# Generated from a DeepSeek-R1 config (TP 8, PP 2, placement.accelerator H100) by: python -m cluster tfvars <config> --cloud eks
# Sizing only (the node pool and the Ray worker group follow from these). Do not hand-edit:
# change the Serve config and regenerate.

gpu_type               = "H100"
gpus_per_node          = 8
tensor_parallel_size   = 8
pipeline_parallel_size = 2
min_replicas           = 1
max_replicas           = 2
machine_type           = "p5.48xlarge"
