output "namespace" {
  description = "Namespace of the RayCluster."
  value       = kubernetes_namespace_v1.ray.metadata[0].name
}

output "raycluster_name" {
  description = "Name of the RayCluster."
  value       = var.name
}

output "head_service_name" {
  description = "The ClusterIP Service KubeRay makes for the head (GCS 6379, dashboard 8265, client 10001)."
  value       = "${var.name}-head-svc"
}

output "serve_service_name" {
  description = "The ClusterIP Service of Serve's HTTP proxy that the ingress targets."
  value       = kubernetes_service_v1.serve.metadata[0].name
}

output "serve_port" {
  description = "Serve's HTTP port."
  value       = local.serve_port
}

output "auth_secret_name" {
  description = "Kubernetes Secret holding the Ray auth token (key auth_token)."
  value       = kubernetes_secret_v1.ray_auth.metadata[0].name
}

output "auth_token" {
  description = "The Ray auth token: export RAY_AUTH_MODE=token RAY_AUTH_TOKEN=<this> before `serve deploy`."
  value       = kubernetes_secret_v1.ray_auth.data[local.auth_secret_key]
  sensitive   = true
}

output "dashboard_port_forward_command" {
  description = "Reach the dashboard (and the REST API `serve deploy` uses) on localhost:8265."
  value       = "kubectl -n ${kubernetes_namespace_v1.ray.metadata[0].name} port-forward service/${var.name}-head-svc 8265:8265"
}
