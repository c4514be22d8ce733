resource "google_service_account" "nodes" {
  project      = var.project_id
  account_id   = "${var.name}-nodes"
  display_name = "GKE nodes of ${var.name}"
}

resource "google_project_iam_member" "nodes" {
  for_each = toset([
    "roles/logging.logWriter",
    "roles/monitoring.metricWriter",
    "roles/monitoring.viewer",
    "roles/stackdriver.resourceMetadata.writer",
    "roles/artifactregistry.reader",
  ])

  project = var.project_id
  role    = each.key
  member  = "serviceAccount:${google_service_account.nodes.email}"
}

resource "google_container_cluster" "main" {
  #checkov:skip=CKV_GCP_65:Google Groups for RBAC needs a Workspace domain of the operator's own; left to them.
  #checkov:skip=CKV_GCP_24:PodSecurityPolicy was removed from Kubernetes (1.25); namespaces use Pod Security admission.
  #checkov:skip=CKV_GCP_12:NetworkPolicy is enforced by Dataplane V2 (datapath_provider ADVANCED_DATAPATH), not the legacy network_policy addon.
  #checkov:skip=CKV_GCP_61:Intranode visibility is not verified with multi-networking (the GPU NICs); Dataplane V2 NetworkPolicy governs pod traffic.
  project  = var.project_id
  name     = var.name
  location = var.region

  # Node pools are separate resources; the default pool is removed right away.
  remove_default_node_pool = true
  initial_node_count       = 1
  deletion_protection      = var.deletion_protection
  resource_labels          = local.labels

  network         = google_compute_network.main.id
  subnetwork      = google_compute_subnetwork.main.id
  networking_mode = "VPC_NATIVE"
  ip_allocation_policy {
    cluster_secondary_range_name  = "pods"
    services_secondary_range_name = "services"
  }

  # Dataplane V2 (enforces NetworkPolicy) is required by multi-networking (the GPU NICs).
  datapath_provider       = "ADVANCED_DATAPATH"
  enable_multi_networking = length(local.gvnic_networks) + length(local.rdma_subnets) > 0

  private_cluster_config {
    enable_private_nodes    = true
    enable_private_endpoint = false
    master_ipv4_cidr_block  = var.master_cidr
  }

  master_authorized_networks_config {
    dynamic "cidr_blocks" {
      for_each = var.authorized_networks
      content {
        cidr_block   = cidr_blocks.value.cidr_block
        display_name = cidr_blocks.value.display_name
      }
    }
  }

  master_auth {
    client_certificate_config {
      issue_client_certificate = false
    }
  }

  workload_identity_config {
    workload_pool = "${var.project_id}.svc.id.goog"
  }

  release_channel {
    channel = var.release_channel
  }

  enable_shielded_nodes = true

  binary_authorization {
    evaluation_mode = "PROJECT_SINGLETON_POLICY_ENFORCE"
  }

  dynamic "database_encryption" {
    for_each = var.database_encryption_key == null ? [] : [var.database_encryption_key]
    content {
      state    = "ENCRYPTED"
      key_name = database_encryption.value
    }
  }

  # Settings of the short-lived default pool (checkov reads these too).
  node_config {
    service_account = google_service_account.nodes.email
    oauth_scopes    = ["https://www.googleapis.com/auth/cloud-platform"]
    image_type      = "COS_CONTAINERD"
    metadata        = { disable-legacy-endpoints = "true" }
    shielded_instance_config {
      enable_secure_boot          = true
      enable_integrity_monitoring = true
    }
    workload_metadata_config {
      mode = "GKE_METADATA"
    }
  }

  lifecycle {
    ignore_changes = [node_config]

    precondition {
      condition     = contains(["gib", "tcpxo"], local.fabric) || module.sizing.nodes_per_replica == 1
      error_message = "A replica spanning nodes needs GPUDirect RDMA (a3-ultragpu-8g, a4-highgpu-8g) or TCPXO (a3-megagpu-8g) on GKE; ${module.sizing.machine_type} would run NCCL over TCP sockets."
    }
  }
}

resource "google_container_node_pool" "head" {
  project  = var.project_id
  name     = local.head_pool
  cluster  = google_container_cluster.main.id
  location = var.region

  node_locations = [var.zone]
  autoscaling {
    min_node_count = 1
    max_node_count = var.head_pool_max_nodes
  }

  management {
    auto_repair  = true
    auto_upgrade = true
  }

  node_config {
    machine_type    = var.head_machine_type
    image_type      = "COS_CONTAINERD"
    service_account = google_service_account.nodes.email
    oauth_scopes    = ["https://www.googleapis.com/auth/cloud-platform"]
    labels          = { (local.pool_label) = local.head_pool }
    resource_labels = local.labels
    metadata        = { disable-legacy-endpoints = "true" }

    shielded_instance_config {
      enable_secure_boot          = true
      enable_integrity_monitoring = true
    }
    workload_metadata_config {
      mode = "GKE_METADATA"
    }
    gvnic {
      enabled = true
    }
  }
}

resource "google_compute_resource_policy" "compact" {
  count = var.compact_placement ? 1 : 0

  project = var.project_id
  name    = "${var.name}-${local.gpu_pool}-compact"
  region  = var.region

  group_placement_policy {
    collocation = "COLLOCATED"
  }
}

resource "google_container_node_pool" "gpu" {
  project  = var.project_id
  name     = local.gpu_pool
  cluster  = google_container_cluster.main.id
  location = var.region

  # One zone; the pool's size follows the Ray worker pods between the sizing bounds.
  node_locations     = [var.zone]
  initial_node_count = module.sizing.min_nodes
  autoscaling {
    min_node_count = module.sizing.min_nodes
    max_node_count = module.sizing.max_nodes
  }

  dynamic "placement_policy" {
    for_each = var.compact_placement ? [1] : []
    content {
      type        = "COMPACT"
      policy_name = google_compute_resource_policy.compact[0].name
    }
  }

  management {
    auto_repair  = true
    auto_upgrade = true
  }

  # GPUs are scarce: replace a node by first draining it, never by surging a new one.
  upgrade_settings {
    strategy        = "SURGE"
    max_surge       = 0
    max_unavailable = 1
  }

  network_config {
    dynamic "additional_node_network_configs" {
      for_each = local.gvnic_networks
      content {
        network    = google_compute_network.gvnic[additional_node_network_configs.value].name
        subnetwork = google_compute_subnetwork.gvnic[additional_node_network_configs.value].name
      }
    }
    dynamic "additional_node_network_configs" {
      for_each = local.rdma_subnets
      content {
        network    = google_compute_network.rdma[0].name
        subnetwork = google_compute_subnetwork.rdma[additional_node_network_configs.value].name
      }
    }
  }

  node_config {
    machine_type    = module.sizing.machine_type
    image_type      = "COS_CONTAINERD"
    disk_type       = local.boot_disk_type
    disk_size_gb    = var.gpu_boot_disk_size_gb
    service_account = google_service_account.nodes.email
    oauth_scopes    = ["https://www.googleapis.com/auth/cloud-platform"]
    resource_labels = local.labels
    metadata        = { disable-legacy-endpoints = "true" }

    labels = {
      (local.pool_label)  = local.gpu_pool
      "giantserve.io/gpu" = var.gpu_type
    }

    taint {
      key    = local.gpu_taint_key
      value  = "present"
      effect = "NO_SCHEDULE"
    }

    guest_accelerator {
      type  = local.machine.gke_accelerator
      count = module.sizing.gpus_per_node
      gpu_driver_installation_config {
        gpu_driver_version = "LATEST"
      }
    }

    # Pod emptyDirs (the model cache) on the local NVMe SSDs.
    ephemeral_storage_local_ssd_config {
      local_ssd_count = local.machine.local_ssd_count
    }

    gvnic {
      enabled = true
    }

    dynamic "reservation_affinity" {
      for_each = var.reservation_name == null ? [] : [var.reservation_name]
      content {
        consume_reservation_type = "SPECIFIC_RESERVATION"
        key                      = "compute.googleapis.com/reservation-name"
        values                   = [reservation_affinity.value]
      }
    }

    shielded_instance_config {
      enable_secure_boot          = true
      enable_integrity_monitoring = true
    }
    workload_metadata_config {
      mode = "GKE_METADATA"
    }
  }

  lifecycle {
    # The autoscaler owns the node count after creation.
    ignore_changes = [initial_node_count]
  }
}
