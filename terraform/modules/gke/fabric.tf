# What the GPU worker pods need to use the fabric NICs, per fabric:
# - Kubernetes Network objects (GKENetworkParamSet + Network) for the extra NICs;
# - the NCCL plugin installer DaemonSet (Google's container-engine-accelerators
#   gpudirect-rdma/nccl-rdma-installer.yaml and gpudirect-tcpxo/nccl-tcpxo-installer.yaml,
#   Apache-2.0, rewritten here as objects);
# - pod annotations attaching the NICs, hostPath mounts of the plugin, NCCL environment.

locals {
  network_objects = flatten(concat(
    [for n in local.gvnic_networks : [
      {
        apiVersion = "networking.gke.io/v1"
        kind       = "GKENetworkParamSet"
        metadata   = { name = n }
        spec       = { vpc = google_compute_network.gvnic[n].name, vpcSubnet = google_compute_subnetwork.gvnic[n].name, deviceMode = "NetDevice" }
      },
      {
        apiVersion = "networking.gke.io/v1"
        kind       = "Network"
        metadata   = { name = n }
        spec       = { type = "Device", parametersRef = { group = "networking.gke.io", kind = "GKENetworkParamSet", name = n } }
      },
    ]],
    [for n in local.rdma_subnets : [
      {
        apiVersion = "networking.gke.io/v1"
        kind       = "GKENetworkParamSet"
        metadata   = { name = n }
        spec       = { vpc = google_compute_network.rdma[0].name, vpcSubnet = google_compute_subnetwork.rdma[n].name, deviceMode = "RDMA" }
      },
      {
        apiVersion = "networking.gke.io/v1"
        kind       = "Network"
        metadata   = { name = n }
        spec       = { type = "Device", parametersRef = { group = "networking.gke.io", kind = "GKENetworkParamSet", name = n } }
      },
    ]],
  ))

  installer_affinity = {
    nodeAffinity = {
      requiredDuringSchedulingIgnoredDuringExecution = {
        nodeSelectorTerms = [{
          matchExpressions = [{ key = "cloud.google.com/gke-accelerator", operator = "In", values = [local.machine.gke_accelerator] }]
        }]
      }
    }
  }
  pause_image = "gke.gcr.io/pause:3.8@sha256:880e63f94b145e46f1b1082bb71b85e21f16b99b180b9996407d61240ceb9830"

  gib_installer = {
    apiVersion = "apps/v1"
    kind       = "DaemonSet"
    metadata   = { name = "nccl-rdma-installer", namespace = "kube-system", labels = { "k8s-app" = "nccl-rdma-installer" } }
    spec = {
      selector       = { matchLabels = { "k8s-app" = "nccl-rdma-installer" } }
      updateStrategy = { type = "RollingUpdate" }
      template = {
        metadata = { labels = { name = "nccl-rdma-installer", "k8s-app" = "nccl-rdma-installer" } }
        spec = {
          priorityClassName = "system-node-critical"
          affinity          = local.installer_affinity
          tolerations       = [{ operator = "Exists" }]
          hostNetwork       = true
          hostPID           = true
          volumes = [
            { name = "library-dir-host", hostPath = { path = "/home/kubernetes/bin/nvidia/lib64", type = "DirectoryOrCreate" } },
            { name = "gib", hostPath = { path = "/home/kubernetes/bin/gib" } },
          ]
          initContainers = [{
            name            = "nccl-rdma-installer"
            image           = "us-docker.pkg.dev/gce-ai-infra/gpudirect-gib/nccl-plugin-gib:v1.1.1"
            resources       = { requests = { cpu = "150m" } }
            securityContext = { privileged = true }
            volumeMounts = [
              { name = "library-dir-host", mountPath = "/usr/local/home/kubernetes/bin/nvidia/lib64" },
              { name = "gib", mountPath = "/usr/local/home/kubernetes/bin/gib" },
            ]
            command = ["/bin/sh", "-c"]
            args = [join("\n", [
              "set -ex",
              "/scripts/container_entry.sh install",
              "cp -r /var/lib/gib/lib64/. /usr/local/home/kubernetes/bin/nvidia/lib64",
              "cp -r /var/lib/gib/. /usr/local/home/kubernetes/bin/gib",
            ])]
          }]
          containers = [{ name = "pause", image = local.pause_image }]
        }
      }
    }
  }

  tcpxo_installer = {
    apiVersion = "apps/v1"
    kind       = "DaemonSet"
    metadata   = { name = "nccl-tcpxo-installer", namespace = "kube-system", labels = { "k8s-app" = "nccl-tcpxo-installer" } }
    spec = {
      selector       = { matchLabels = { "k8s-app" = "nccl-tcpxo-installer" } }
      updateStrategy = { type = "RollingUpdate" }
      template = {
        metadata = { labels = { name = "nccl-tcpxo-installer", "k8s-app" = "nccl-tcpxo-installer" } }
        spec = {
          priorityClassName = "system-node-critical"
          affinity          = local.installer_affinity
          tolerations       = [{ operator = "Exists" }]
          hostNetwork       = true
          hostPID           = true
          volumes = [
            { name = "var-lib", hostPath = { path = "/var/lib" } },
            { name = "library-dir-host", hostPath = { path = "/home/kubernetes/bin" } },
          ]
          initContainers = [
            {
              name            = "pre-installation"
              image           = "ubuntu"
              securityContext = { privileged = true }
              command = ["nsenter", "-at", "1", "--", "sh", "-c", join("\n", [
                "/sbin/iptables -I INPUT -p tcp -m tcp -j ACCEPT && modprobe import-helper",
                "mkdir -p /dev/aperture_devices",
                "for BDF in $(lspci -nn -D | grep '1ae0:0084' | awk '{print $1}'); do",
                "  target=/dev/aperture_devices/$BDF; mkdir -p $target; umount -R $target || true",
                "  mount --bind $(readlink -f /sys/bus/pci/devices/$BDF) $target",
                "done",
                "chmod -R a+r /dev/aperture_devices/ && chmod a+rw /dev/aperture_devices/*/resource*",
              ])]
            },
            {
              name            = "nccl-tcpxo-installer"
              image           = "us-docker.pkg.dev/gce-ai-infra/gpudirect-tcpxo/nccl-plugin-gpudirecttcpx-dev:v1.0.15"
              resources       = { requests = { cpu = "150m" } }
              securityContext = { privileged = true }
              volumeMounts = [
                { name = "var-lib", mountPath = "/var/lib" },
                { name = "library-dir-host", mountPath = "/usr/local" },
              ]
              command = ["/bin/sh", "-c"]
              args = [join("\n", [
                "set -ex",
                "chmod 755 /scripts/container_entry.sh",
                "/scripts/container_entry.sh install --install-nccl",
                "mkdir -p /usr/local/nvidia/lib64",
                "cp -r /var/lib/tcpxo/lib64/. /usr/local/nvidia/lib64",
              ])]
            },
          ]
          containers = [{ name = "pause", image = local.pause_image }]
        }
      }
    }
  }

  # --- the GPU worker pods ---

  pod_interfaces = concat(
    [{ interfaceName = "eth0", network = "default" }],
    local.fabric == "gib" ? [for i, n in local.rdma_subnets : { interfaceName = "eth${i + 2}", network = n }] : [],
    local.fabric == "tcpxo" ? [for i, n in local.gvnic_networks : { interfaceName = "eth${i + 1}", network = n }] : [],
  )

  gib_pod = {
    annotations = {
      "networking.gke.io/default-interface" = "eth0"
      "networking.gke.io/interfaces"        = jsonencode(local.pod_interfaces)
    }
    env = {
      NCCL_NET = "gIB"
      # Check in a worker's log: NET/gIB is good, NET/Socket is the silent TCP fallback.
      NCCL_DEBUG = "WARN"
    }
    setup_script = join("\n", [
      "export LD_LIBRARY_PATH=/usr/local/gib/lib64:/usr/local/nvidia/lib64:$${LD_LIBRARY_PATH:-}",
      "source /usr/local/gib/scripts/set_nccl_env.sh",
    ])
    volumes = [
      { name = "nvidia-lib", hostPath = { path = "/home/kubernetes/bin/nvidia" } },
      { name = "gib", hostPath = { path = "/home/kubernetes/bin/gib" } },
    ]
    volume_mounts = [
      { name = "nvidia-lib", mountPath = "/usr/local/nvidia" },
      { name = "gib", mountPath = "/usr/local/gib" },
    ]
    sidecars = []
  }
  tcpxo_pod = {
    annotations = {
      "networking.gke.io/default-interface"   = "eth0"
      "networking.gke.io/interfaces"          = jsonencode(local.pod_interfaces)
      "devices.gke.io/container.tcpxo-daemon" = join("", [for d in concat([for i in range(module.sizing.gpus_per_node) : "/dev/nvidia${i}"], ["/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/dmabuf_import_helper"]) : "- path: ${d}\n"])
    }
    env = {
      NCCL_FASTRAK_LLCM_DEVICE_DIRECTORY = "/dev/aperture_devices"
      NCCL_DEBUG                         = "WARN"
    }
    setup_script = join("\n", [
      "export LD_LIBRARY_PATH=/usr/local/nvidia/lib64:$${LD_LIBRARY_PATH:-}",
      "source /usr/local/nvidia/lib64/nccl-env-profile.sh",
    ])
    volumes = [
      { name = "nvidia-lib", hostPath = { path = "/home/kubernetes/bin/nvidia/lib64" } },
      { name = "aperture-devices", hostPath = { path = "/dev/aperture_devices" } },
      { name = "sys", hostPath = { path = "/sys" } },
      { name = "proc-sys", hostPath = { path = "/proc/sys" } },
    ]
    volume_mounts = [
      { name = "nvidia-lib", mountPath = "/usr/local/nvidia/lib64" },
      { name = "aperture-devices", mountPath = "/dev/aperture_devices" },
    ]
    # GPUDirect-TCPXO's receive data path manager runs beside the Ray container.
    sidecars = [{
      name    = "tcpxo-daemon"
      image   = "us-docker.pkg.dev/gce-ai-infra/gpudirect-tcpxo/tcpgpudmarxd-dev:v1.0.21"
      command = ["/bin/sh", "-c"]
      args    = ["chmod 755 /fts/entrypoint_rxdm_container.sh && exec /fts/entrypoint_rxdm_container.sh --num_hops=2"]
      securityContext = {
        capabilities = { add = ["NET_ADMIN", "NET_BIND_SERVICE"] }
      }
      env = [{ name = "LD_LIBRARY_PATH", value = "/usr/local/nvidia/lib64" }]
      volumeMounts = [
        { name = "nvidia-lib", mountPath = "/usr/local/nvidia/lib64" },
        { name = "sys", mountPath = "/hostsysfs" },
        { name = "proc-sys", mountPath = "/hostprocsysfs" },
      ]
    }]
  }

  # Per attribute, so each conditional has one type. Machine types without a GPUDirect
  # fabric here (tcpx, none) run single-node replicas only (the cluster's precondition).
  is_gib   = local.fabric == "gib"
  is_tcpxo = local.fabric == "tcpxo"
  pod = {
    annotations   = local.is_gib ? local.gib_pod.annotations : local.is_tcpxo ? local.tcpxo_pod.annotations : {}
    env           = local.is_gib ? local.gib_pod.env : local.is_tcpxo ? local.tcpxo_pod.env : {}
    setup_script  = local.is_gib ? local.gib_pod.setup_script : local.is_tcpxo ? local.tcpxo_pod.setup_script : ""
    volumes       = concat(local.is_gib ? local.gib_pod.volumes : [], local.is_tcpxo ? local.tcpxo_pod.volumes : [])
    volume_mounts = concat(local.is_gib ? local.gib_pod.volume_mounts : [], local.is_tcpxo ? local.tcpxo_pod.volume_mounts : [])
    sidecars      = local.is_tcpxo ? local.tcpxo_pod.sidecars : []
  }
  fabric_manifests = concat(
    local.network_objects,
    local.is_gib ? [local.gib_installer] : [],
    local.is_tcpxo ? [local.tcpxo_installer] : [],
  )
}
