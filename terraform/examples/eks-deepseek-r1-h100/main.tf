# DeepSeek-R1 (FP8) on EKS: two 8x H100 nodes (p5.48xlarge, 32 EFA) per replica, TP 8 x PP 2.
# Sizing: sizing.auto.tfvars (generated: python -m cluster tfvars <config> --cloud eks).
# Account settings: copy terraform.tfvars.example to terraform.tfvars.

provider "aws" {
  region = var.region
}

provider "kubernetes" {
  host                   = module.eks.cluster_endpoint
  cluster_ca_certificate = base64decode(module.eks.cluster_ca_certificate)
  exec {
    api_version = "client.authentication.k8s.io/v1beta1"
    command     = "aws"
    args        = ["eks", "get-token", "--cluster-name", module.eks.cluster_name, "--region", var.region]
  }
}

provider "helm" {
  kubernetes = {
    host                   = module.eks.cluster_endpoint
    cluster_ca_certificate = base64decode(module.eks.cluster_ca_certificate)
    exec = {
      api_version = "client.authentication.k8s.io/v1beta1"
      command     = "aws"
      args        = ["eks", "get-token", "--cluster-name", module.eks.cluster_name, "--region", var.region]
    }
  }
}

module "eks" {
  source = "../../modules/eks"

  region                  = var.region
  availability_zones      = var.availability_zones
  name                    = "deepseek"
  public_access_cidrs     = var.public_access_cidrs
  capacity_reservation_id = var.capacity_reservation_id
  ray_image               = var.ray_image
  acm_certificate_arn     = var.acm_certificate_arn

  gpu_type               = var.gpu_type
  gpus_per_node          = var.gpus_per_node
  tensor_parallel_size   = var.tensor_parallel_size
  pipeline_parallel_size = var.pipeline_parallel_size
  min_replicas           = var.min_replicas
  max_replicas           = var.max_replicas
  machine_type           = var.machine_type
}
