variable "name" {
  description = "Name of the RayCluster (also the prefix of its Services and Secret)."
  type        = string

  validation {
    condition     = can(regex("^[a-z]([-a-z0-9]{0,38}[a-z0-9])?$", var.name))
    error_message = "name must be a DNS label of at most 40 characters (KubeRay derives longer names from it)."
  }
}

variable "namespace" {
  description = "Kubernetes namespace of the RayCluster; created by this module."
  type        = string
  default     = "ray"
}

variable "labels" {
  description = "Kubernetes labels added to every object this module creates."
  type        = map(string)
  default     = {}
}

variable "kuberay_operator_version" {
  description = "Version of the kuberay-operator Helm chart. RayCluster authOptions (token auth) needs >= 1.6."
  type        = string
  default     = "1.6.2"
}

variable "kuberay_helm_repository" {
  description = "Helm repository of the KubeRay charts."
  type        = string
  default     = "https://ray-project.github.io/kuberay-helm/"
}

variable "ray_auth_token" {
  description = "Ray token-authentication token (RAY_AUTH_TOKEN). null: a random 64-character token, kept in the Terraform state and a Kubernetes Secret."
  type        = string
  default     = null
  sensitive   = true
}

variable "serve_service_annotations" {
  description = "Annotations of the ClusterIP Service in front of Serve's HTTP proxy (port 8000) that the cloud's load balancer targets."
  type        = map(string)
  default     = {}
}

variable "network_policy_enabled" {
  description = "Add a NetworkPolicy: Ray pods accept traffic from each other and from the KubeRay operator on any port, and from elsewhere only on the Serve port 8000."
  type        = bool
  default     = true
}

variable "extra_manifests" {
  description = "Further Kubernetes objects applied through the module's pass-through chart after the operator (cloud fabric objects, BackendConfig, ...)."
  type        = any
  default     = []
}

variable "raycluster" {
  description = "The RayCluster object to apply (the raycluster-spec module's `manifest` output)."
  type        = any
}

variable "auth_secret_name" {
  description = "Name of the Secret this module creates for the Ray auth token (the one the RayCluster's authOptions.secretName and env refer to)."
  type        = string
}
