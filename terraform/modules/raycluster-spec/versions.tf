terraform {
  # Provider-free: only builds the RayCluster object, so `terraform test` runs offline.
  required_version = ">= 1.9"
}
