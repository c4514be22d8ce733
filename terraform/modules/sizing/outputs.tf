output "cloud" {
  description = "The cloud these numbers are for."
  value       = var.cloud
}

output "gpu_type" {
  description = "GPU model of the worker nodes."
  value       = var.gpu_type
}

output "ray_accelerator_type" {
  description = "Ray's accelerator type of the GPU: the `accelerator_type:<X>` resource a worker group must declare for the KubeRay autoscaler to scale it from zero."
  value       = local.gpu.ray_accelerator_type
}

output "gpu_memory_gb" {
  description = "Memory of one GPU, GB."
  value       = local.gpu.memory_gb
}

output "machine_type" {
  description = "Machine type of the GPU nodes."
  value       = local.machine_type
}

output "machine" {
  description = "Catalogue entry of machine_type: cloud, gpu, gpus, vcpus, memory_gib, fabric, fabric_nics, local_ssd_count, gke_accelerator."
  value       = local.machine
}

output "fabric" {
  description = "Scale-out fabric of machine_type: gib, tcpxo, tcpx, efa, infiniband or none."
  value       = local.machine.fabric
}

output "gpus_per_node" {
  description = "GPUs on one node."
  value       = var.gpus_per_node
}

output "gpus_per_replica" {
  description = "GPUs of one replica: tensor_parallel_size x pipeline_parallel_size."
  value       = local.gpus_per_replica
}

output "nodes_per_replica" {
  description = "Nodes one replica spans."
  value       = local.nodes_per_replica
}

output "replica_gpu_memory_gb" {
  description = "GPU memory of one replica, GB (weights + KV cache must fit here)."
  value       = local.gpus_per_replica * local.gpu.memory_gb
}

output "min_nodes" {
  description = "GPU node-pool minimum (and Ray worker group minReplicas): min_replicas x nodes_per_replica."
  value       = local.min_nodes
}

output "max_nodes" {
  description = "GPU node-pool maximum (and Ray worker group maxReplicas): max_replicas x nodes_per_replica."
  value       = local.max_nodes
}

output "worker_pod" {
  description = "Requests of the one Ray worker pod per GPU node: cpu (cores), memory_gib and gpus."
  value = {
    cpu        = local.worker_pod_cpu
    memory_gib = local.worker_pod_memory_gib
    gpus       = var.gpus_per_node
  }
}
