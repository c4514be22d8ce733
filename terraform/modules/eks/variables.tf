# --- where ---

variable "region" {
  description = "AWS region."
  type        = string
}

variable "availability_zones" {
  description = "Two zones of the region (EKS needs two); the GPU node group uses the first only (one zone, one cluster placement group per replica set)."
  type        = list(string)

  validation {
    condition     = length(var.availability_zones) == 2
    error_message = "Give exactly two availability zones; the GPU nodes go in the first."
  }
}

variable "name" {
  description = "Name of the cluster; prefix of its VPC, node groups and the RayCluster."
  type        = string
  default     = "giantserve"

  validation {
    condition     = can(regex("^[a-z]([-a-z0-9]{0,20}[a-z0-9])?$", var.name))
    error_message = "name must be a lowercase DNS label of at most 22 characters."
  }
}

variable "tags" {
  description = "AWS tags of everything created."
  type        = map(string)
  default     = {}
}

# --- sizing: passed unchanged to ../sizing (see its README); written by `python -m cluster tfvars` ---

variable "gpu_type" {
  description = "GPU model of the worker nodes: H100, H200, B200, A100 or L40S on EKS."
  type        = string
}

variable "gpus_per_node" {
  description = "GPUs on one node of machine_type (8)."
  type        = number
  default     = 8
}

variable "tensor_parallel_size" {
  description = "Tensor-parallel degree of one replica (inside one node)."
  type        = number
}

variable "pipeline_parallel_size" {
  description = "Pipeline-parallel degree of one replica (stages across nodes)."
  type        = number
  default     = 1
}

variable "min_replicas" {
  description = "Fewest model replicas; GPU pool minimum = min_replicas x nodes per replica."
  type        = number
  default     = 1
}

variable "max_replicas" {
  description = "Most model replicas; GPU pool maximum = max_replicas x nodes per replica."
  type        = number
  default     = 1
}

variable "machine_type" {
  description = "GPU machine type (p5e.48xlarge, p5.48xlarge, p5en.48xlarge, ...); null: the catalogue default for gpu_type."
  type        = string
  default     = null
}

# --- cluster ---

# --- cluster ---

variable "kubernetes_version" {
  description = "EKS Kubernetes version."
  type        = string
  default     = "1.33"
}

variable "public_access_cidrs" {
  description = "CIDRs allowed to reach the public Kubernetes API endpoint (where terraform and kubectl run). The public internet is refused."
  type        = list(string)

  validation {
    condition     = length(var.public_access_cidrs) > 0 && !contains(var.public_access_cidrs, "0.0.0.0/0")
    error_message = "Give at least one CIDR, and not 0.0.0.0/0."
  }
}

variable "vpc_cidr" {
  description = "CIDR of the VPC (split into 2 public and 2 private subnets)."
  type        = string
  default     = "10.0.0.0/16"
}

variable "head_instance_type" {
  description = "Instance type of the CPU node group: Ray head, KubeRay operator, system pods."
  type        = string
  default     = "m7i.4xlarge"
}

variable "head_max_nodes" {
  description = "Most nodes of the CPU node group (one is always kept)."
  type        = number
  default     = 3
}

variable "gpu_root_volume_gb" {
  description = "Root EBS volume of a GPU node, GB (weights go to the NVMe instance store, set up as RAID0 for pods)."
  type        = number
  default     = 200
}

variable "capacity_reservation_id" {
  description = "EC2 On-Demand Capacity Reservation of the GPU instances (cr-...); null: open capacity."
  type        = string
  default     = null
}

variable "log_retention_days" {
  description = "Retention of the control-plane and VPC flow logs."
  type        = number
  default     = 365
}

variable "namespace" {
  description = "Kubernetes namespace of the RayCluster."
  type        = string
  default     = "ray"
}

variable "ray_image" {
  description = "Image of the Ray head and workers: Ray 2.60 + vLLM + this project's `deployments` package."
  type        = string
}

variable "ray_version" {
  description = "Ray version of ray_image."
  type        = string
  default     = "2.60.0"
}

variable "kuberay_operator_version" {
  description = "kuberay-operator Helm chart version (>= 1.6 for token authentication)."
  type        = string
  default     = "1.6.2"
}

variable "ray_auth_token" {
  description = "Ray auth token; null: generated."
  type        = string
  default     = null
  sensitive   = true
}

variable "worker_object_store_memory_gib" {
  description = "Ray object store of each GPU worker, GiB (explicit and modest: tensors move over NCCL)."
  type        = number
  default     = 32
}

variable "shm_size_gib" {
  description = "Memory-backed /dev/shm of each GPU worker, GiB."
  type        = number
  default     = 64
}

variable "model_cache_size_gib" {
  description = "Per-node model cache on the local SSDs, GiB."
  type        = number
  default     = 1500
}

# --- exposure ---

# --- exposure ---

variable "acm_certificate_arn" {
  description = "ACM certificate of the OpenAI API's DNS name. Set: an internet-facing ALB (HTTPS 443 only, TLS 1.2+) in front of Serve's port 8000; point the name at output ingress_hostname. null: nothing is public; use port-forward."
  type        = string
  default     = null
}

variable "ingress_allowed_cidrs" {
  description = "Client CIDRs allowed on the ALB's HTTPS listener."
  type        = list(string)
  default     = ["0.0.0.0/0"]
}

variable "aws_load_balancer_controller_version" {
  description = "AWS Load Balancer Controller version (chart 1.x.y installs app v2.x.y; its IAM policy is read from the same tag)."
  type        = string
  default     = "2.13.3"
}
