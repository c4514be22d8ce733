# Impossible inputs are rejected at plan time, with the variable named.

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

run "tensor_parallel_larger_than_a_node" {
  command = plan
  variables {
    tensor_parallel_size = 16
  }
  expect_failures = [var.tensor_parallel_size]
}

run "tensor_parallel_straddling_nodes" {
  command = plan
  variables {
    tensor_parallel_size   = 6
    pipeline_parallel_size = 2
  }
  expect_failures = [var.tensor_parallel_size]
}

run "unknown_gpu" {
  command = plan
  variables {
    gpu_type     = "V100"
    machine_type = null
  }
  expect_failures = [var.gpu_type]
}

run "gpu_not_offered_on_this_cloud" {
  command = plan
  variables {
    gpu_type     = "MI300X"
    machine_type = null
  }
  expect_failures = [var.gpu_type]
}

run "unknown_cloud" {
  command = plan
  variables {
    cloud = "oci"
  }
  expect_failures = [var.cloud]
}

run "max_below_min" {
  command = plan
  variables {
    min_replicas = 3
    max_replicas = 2
  }
  expect_failures = [var.max_replicas]
}

run "negative_min" {
  command = plan
  variables {
    min_replicas = -1
  }
  expect_failures = [var.min_replicas]
}

run "zero_max" {
  command = plan
  variables {
    min_replicas = 0
    max_replicas = 0
  }
  expect_failures = [var.max_replicas]
}

run "fractional_pipeline" {
  command = plan
  variables {
    pipeline_parallel_size = 1.5
  }
  expect_failures = [var.pipeline_parallel_size]
}

run "machine_type_of_another_cloud" {
  command = plan
  variables {
    machine_type = "p5e.48xlarge"
  }
  expect_failures = [var.machine_type]
}

run "machine_type_with_another_gpu" {
  command = plan
  variables {
    machine_type = "a3-megagpu-8g"
  }
  expect_failures = [var.machine_type]
}

run "unknown_machine_type" {
  command = plan
  variables {
    machine_type = "a9-hypergpu-8g"
  }
  expect_failures = [var.machine_type]
}

run "gpus_per_node_not_the_machines" {
  command = plan
  variables {
    gpus_per_node = 4
    # TP 8 > 4 fails too: only the gpus_per_node rule is asserted here.
    tensor_parallel_size = 4
  }
  expect_failures = [var.gpus_per_node]
}
