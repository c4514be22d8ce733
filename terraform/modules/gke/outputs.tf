output "cluster_name" {
  description = "GKE cluster name."
  value       = google_container_cluster.main.name
}

output "cluster_endpoint" {
  description = "Kubernetes API endpoint (reachable from authorized_networks only)."
  value       = "https://${google_container_cluster.main.endpoint}"
}

output "cluster_ca_certificate" {
  description = "Base64 CA certificate of the Kubernetes API."
  value       = google_container_cluster.main.master_auth[0].cluster_ca_certificate
}

output "get_credentials_command" {
  description = "Point kubectl at the cluster."
  value       = "gcloud container clusters get-credentials ${google_container_cluster.main.name} --region ${var.region} --project ${var.project_id}"
}

output "sizing" {
  description = "What the GPU pool was sized to."
  value = {
    gpu_type             = module.sizing.gpu_type
    machine_type         = module.sizing.machine_type
    fabric               = module.sizing.fabric
    nodes_per_replica    = module.sizing.nodes_per_replica
    gpu_pool_min_nodes   = module.sizing.min_nodes
    gpu_pool_max_nodes   = module.sizing.max_nodes
    ray_accelerator_type = module.sizing.ray_accelerator_type
  }
}

output "ray_namespace" {
  description = "Namespace of the RayCluster."
  value       = module.ray_cluster.namespace
}

output "dashboard_port_forward_command" {
  description = "The dashboard and the REST API of `serve deploy` on localhost:8265 (never public)."
  value       = module.ray_cluster.dashboard_port_forward_command
}

output "ray_auth_token" {
  description = "Ray auth token (RAY_AUTH_TOKEN for serve deploy and the dashboard)."
  value       = module.ray_cluster.auth_token
  sensitive   = true
}

output "ingress_ip" {
  description = "Address to point ingress_domain at (null when nothing is exposed)."
  value       = local.expose ? google_compute_global_address.ingress[0].address : null
}

output "openai_base_url" {
  description = "The OpenAI-compatible API (null when nothing is exposed; use a port-forward to the serve Service)."
  value       = local.expose ? "https://${var.ingress_domain}/v1" : null
}
