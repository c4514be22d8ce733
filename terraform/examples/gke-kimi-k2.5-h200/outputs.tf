output "sizing" {
  description = "What the GPU pool was sized to."
  value       = module.gke.sizing
}

output "dashboard_port_forward_command" {
  description = "The Ray dashboard and serve deploy's REST API on localhost:8265."
  value       = module.gke.dashboard_port_forward_command
}

output "ray_auth_token" {
  description = "RAY_AUTH_TOKEN for serve deploy and the dashboard."
  value       = module.gke.ray_auth_token
  sensitive   = true
}

output "get_credentials_command" {
  description = "Point kubectl at the cluster."
  value       = module.gke.get_credentials_command
}

output "ingress_ip" {
  description = "Point ingress_domain's A record here."
  value       = module.gke.ingress_ip
}

output "openai_base_url" {
  description = "The OpenAI-compatible API, when exposed."
  value       = module.gke.openai_base_url
}
