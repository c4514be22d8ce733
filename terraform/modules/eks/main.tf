module "sizing" {
  source = "../sizing"

  cloud                  = "eks"
  gpu_type               = var.gpu_type
  gpus_per_node          = var.gpus_per_node
  tensor_parallel_size   = var.tensor_parallel_size
  pipeline_parallel_size = var.pipeline_parallel_size
  min_replicas           = var.min_replicas
  max_replicas           = var.max_replicas
  machine_type           = var.machine_type
}

data "aws_partition" "current" {}
data "aws_caller_identity" "current" {}

locals {
  machine = module.sizing.machine
  tags    = merge(var.tags, { app = "giantserve", cluster = var.name })

  pool_label    = "giantserve.io/pool"
  head_pool     = "ray-head"
  gpu_pool      = "gpu-${lower(var.gpu_type)}"
  gpu_taint_key = "nvidia.com/gpu"
  gpu_zone      = var.availability_zones[0]

  efa_interfaces = local.machine.fabric_nics # one EFA per network card (32 on p5/p5e)

  # EFA through libfabric and the aws-ofi-nccl plugin. NCCL_NET names the plugin, so a
  # missing plugin fails loudly instead of falling back to TCP sockets (NET/Socket).
  efa_env = {
    FI_PROVIDER            = "efa"
    FI_EFA_USE_DEVICE_RDMA = "1" # p4d/p5 and later
    FI_EFA_FORK_SAFE       = "1"
    NCCL_NET               = "AWS Libfabric"
    NCCL_DEBUG             = "WARN" # NET/OFI ... efa is good
  }
}
