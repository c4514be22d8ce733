locals {
  auth_secret_name = "${var.name}-ray-auth"
}

module "raycluster_spec" {
  source = "../raycluster-spec"

  name             = var.name
  namespace        = var.namespace
  labels           = var.tags
  auth_secret_name = local.auth_secret_name
  ray_image        = var.ray_image
  ray_version      = var.ray_version

  head_node_selector = { (local.pool_label) = local.head_pool }

  worker_group_name = local.gpu_pool
  accelerator_type  = module.sizing.ray_accelerator_type
  gpus_per_node     = module.sizing.gpus_per_node
  worker_cpu        = module.sizing.worker_pod.cpu
  worker_memory_gib = module.sizing.worker_pod.memory_gib
  min_workers       = module.sizing.min_nodes
  max_workers       = module.sizing.max_nodes

  worker_node_selector = { (local.pool_label) = local.gpu_pool }
  worker_tolerations   = [{ key = local.gpu_taint_key, operator = "Exists", effect = "NoSchedule" }]
  worker_ray_labels = {
    "giantserve.io/pool" = local.gpu_pool
    "giantserve.io/zone" = local.gpu_zone
  }

  worker_object_store_memory_gib = var.worker_object_store_memory_gib
  shm_size_gib                   = var.shm_size_gib
  model_cache_size_gib           = var.model_cache_size_gib

  # All EFA interfaces of the node go to its one worker pod.
  worker_extra_resources = { "vpc.amazonaws.com/efa" = tostring(local.efa_interfaces) }
  worker_env             = local.efa_env
}

module "ray_cluster" {
  source = "../ray-cluster"

  name                     = var.name
  namespace                = var.namespace
  labels                   = var.tags
  auth_secret_name         = local.auth_secret_name
  ray_auth_token           = var.ray_auth_token
  kuberay_operator_version = var.kuberay_operator_version
  raycluster               = module.raycluster_spec.manifest

  depends_on = [
    aws_eks_node_group.head,
    aws_eks_node_group.gpu,
    aws_eks_addon.main,
    helm_release.nvidia_device_plugin,
    helm_release.efa_device_plugin,
  ]
}
