variable "name" {
  description = "Name of the RayCluster (also the prefix of its Services and Secret)."
  type        = string

  validation {
    condition     = can(regex("^[a-z]([-a-z0-9]{0,38}[a-z0-9])?$", var.name))
    error_message = "name must be a DNS label of at most 40 characters (KubeRay derives longer names from it)."
  }
}

variable "labels" {
  description = "Kubernetes labels added to every object this module creates."
  type        = map(string)
  default     = {}
}

variable "ray_version" {
  description = "Ray version of ray_image (RayCluster spec.rayVersion). Token authentication needs Ray >= 2.52."
  type        = string
  default     = "2.60.0"
}

variable "ray_image" {
  description = "Container image of the head and workers: Ray + vLLM + this project's `deployments` package (serve deploy cannot upload a local working_dir)."
  type        = string
}

variable "image_pull_policy" {
  description = "imagePullPolicy of the Ray containers."
  type        = string
  default     = "IfNotPresent"
}

variable "head_node_selector" {
  description = "nodeSelector of the head pod (the CPU pool: the head runs no model)."
  type        = map(string)
}

variable "head_cpu" {
  description = "CPU cores of the head pod (GCS, dashboard, Serve controller and proxy, autoscaler)."
  type        = number
  default     = 8
}

variable "head_memory_gib" {
  description = "Memory of the head pod, GiB."
  type        = number
  default     = 32
}

variable "head_object_store_memory_gib" {
  description = "Ray object store of the head, GiB (it holds no tensors)."
  type        = number
  default     = 2
}

variable "worker_group_name" {
  description = "Name of the GPU worker group (e.g. gpu-h200)."
  type        = string
}

variable "accelerator_type" {
  description = "Ray accelerator type of the workers' GPUs (e.g. H200): the group declares `accelerator_type:<X>: 1`, which the KubeRay autoscaler does not infer when scaling from zero."
  type        = string
}

variable "gpus_per_node" {
  description = "GPUs of one worker pod (= one node)."
  type        = number
}

variable "gpu_resource_name" {
  description = "Kubernetes extended resource of the GPUs."
  type        = string
  default     = "nvidia.com/gpu"
}

variable "worker_cpu" {
  description = "CPU cores of one worker pod."
  type        = number
}

variable "worker_memory_gib" {
  description = "Memory of one worker pod, GiB (includes the memory-backed /dev/shm)."
  type        = number
}

variable "min_workers" {
  description = "Fewest GPU worker pods (= nodes): min_replicas x nodes per replica."
  type        = number
}

variable "max_workers" {
  description = "Most GPU worker pods (= nodes): max_replicas x nodes per replica."
  type        = number

  validation {
    condition     = var.max_workers >= var.min_workers && var.max_workers >= 1
    error_message = "max_workers must be >= min_workers and >= 1."
  }
}

variable "worker_node_selector" {
  description = "nodeSelector of the GPU worker pods (the GPU pool's label)."
  type        = map(string)
}

variable "worker_tolerations" {
  description = "Tolerations of the GPU worker pods (the GPU pool's taints)."
  type = list(object({
    key      = string
    operator = string
    value    = optional(string)
    effect   = string
  }))
}

variable "worker_ray_labels" {
  description = "Ray node labels of the GPU worker group (its top-level `labels:`), for label selectors in placement groups. Keys may not start with ray.io/."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for k in keys(var.worker_ray_labels) : !startswith(k, "ray.io/")])
    error_message = "Custom Ray label keys may not start with ray.io/ (Ray sets those itself)."
  }
}

variable "worker_object_store_memory_gib" {
  description = "Ray object store of each worker, GiB. Modest on purpose: vLLM moves tensors over NCCL, not the object store (default would be 30% of RAM, up to 200 GB)."
  type        = number
  default     = 32
}

variable "shm_size_gib" {
  description = "Size of the memory-backed /dev/shm of each worker (NCCL and the object store live there; Kubernetes' default is 64 MiB). Must exceed worker_object_store_memory_gib."
  type        = number
  default     = 64

  validation {
    condition     = var.shm_size_gib > var.worker_object_store_memory_gib
    error_message = "shm_size_gib must exceed worker_object_store_memory_gib: the object store lives in /dev/shm."
  }
}

variable "model_cache_size_gib" {
  description = "Size of the per-node model cache (emptyDir on the node's local disks, mounted at /models, HF_HOME=/models/huggingface). DeepSeek-R1 FP8 needs >= 720 GB."
  type        = number
  default     = 1500
}

variable "worker_env" {
  description = "Extra environment of the GPU workers: the fabric's (EFA: FI_PROVIDER=efa ...; GCP: NCCL_NET=gIB ...)."
  type        = map(string)
  default     = {}
}

variable "serving_env" {
  description = "Environment of every Ray container, head and workers. The default is cluster/data/serving_env.yaml (its comments say why each value); tests/unit/test_terraform.py keeps the two equal."
  type        = map(string)
  default = {
    RAY_worker_niceness                            = "0"
    RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD     = "0"
    RAY_SERVE_ENABLE_HA_PROXY                      = "1"
    RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S = "2"
    RAY_SERVE_CONTROL_LOOP_INTERVAL_S              = "0.5"
  }
}

variable "worker_setup_script" {
  description = "Shell run in the worker container before `ray start` (e.g. sourcing the NCCL plugin's environment). Non-empty turns on KubeRay's ray.io/overwrite-container-cmd."
  type        = string
  default     = ""
}

variable "worker_pod_annotations" {
  description = "Annotations of the GPU worker pods (e.g. GKE multi-network interfaces)."
  type        = map(string)
  default     = {}
}

variable "worker_extra_resources" {
  description = "Extra extended resources of each worker pod, requests = limits (e.g. vpc.amazonaws.com/efa = 32)."
  type        = map(string)
  default     = {}
}

variable "worker_extra_volumes" {
  description = "Extra volumes of the GPU worker pods (Kubernetes objects, camelCase keys)."
  type        = any
  default     = []
}

variable "worker_extra_volume_mounts" {
  description = "Extra volumeMounts of the Ray worker container."
  type        = any
  default     = []
}

variable "worker_sidecars" {
  description = "Extra containers of the GPU worker pods (e.g. GKE's TCPXO receive-data-path daemon). The Ray container stays first."
  type        = any
  default     = []
}

variable "autoscaler_idle_timeout_seconds" {
  description = "Seconds a worker stays idle before the Ray autoscaler removes it."
  type        = number
  default     = 1800
}

variable "namespace" {
  description = "Namespace of the RayCluster."
  type        = string
}

variable "auth_secret_name" {
  description = "Kubernetes Secret holding the Ray auth token under the key auth_token (created by the ray-cluster module)."
  type        = string
}
