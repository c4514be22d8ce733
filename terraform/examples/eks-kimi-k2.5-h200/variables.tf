variable "region" {
  description = "AWS region."
  type        = string
}

variable "availability_zones" {
  description = "Two zones; the GPU nodes go in the first (where the instance type, or your reservation, is)."
  type        = list(string)
}

variable "public_access_cidrs" {
  description = "CIDRs allowed to reach the Kubernetes API (where terraform and kubectl run)."
  type        = list(string)
}

variable "capacity_reservation_id" {
  description = "On-Demand Capacity Reservation of the GPU instances; null: none."
  type        = string
  default     = null
}

variable "ray_image" {
  description = "Image with Ray 2.60, vLLM, this project's `deployments` package and the aws-ofi-nccl plugin (EFA)."
  type        = string
}

variable "acm_certificate_arn" {
  description = "ACM certificate of the OpenAI API's DNS name (HTTPS ALB); null: not exposed."
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
