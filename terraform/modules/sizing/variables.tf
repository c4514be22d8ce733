# The sizing variables. Cloud modules and examples pass the same names through unchanged,
# and `python -m cluster tfvars <config> --cloud <cloud>` writes exactly these (less
# `cloud`, which each cloud module sets itself).

variable "cloud" {
  description = "Which cloud's machine types to use: gke, eks or aks."
  type        = string

  validation {
    condition     = contains(keys(local.default_machine_type), var.cloud)
    error_message = "cloud must be one of: gke, eks, aks."
  }
}

variable "gpu_type" {
  description = "GPU model of the worker nodes, as named in the Serve config's placement.accelerator: H100, H200, B200, A100 (80 GB), L40S or MI300X."
  type        = string

  validation {
    condition     = contains(keys(local.gpus), var.gpu_type)
    error_message = "Unknown gpu_type: must be one of H100, H200, B200, A100, L40S, MI300X."
  }
  validation {
    condition     = !contains(keys(local.gpus), var.gpu_type) || contains(keys(lookup(local.default_machine_type, var.cloud, {})), var.gpu_type)
    error_message = "This cloud has no 8-GPU machine type with that gpu_type in the catalogue (e.g. no L40S on GKE, MI300X only on AKS)."
  }
}

variable "machine_type" {
  description = "Cloud machine type of the GPU nodes (e.g. a3-ultragpu-8g, p5e.48xlarge). null: the catalogue's default for (cloud, gpu_type). Must carry gpu_type."
  type        = string
  default     = null

  validation {
    condition     = var.machine_type == null || contains(keys(local.machines), coalesce(var.machine_type, "-"))
    error_message = "Unknown machine_type: not in the sizing module's catalogue (catalogue.tf)."
  }
  validation {
    condition     = var.machine_type == null || try(local.machines[var.machine_type].cloud == var.cloud && local.machines[var.machine_type].gpu == var.gpu_type, true)
    error_message = "machine_type does not belong to this cloud or does not carry gpu_type."
  }
}

variable "gpus_per_node" {
  description = "GPUs on one node of machine_type (8 for every machine type in the catalogue)."
  type        = number
  default     = 8

  validation {
    condition     = var.gpus_per_node >= 1 && floor(var.gpus_per_node) == var.gpus_per_node
    error_message = "gpus_per_node must be a whole number >= 1."
  }
  validation {
    condition     = try(var.gpus_per_node == local.machine.gpus, true)
    error_message = "gpus_per_node does not match the GPU count of machine_type."
  }
}

variable "tensor_parallel_size" {
  description = "Tensor-parallel degree of one replica (vLLM tensor_parallel_size). A TP group stays inside one node."
  type        = number
  default     = 1

  validation {
    condition     = var.tensor_parallel_size >= 1 && floor(var.tensor_parallel_size) == var.tensor_parallel_size
    error_message = "tensor_parallel_size must be a whole number >= 1."
  }
  validation {
    condition     = var.tensor_parallel_size <= var.gpus_per_node
    error_message = "tensor_parallel_size is larger than gpus_per_node: a tensor-parallel group must sit inside one node (use pipeline_parallel_size across nodes)."
  }
  validation {
    condition     = var.tensor_parallel_size * var.pipeline_parallel_size <= var.gpus_per_node || var.gpus_per_node % var.tensor_parallel_size == 0
    error_message = "For a replica spanning nodes, tensor_parallel_size must divide gpus_per_node, or a tensor-parallel group would straddle two nodes."
  }
}

variable "pipeline_parallel_size" {
  description = "Pipeline-parallel degree of one replica (vLLM pipeline_parallel_size); stages beyond one node's GPUs go to further nodes."
  type        = number
  default     = 1

  validation {
    condition     = var.pipeline_parallel_size >= 1 && floor(var.pipeline_parallel_size) == var.pipeline_parallel_size
    error_message = "pipeline_parallel_size must be a whole number >= 1."
  }
}

variable "min_replicas" {
  description = "Fewest model replicas kept up (0 lets the GPU pool scale to zero; a cold start of a giant model takes 20-30 minutes)."
  type        = number
  default     = 1

  validation {
    condition     = var.min_replicas >= 0 && floor(var.min_replicas) == var.min_replicas
    error_message = "min_replicas must be a whole number >= 0."
  }
}

variable "max_replicas" {
  description = "Most model replicas the autoscalers may bring up; the GPU pool's maximum is max_replicas x nodes per replica."
  type        = number
  default     = 1

  validation {
    condition     = var.max_replicas >= 1 && floor(var.max_replicas) == var.max_replicas
    error_message = "max_replicas must be a whole number >= 1."
  }
  validation {
    condition     = var.max_replicas >= var.min_replicas
    error_message = "max_replicas must be >= min_replicas."
  }
}
