# Offline: this module has no providers. Run: python terraform/tf.py -chdir=terraform/modules/sizing test

run "kimi_k25_one_h200_node_per_replica_on_gke" {
  command = plan

  variables {
    cloud                  = "gke"
    gpu_type               = "H200"
    gpus_per_node          = 8
    tensor_parallel_size   = 8
    pipeline_parallel_size = 1
    min_replicas           = 1
    max_replicas           = 2
    machine_type           = "a3-ultragpu-8g"
  }

  assert {
    condition     = output.nodes_per_replica == 1 && output.gpus_per_replica == 8
    error_message = "TP 8 x PP 1 on 8-GPU nodes is one node per replica."
  }
  assert {
    condition     = output.min_nodes == 1 && output.max_nodes == 2
    error_message = "pool min/max must be replicas x nodes per replica."
  }
  assert {
    condition     = output.ray_accelerator_type == "H200" && output.machine.gke_accelerator == "nvidia-h200-141gb"
    error_message = "wrong accelerator names for H200 on GKE."
  }
  assert {
    condition     = output.fabric == "gib" && output.replica_gpu_memory_gb == 1128
    error_message = "a3-ultragpu-8g uses gIB RDMA; 8 x 141 GB."
  }
}

run "deepseek_r1_two_h100_nodes_per_replica_on_eks" {
  command = plan

  variables {
    cloud                  = "eks"
    gpu_type               = "H100"
    gpus_per_node          = 8
    tensor_parallel_size   = 8
    pipeline_parallel_size = 2
    min_replicas           = 1
    max_replicas           = 2
    machine_type           = "p5.48xlarge"
  }

  assert {
    condition     = output.nodes_per_replica == 2 && output.gpus_per_replica == 16
    error_message = "TP 8 x PP 2 on 8-GPU nodes is two nodes per replica."
  }
  assert {
    condition     = output.min_nodes == 2 && output.max_nodes == 4
    error_message = "pool min/max must be replicas x 2 nodes."
  }
  assert {
    condition     = output.fabric == "efa" && output.machine.fabric_nics == 32
    error_message = "p5.48xlarge has 32 EFA interfaces."
  }
  assert {
    condition     = output.worker_pod.gpus == 8 && output.worker_pod.cpu < 192 && output.worker_pod.memory_gib < 2048
    error_message = "the worker pod must leave room for system daemons."
  }
}

run "default_machine_type_per_cloud" {
  command = plan

  variables {
    cloud                = "gke"
    gpu_type             = "H100"
    tensor_parallel_size = 8
  }

  assert {
    condition     = output.machine_type == "a3-megagpu-8g"
    error_message = "H100 on GKE defaults to a3-megagpu-8g (GPUDirect-TCPXO)."
  }
  assert {
    condition     = output.min_nodes == 1 && output.max_nodes == 1
    error_message = "defaults are one replica."
  }
}

run "scale_to_zero_and_small_replicas" {
  command = plan

  variables {
    cloud                  = "eks"
    gpu_type               = "L40S"
    tensor_parallel_size   = 1
    pipeline_parallel_size = 4
    min_replicas           = 0
    max_replicas           = 3
  }

  assert {
    condition     = output.machine_type == "g6e.48xlarge" && output.nodes_per_replica == 1
    error_message = "4 L40S fit one g6e.48xlarge."
  }
  assert {
    condition     = output.min_nodes == 0 && output.max_nodes == 3
    error_message = "min_replicas = 0 gives an empty pool at rest."
  }
}
