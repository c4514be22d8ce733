# --- where ---

variable "project_id" {
  description = "GCP project."
  type        = string
}

variable "region" {
  description = "Region of the cluster and its networks."
  type        = string
}

variable "zone" {
  description = "The one zone of the GPU pool (a multi-node replica needs one zone and one compact placement)."
  type        = string
}

variable "name" {
  description = "Name of the cluster; prefix of its networks, node pools and the RayCluster."
  type        = string
  default     = "giantserve"

  validation {
    condition     = can(regex("^[a-z]([-a-z0-9]{0,20}[a-z0-9])?$", var.name))
    error_message = "name must be a lowercase DNS label of at most 22 characters."
  }
}

variable "labels" {
  description = "GCP resource labels (and Kubernetes labels) of everything created."
  type        = map(string)
  default     = {}
}

# --- sizing: passed unchanged to ../sizing (see its README); written by `python -m cluster tfvars` ---

variable "gpu_type" {
  description = "GPU model of the worker nodes: H100, H200, B200 or A100 on GKE."
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
  description = "GPU machine type (a3-ultragpu-8g, a3-megagpu-8g, a4-highgpu-8g, ...); null: the catalogue default for gpu_type."
  type        = string
  default     = null
}

# --- cluster ---

variable "authorized_networks" {
  description = "CIDRs allowed to reach the Kubernetes API (where terraform and kubectl run). The public internet is refused."
  type = list(object({
    cidr_block   = string
    display_name = string
  }))

  validation {
    condition     = length(var.authorized_networks) > 0 && alltrue([for n in var.authorized_networks : n.cidr_block != "0.0.0.0/0"])
    error_message = "Give at least one authorized network, and not 0.0.0.0/0."
  }
}

variable "release_channel" {
  description = "GKE release channel."
  type        = string
  default     = "REGULAR"
}

variable "deletion_protection" {
  description = "Refuse `terraform destroy` of the cluster until set to false."
  type        = bool
  default     = true
}

variable "database_encryption_key" {
  description = "Cloud KMS key (projects/.../cryptoKeys/...) for application-layer encryption of Secrets (the Ray token); null: Google-managed encryption only."
  type        = string
  default     = null
}

variable "head_machine_type" {
  description = "Machine type of the CPU pool that runs the Ray head, the KubeRay operator and system pods."
  type        = string
  default     = "n2-standard-16"
}

variable "head_pool_max_nodes" {
  description = "Most nodes of the CPU pool (one is always kept)."
  type        = number
  default     = 3
}

variable "gpu_boot_disk_size_gb" {
  description = "Boot disk of a GPU node, GB (model weights go to the local SSDs, not here)."
  type        = number
  default     = 200
}

variable "reservation_name" {
  description = "Compute Engine reservation of the GPU nodes (a3-ultragpu-8g is usually reserved); null: any matching reservation, else on-demand."
  type        = string
  default     = null
}

variable "compact_placement" {
  description = "Put the GPU nodes under one COLLOCATED placement policy (low-latency fabric between the nodes of a replica)."
  type        = bool
  default     = true
}

variable "network_cidr" {
  description = "Primary subnet of the nodes."
  type        = string
  default     = "10.0.0.0/20"
}

variable "pods_cidr" {
  description = "Secondary range of the pods."
  type        = string
  default     = "10.4.0.0/14"
}

variable "services_cidr" {
  description = "Secondary range of the Services."
  type        = string
  default     = "10.8.0.0/20"
}

variable "master_cidr" {
  description = "/28 of the private control-plane endpoint."
  type        = string
  default     = "172.16.0.0/28"
}

variable "fabric_cidr" {
  description = "Range carved into /24 subnets of the GPU fabric networks (GPUDirect RDMA / TCPXO)."
  type        = string
  default     = "192.168.0.0/16"
}

# --- Ray ---

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

variable "ingress_domain" {
  description = "DNS name of the OpenAI API (e.g. llm.example.com). Set: a global HTTPS load balancer with a Google-managed certificate in front of Serve's port 8000 (point the name at output ingress_ip). null: nothing is public; use port-forward."
  type        = string
  default     = null
}
