# Offline: the RayCluster object is plain data. Run:
#   python terraform/tf.py -chdir=terraform/modules/raycluster-spec test

variables {
  name                 = "kimi"
  namespace            = "ray"
  auth_secret_name     = "kimi-ray-auth"
  ray_image            = "example.com/giantserve:latest"
  head_node_selector   = { "giantserve.io/pool" = "ray-head" }
  worker_group_name    = "gpu-h200"
  accelerator_type     = "H200"
  gpus_per_node        = 8
  worker_cpu           = 201
  worker_memory_gib    = 2509
  min_workers          = 1
  max_workers          = 2
  worker_node_selector = { "giantserve.io/pool" = "gpu-h200" }
  worker_tolerations   = [{ key = "nvidia.com/gpu", operator = "Exists", effect = "NoSchedule" }]
  worker_ray_labels    = { "giantserve.io/pool" = "gpu-h200" }
  worker_env           = { NCCL_NET = "gIB" }
}

run "worker_group_declares_accelerator_and_bounds" {
  command = plan

  assert {
    condition     = output.manifest.spec.workerGroupSpecs[0].resources["accelerator_type:H200"] == "1"
    error_message = "the GPU group must declare accelerator_type:H200 (the autoscaler does not infer it from zero)."
  }
  assert {
    condition     = output.manifest.spec.workerGroupSpecs[0].minReplicas == 1 && output.manifest.spec.workerGroupSpecs[0].maxReplicas == 2
    error_message = "worker group bounds come from the sizing."
  }
  assert {
    condition     = output.manifest.spec.enableInTreeAutoscaling == true
    error_message = "the Ray autoscaler must be on."
  }
  assert {
    condition     = output.manifest.spec.workerGroupSpecs[0].labels["giantserve.io/pool"] == "gpu-h200"
    error_message = "Ray labels go in the group's top-level labels."
  }
}

run "shm_object_store_and_fabric_env" {
  command = plan

  assert {
    condition = anytrue([
      for v in output.manifest.spec.workerGroupSpecs[0].template.spec.volumes :
      v.name == "dshm" && v.emptyDir.medium == "Memory"
    ])
    error_message = "workers need a memory-backed /dev/shm."
  }
  assert {
    condition     = contains([for m in output.manifest.spec.workerGroupSpecs[0].template.spec.containers[0].volumeMounts : m.mountPath], "/dev/shm")
    error_message = "/dev/shm must be mounted in the Ray container."
  }
  assert {
    condition     = output.manifest.spec.workerGroupSpecs[0].rayStartParams["object-store-memory"] == "34359738368"
    error_message = "an explicit 32 GiB object store by default."
  }
  assert {
    condition     = contains([for e in output.manifest.spec.workerGroupSpecs[0].template.spec.containers[0].env : e.name], "NCCL_NET")
    error_message = "fabric env must reach the worker container."
  }
  assert {
    condition     = output.manifest.spec.workerGroupSpecs[0].template.spec.containers[0].resources.limits["nvidia.com/gpu"] == "8"
    error_message = "one worker pod takes all 8 GPUs of its node."
  }
}

run "token_auth_and_private_head" {
  command = plan

  assert {
    condition     = output.manifest.spec.authOptions.mode == "token" && output.manifest.spec.authOptions.secretName == "kimi-ray-auth"
    error_message = "token authentication must be on, with our secret."
  }
  assert {
    condition = alltrue([
      for c in [output.manifest.spec.headGroupSpec.template.spec.containers[0], output.manifest.spec.workerGroupSpecs[0].template.spec.containers[0]] :
      contains([for e in c.env : "${e.name}=${try(e.value, "")}"], "RAY_AUTH_MODE=token")
    ])
    error_message = "RAY_AUTH_MODE=token on head and workers."
  }
  assert {
    condition     = output.manifest.spec.headGroupSpec.serviceType == "ClusterIP"
    error_message = "the head Service (6379/8265/10001) must stay ClusterIP."
  }
  assert {
    condition     = output.manifest.spec.headGroupSpec.rayStartParams["num-cpus"] == "0" && output.manifest.spec.headGroupSpec.rayStartParams["num-gpus"] == "0"
    error_message = "the head runs no model work."
  }
  assert {
    condition     = length(output.manifest.metadata.annotations) == 0 && !can(output.manifest.spec.headGroupSpec.template.spec.containers[0].args)
    error_message = "without a setup script KubeRay keeps its own container command."
  }
}

run "setup_script_overwrites_the_command_through_eval" {
  command = plan

  variables {
    worker_setup_script = "source /usr/local/gib/scripts/set_nccl_env.sh"
  }

  assert {
    condition     = output.manifest.metadata.annotations["ray.io/overwrite-container-cmd"] == "true"
    error_message = "a setup script needs KubeRay's overwrite annotation."
  }
  assert {
    condition     = strcontains(output.manifest.spec.workerGroupSpecs[0].template.spec.containers[0].args[0], "eval \"$KUBERAY_GEN_RAY_START_CMD\"")
    error_message = "the generated ray start command must run through eval (it holds quoted JSON)."
  }
  assert {
    condition     = strcontains(output.manifest.spec.headGroupSpec.template.spec.containers[0].args[0], "KUBERAY_GEN_RAY_START_CMD")
    error_message = "the head needs a command too once the annotation is set."
  }
}

run "object_store_must_fit_shm" {
  command = plan
  variables {
    worker_object_store_memory_gib = 64
    shm_size_gib                   = 32
  }
  expect_failures = [var.shm_size_gib]
}

run "ray_label_keys_reserved_prefix" {
  command = plan
  variables {
    worker_ray_labels = { "ray.io/accelerator-type" = "H200" }
  }
  expect_failures = [var.worker_ray_labels]
}

run "serving_env_on_every_ray_container" {
  command = plan

  assert {
    condition = alltrue([
      for container in [
        output.manifest.spec.headGroupSpec.template.spec.containers[0],
        output.manifest.spec.workerGroupSpecs[0].template.spec.containers[0],
      ] : contains([for e in container.env : "${e.name}=${try(e.value, "")}"], "RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD=0")
    ])
    error_message = "head and workers start with cluster/data/serving_env.yaml (Serve's single-loop replicas)."
  }
  assert {
    condition     = contains([for e in output.manifest.spec.workerGroupSpecs[0].template.spec.containers[0].env : e.name], "RAY_worker_niceness")
    error_message = "workers must not run vLLM at nice 15."
  }
}
