locals {
  gpu          = local.gpus[var.gpu_type]
  machine_type = coalesce(var.machine_type, local.default_machine_type[var.cloud][var.gpu_type])
  machine      = local.machines[local.machine_type]

  gpus_per_replica  = var.tensor_parallel_size * var.pipeline_parallel_size
  nodes_per_replica = ceil(local.gpus_per_replica / var.gpus_per_node)

  # One Ray worker pod per GPU node, so pod counts and node counts are the same numbers.
  min_nodes = var.min_replicas * local.nodes_per_replica
  max_nodes = var.max_replicas * local.nodes_per_replica

  # The worker pod takes the node, less room for the kubelet, system daemons and the fabric
  # plugins' daemon sets (10% of vCPUs, 15% of memory).
  worker_pod_cpu        = floor(local.machine.vcpus * 0.9)
  worker_pod_memory_gib = floor(local.machine.memory_gib * 0.85)
}

# Warnings, not errors: these work, but slowly.
check "tensor_parallel_over_nvlink" {
  assert {
    condition     = local.gpu.nvlink || var.tensor_parallel_size == 1
    error_message = "${var.gpu_type} has no NVLink: a tensor-parallel all-reduce crosses PCIe every step; prefer pipeline_parallel_size over tensor_parallel_size."
  }
}

check "multi_node_fabric" {
  assert {
    condition     = local.nodes_per_replica == 1 || local.machine.fabric != "none"
    error_message = "${local.machine_type} has no GPUDirect fabric: a replica spanning ${local.nodes_per_replica} nodes would run NCCL over TCP sockets."
  }
}
