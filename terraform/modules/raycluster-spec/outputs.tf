output "manifest" {
  description = "The RayCluster object (ray.io/v1), ready for yamlencode."
  value       = local.manifest
}

output "serve_port" {
  description = "Serve's HTTP port on the head."
  value       = local.serve_port
}
