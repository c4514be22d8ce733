locals {
  auth_secret_name = "${var.name}-ray-auth"
}

module "raycluster_spec" {
  source = "../raycluster-spec"

  name             = var.name
  namespace        = var.namespace
  labels           = var.labels
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
    "giantserve.io/zone" = var.zone
  }

  worker_object_store_memory_gib = var.worker_object_store_memory_gib
  shm_size_gib                   = var.shm_size_gib
  model_cache_size_gib           = var.model_cache_size_gib

  worker_env                 = local.pod.env
  worker_setup_script        = local.pod.setup_script
  worker_pod_annotations     = local.pod.annotations
  worker_extra_volumes       = local.pod.volumes
  worker_extra_volume_mounts = local.pod.volume_mounts
  worker_sidecars            = local.pod.sidecars
}

module "ray_cluster" {
  source = "../ray-cluster"

  name                     = var.name
  namespace                = var.namespace
  labels                   = var.labels
  auth_secret_name         = local.auth_secret_name
  ray_auth_token           = var.ray_auth_token
  kuberay_operator_version = var.kuberay_operator_version
  raycluster               = module.raycluster_spec.manifest
  extra_manifests          = concat(local.fabric_manifests, local.ingress_manifests)

  # Container-native load balancing (NEGs) straight to the head pod's port 8000.
  serve_service_annotations = local.expose ? {
    "cloud.google.com/neg"            = jsonencode({ ingress = true })
    "cloud.google.com/backend-config" = jsonencode({ default = "${var.name}-serve" })
  } : {}

  depends_on = [google_container_node_pool.head, google_container_node_pool.gpu]
}
