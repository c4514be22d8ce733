module "sizing" {
  source = "../sizing"

  cloud                  = "gke"
  gpu_type               = var.gpu_type
  gpus_per_node          = var.gpus_per_node
  tensor_parallel_size   = var.tensor_parallel_size
  pipeline_parallel_size = var.pipeline_parallel_size
  min_replicas           = var.min_replicas
  max_replicas           = var.max_replicas
  machine_type           = var.machine_type
}

locals {
  machine = module.sizing.machine
  fabric  = module.sizing.fabric

  labels = merge(var.labels, { app = "giantserve" })

  # Node labels and taints. The GPU pool is tainted so only pods that tolerate it (the Ray
  # GPU workers, GPU daemon sets) land there; the head and system pods use the CPU pool.
  pool_label    = "giantserve.io/pool"
  head_pool     = "ray-head"
  gpu_pool      = "gpu-${lower(var.gpu_type)}"
  gpu_taint_key = "nvidia.com/gpu"

  # Extra NICs of the GPU nodes, in NIC order (eth1, eth2, ...).
  # gIB (A3 Ultra, A4): 1 gVNIC network + 1 RoCE network of 8 subnets (one per GPU).
  # TCPXO (A3 Mega): 8 gVNIC networks, one per GPU.
  gvnic_networks = local.fabric == "gib" ? ["gvnic-1"] : local.fabric == "tcpxo" ? [for i in range(1, 9) : "vpc${i}"] : []
  rdma_subnets   = local.fabric == "gib" ? [for i in range(local.machine.fabric_nics) : "rdma-${i}"] : []
  fabric_mtu     = local.fabric == "tcpxo" ? 8244 : 8896

  boot_disk_type = contains(["gib"], local.fabric) ? "hyperdisk-balanced" : "pd-ssd"
}
