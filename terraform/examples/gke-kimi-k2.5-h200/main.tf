# Kimi K2.5 (INT4) on GKE: one 8x H200 node (a3-ultragpu-8g) per replica, TP 8 x PP 1.
# Sizing: sizing.auto.tfvars (generated: python -m cluster tfvars <config> --cloud gke).
# Project settings: copy terraform.tfvars.example to terraform.tfvars.

provider "google" {
  project = var.project_id
  region  = var.region
}

data "google_client_config" "default" {}

provider "kubernetes" {
  host                   = module.gke.cluster_endpoint
  token                  = data.google_client_config.default.access_token
  cluster_ca_certificate = base64decode(module.gke.cluster_ca_certificate)
}

provider "helm" {
  kubernetes = {
    host                   = module.gke.cluster_endpoint
    token                  = data.google_client_config.default.access_token
    cluster_ca_certificate = base64decode(module.gke.cluster_ca_certificate)
  }
}

module "gke" {
  source = "../../modules/gke"

  project_id          = var.project_id
  region              = var.region
  zone                = var.zone
  name                = "kimi"
  authorized_networks = var.authorized_networks
  reservation_name    = var.reservation_name
  ray_image           = var.ray_image
  ingress_domain      = var.ingress_domain

  gpu_type               = var.gpu_type
  gpus_per_node          = var.gpus_per_node
  tensor_parallel_size   = var.tensor_parallel_size
  pipeline_parallel_size = var.pipeline_parallel_size
  min_replicas           = var.min_replicas
  max_replicas           = var.max_replicas
  machine_type           = var.machine_type
}
