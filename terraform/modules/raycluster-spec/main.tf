locals {
  serve_port      = 8000
  auth_secret_key = "auth_token" # the key KubeRay's authOptions.secretName expects
  gib             = 1024 * 1024 * 1024

  common_labels = merge(var.labels, { "app.kubernetes.io/part-of" = "giantserve" })

  # Token authentication (Ray >= 2.52, KubeRay >= 1.6): set explicitly on every Ray
  # container from the Secret; KubeRay's authOptions wires the autoscaler sidecar too.
  auth_env = [
    { name = "RAY_AUTH_MODE", value = "token" },
    {
      name      = "RAY_AUTH_TOKEN"
      valueFrom = { secretKeyRef = { name = var.auth_secret_name, key = local.auth_secret_key } }
    },
  ]

  serving_env = [for k in sort(keys(var.serving_env)) : { name = k, value = var.serving_env[k] }]

  # KubeRay single-quotes JSON values inside $KUBERAY_GEN_RAY_START_CMD
  # (--resources='{"accelerator_type:H200": 1}'), so it must run through eval.
  overwrite_cmd = var.worker_setup_script != ""
  head_args     = "ulimit -n 65536; eval \"$KUBERAY_GEN_RAY_START_CMD\""
  worker_args   = "ulimit -n 65536\n${var.worker_setup_script}\neval \"$KUBERAY_GEN_RAY_START_CMD\""

  head_resources = { cpu = tostring(var.head_cpu), memory = "${var.head_memory_gib}Gi" }

  head_container = merge(
    {
      name            = "ray-head"
      image           = var.ray_image
      imagePullPolicy = var.image_pull_policy
      # Container ports only. The head Service KubeRay makes is ClusterIP (serviceType
      # below): GCS (6379), dashboard (8265) and client (10001) stay inside the cluster.
      ports = [
        { name = "gcs", containerPort = 6379 },
        { name = "dashboard", containerPort = 8265 },
        { name = "client", containerPort = 10001 },
        { name = "serve", containerPort = local.serve_port },
        { name = "metrics", containerPort = 8080 },
      ]
      env             = concat(local.auth_env, local.serving_env)
      resources       = { requests = local.head_resources, limits = local.head_resources }
      securityContext = { allowPrivilegeEscalation = false }
    },
    local.overwrite_cmd ? { command = ["/bin/bash", "-c", "--"], args = [local.head_args] } : null,
  )

  worker_resources = merge(
    {
      cpu                     = tostring(var.worker_cpu)
      memory                  = "${var.worker_memory_gib}Gi"
      (var.gpu_resource_name) = tostring(var.gpus_per_node)
    },
    var.worker_extra_resources,
  )

  worker_container = merge(
    {
      name            = "ray-worker"
      image           = var.ray_image
      imagePullPolicy = var.image_pull_policy
      env = concat(
        local.auth_env,
        local.serving_env,
        [{ name = "HF_HOME", value = "/models/huggingface" }],
        [for k in sort(keys(var.worker_env)) : { name = k, value = var.worker_env[k] }],
      )
      resources = { requests = local.worker_resources, limits = local.worker_resources }
      volumeMounts = concat(
        [
          { name = "dshm", mountPath = "/dev/shm" },
          { name = "model-cache", mountPath = "/models" },
        ],
        var.worker_extra_volume_mounts,
      )
    },
    local.overwrite_cmd ? { command = ["/bin/bash", "-c", "--"], args = [local.worker_args] } : null,
  )

  manifest = {
    apiVersion = "ray.io/v1"
    kind       = "RayCluster"
    metadata = {
      name        = var.name
      namespace   = var.namespace
      labels      = local.common_labels
      annotations = local.overwrite_cmd ? { "ray.io/overwrite-container-cmd" = "true" } : {}
    }
    spec = {
      rayVersion = var.ray_version
      # The Ray autoscaler (KubeRay in-tree sidecar) adds and removes GPU workers between
      # minReplicas and maxReplicas; the cloud's node autoscaler follows the pods. It acts on
      # pending placement groups: the LLM policy leaves replicas waiting up to the pool's growth
      # (autoscaler_headroom_gpus; autoscaling/README.md, "Cluster level").
      enableInTreeAutoscaling = true
      autoscalerOptions = {
        version            = "v2"
        upscalingMode      = "Default"
        idleTimeoutSeconds = var.autoscaler_idle_timeout_seconds
        resources = {
          requests = { cpu = "500m", memory = "512Mi" }
          limits   = { cpu = "1", memory = "1Gi" }
        }
      }
      authOptions = {
        mode       = "token"
        secretName = var.auth_secret_name
      }
      headGroupSpec = {
        serviceType = "ClusterIP"
        rayStartParams = {
          "num-cpus"            = "0" # no model work on the head
          "num-gpus"            = "0"
          "dashboard-host"      = "0.0.0.0" # in-cluster (ClusterIP) and port-forward only
          "object-store-memory" = format("%d", var.head_object_store_memory_gib * local.gib)
        }
        template = {
          metadata = { labels = local.common_labels }
          spec = {
            nodeSelector = var.head_node_selector
            containers   = [local.head_container]
          }
        }
      }
      workerGroupSpecs = [
        {
          groupName   = var.worker_group_name
          replicas    = var.min_workers
          minReplicas = var.min_workers
          maxReplicas = var.max_workers
          numOfHosts  = 1
          # Declared, not inferred: the autoscaler cannot see a group's accelerator at zero.
          resources = { "accelerator_type:${var.accelerator_type}" = "1" }
          labels    = var.worker_ray_labels
          rayStartParams = {
            "object-store-memory" = format("%d", var.worker_object_store_memory_gib * local.gib)
          }
          template = {
            metadata = {
              labels      = local.common_labels
              annotations = var.worker_pod_annotations
            }
            spec = {
              nodeSelector = var.worker_node_selector
              tolerations  = [for t in var.worker_tolerations : { for k, v in t : k => v if v != null }]
              # Autoscaler v2: a failed worker pod is replaced, not restarted in place.
              restartPolicy = "Never"
              # Serve's graceful_shutdown_timeout_s is 300 s: let streams finish.
              terminationGracePeriodSeconds = 360
              containers                    = concat([local.worker_container], var.worker_sidecars)
              volumes = concat(
                [
                  # NCCL and the object store live in /dev/shm; Kubernetes gives 64 MiB.
                  { name = "dshm", emptyDir = { medium = "Memory", sizeLimit = "${var.shm_size_gib}Gi" } },
                  # Weights: on the node's local disks (local SSD / NVMe instance store).
                  { name = "model-cache", emptyDir = { sizeLimit = "${var.model_cache_size_gib}Gi" } },
                ],
                var.worker_extra_volumes,
              )
            }
          }
        }
      ]
    }
  }
}
