# Generated from configs/kimi.yaml by: python -m cluster tfvars <config> --cloud gke
# Sizing only (the node pool and the Ray worker group follow from these). Do not hand-edit:
# change the Serve config and regenerate.

gpu_type               = "H200"
gpus_per_node          = 8
tensor_parallel_size   = 8
pipeline_parallel_size = 1
min_replicas           = 1
max_replicas           = 2
machine_type           = "a3-ultragpu-8g"
