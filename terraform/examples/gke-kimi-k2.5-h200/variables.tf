variable "project_id" {
  description = "GCP project."
  type        = string
}

variable "region" {
  description = "Region of the cluster."
  type        = string
}

variable "zone" {
  description = "Zone of the GPU pool (where the machine type, or your reservation, is)."
  type        = string
}

variable "authorized_networks" {
  description = "CIDRs allowed to reach the Kubernetes API (where terraform and kubectl run)."
  type = list(object({
    cidr_block   = string
    display_name = string
  }))
}

variable "reservation_name" {
  description = "Compute Engine reservation of the GPU nodes; null: none."
  type        = string
  default     = null
}

variable "ray_image" {
  description = "Image with Ray 2.60, vLLM and this project's `deployments` package."
  type        = string
}

variable "ingress_domain" {
  description = "DNS name of the OpenAI API (HTTPS, Google-managed certificate); null: not exposed."
  type        = string
  default     = null
}

# --- sizing: set in sizing.auto.tfvars ---

variable "gpu_type" {
  description = "GPU model of the worker nodes (sizing module)."
  type        = string
}

variable "gpus_per_node" {
  description = "GPUs on one node of machine_type (sizing module)."
  type        = number
}

variable "tensor_parallel_size" {
  description = "Tensor-parallel degree of one replica, inside one node (sizing module)."
  type        = number
}

variable "pipeline_parallel_size" {
  description = "Pipeline-parallel degree of one replica, across nodes (sizing module)."
  type        = number
}

variable "min_replicas" {
  description = "Fewest model replicas (sizing module)."
  type        = number
}

variable "max_replicas" {
  description = "Most model replicas (sizing module)."
  type        = number
}

variable "machine_type" {
  description = "GPU machine type (sizing module)."
  type        = string
}
