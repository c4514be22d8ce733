resource "google_compute_network" "main" {
  #checkov:skip=CKV2_GCP_18:GKE creates and owns this network's firewall rules (nodes, control plane, load-balancer health checks); the implied deny-ingress covers the rest.
  project                 = var.project_id
  name                    = var.name
  auto_create_subnetworks = false
}

resource "google_compute_subnetwork" "main" {
  project                  = var.project_id
  name                     = var.name
  region                   = var.region
  network                  = google_compute_network.main.id
  ip_cidr_range            = var.network_cidr
  private_ip_google_access = true

  secondary_ip_range {
    range_name    = "pods"
    ip_cidr_range = var.pods_cidr
  }
  secondary_ip_range {
    range_name    = "services"
    ip_cidr_range = var.services_cidr
  }

  log_config {
    aggregation_interval = "INTERVAL_10_MIN"
    flow_sampling        = 0.5
    metadata             = "INCLUDE_ALL_METADATA"
  }
}

# Private nodes pull images and weights through Cloud NAT.
resource "google_compute_router" "main" {
  project = var.project_id
  name    = var.name
  region  = var.region
  network = google_compute_network.main.id
}

resource "google_compute_router_nat" "main" {
  project                            = var.project_id
  name                               = var.name
  router                             = google_compute_router.main.name
  region                             = var.region
  nat_ip_allocate_option             = "AUTO_ONLY"
  source_subnetwork_ip_ranges_to_nat = "ALL_SUBNETWORKS_ALL_IP_RANGES"

  log_config {
    enable = true
    filter = "ERRORS_ONLY"
  }
}

# --- GPU fabric networks (GPUDirect RDMA over gIB, or GPUDirect-TCPXO) ---

resource "google_compute_network" "gvnic" {
  for_each = toset(local.gvnic_networks)

  project                 = var.project_id
  name                    = "${var.name}-${each.key}"
  auto_create_subnetworks = false
  mtu                     = local.fabric_mtu
}

resource "google_compute_subnetwork" "gvnic" {
  for_each = toset(local.gvnic_networks)

  project       = var.project_id
  name          = "${var.name}-${each.key}"
  region        = var.region
  network       = google_compute_network.gvnic[each.key].id
  ip_cidr_range = cidrsubnet(var.fabric_cidr, 8, index(local.gvnic_networks, each.key))

  private_ip_google_access = true
  log_config {
    aggregation_interval = "INTERVAL_10_MIN"
    flow_sampling        = 0.5
    metadata             = "INCLUDE_ALL_METADATA"
  }
}

# GPU-to-GPU traffic between the nodes, from inside the fabric range only.
resource "google_compute_firewall" "gvnic_internal" {
  for_each = toset(local.gvnic_networks)

  project       = var.project_id
  name          = "${var.name}-${each.key}-internal"
  network       = google_compute_network.gvnic[each.key].id
  direction     = "INGRESS"
  source_ranges = [var.fabric_cidr]

  allow {
    protocol = "tcp"
  }
  allow {
    protocol = "udp"
  }
  allow {
    protocol = "icmp"
  }
}

# The RoCE network: one subnet per GPU NIC; its zone-specific network profile enables RDMA.
resource "google_compute_network" "rdma" {
  #checkov:skip=CKV2_GCP_18:RoCE (RDMA) networks do not apply VPC firewall rules; the network has no route beyond its own subnets.
  count = length(local.rdma_subnets) > 0 ? 1 : 0

  project                 = var.project_id
  name                    = "${var.name}-rdma"
  auto_create_subnetworks = false
  mtu                     = local.fabric_mtu
  routing_mode            = "REGIONAL"
  network_profile         = "projects/${var.project_id}/global/networkProfiles/${var.zone}-vpc-roce"
}

resource "google_compute_subnetwork" "rdma" {
  for_each = toset(local.rdma_subnets)

  project       = var.project_id
  name          = "${var.name}-${each.key}"
  region        = var.region
  network       = google_compute_network.rdma[0].id
  ip_cidr_range = cidrsubnet(var.fabric_cidr, 8, 128 + index(local.rdma_subnets, each.key))
  #checkov:skip=CKV_GCP_26:RDMA traffic bypasses the VPC data plane (RoCE network profile): flow logs would see nothing.
  #checkov:skip=CKV_GCP_74:The RoCE subnets carry GPU-to-GPU RDMA only; nothing on them calls Google APIs.
}
