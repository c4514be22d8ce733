output "sizing" {
  description = "What the GPU pool was sized to."
  value       = module.eks.sizing
}

output "dashboard_port_forward_command" {
  description = "The Ray dashboard and serve deploy's REST API on localhost:8265."
  value       = module.eks.dashboard_port_forward_command
}

output "ray_auth_token" {
  description = "RAY_AUTH_TOKEN for serve deploy and the dashboard."
  value       = module.eks.ray_auth_token
  sensitive   = true
}

output "update_kubeconfig_command" {
  description = "Point kubectl at the cluster."
  value       = module.eks.update_kubeconfig_command
}

output "ingress_hostname" {
  description = "CNAME the certificate's name to this ALB, when exposed."
  value       = module.eks.ingress_hostname
}
