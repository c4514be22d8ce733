output "cluster_name" {
  description = "EKS cluster name."
  value       = aws_eks_cluster.main.name
}

output "cluster_endpoint" {
  description = "Kubernetes API endpoint (reachable from public_access_cidrs and the VPC only)."
  value       = aws_eks_cluster.main.endpoint
}

output "cluster_ca_certificate" {
  description = "Base64 CA certificate of the Kubernetes API."
  value       = aws_eks_cluster.main.certificate_authority[0].data
}

output "update_kubeconfig_command" {
  description = "Point kubectl at the cluster."
  value       = "aws eks update-kubeconfig --region ${var.region} --name ${aws_eks_cluster.main.name}"
}

output "sizing" {
  description = "What the GPU node group was sized to."
  value = {
    gpu_type             = module.sizing.gpu_type
    machine_type         = module.sizing.machine_type
    efa_interfaces       = local.efa_interfaces
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

output "ingress_hostname" {
  description = "The ALB's DNS name: CNAME the certificate's name to it (null when nothing is exposed)."
  value       = local.expose ? try(kubernetes_ingress_v1.serve[0].status[0].load_balancer[0].ingress[0].hostname, null) : null
}
