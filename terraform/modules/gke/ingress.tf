# The only public endpoint: HTTPS (Google-managed certificate, TLS >= 1.2) on a global
# external Application Load Balancer, to Serve's port 8000. No plain HTTP listener.
# Ray's dashboard (8265), GCS (6379) and client (10001) ports are never behind it.

locals {
  expose = var.ingress_domain != null

  ingress_manifests = local.expose ? [
    {
      apiVersion = "cloud.google.com/v1"
      kind       = "BackendConfig"
      metadata   = { name = "${var.name}-serve", namespace = var.namespace }
      spec = {
        # Long streamed completions.
        timeoutSec         = 3600
        connectionDraining = { drainingTimeoutSec = 300 }
        healthCheck = {
          type        = "HTTP"
          port        = 8000
          requestPath = "/-/healthz" # Serve's proxy health route
        }
      }
    },
    {
      apiVersion = "networking.gke.io/v1beta1"
      kind       = "FrontendConfig"
      metadata   = { name = "${var.name}-serve", namespace = var.namespace }
      spec       = { sslPolicy = google_compute_ssl_policy.ingress[0].name }
    },
  ] : []
}

resource "google_compute_global_address" "ingress" {
  count = local.expose ? 1 : 0

  project = var.project_id
  name    = "${var.name}-ingress"
}

resource "google_compute_managed_ssl_certificate" "ingress" {
  count = local.expose ? 1 : 0

  project = var.project_id
  name    = "${var.name}-ingress"
  managed {
    domains = [var.ingress_domain]
  }
}

resource "google_compute_ssl_policy" "ingress" {
  count = local.expose ? 1 : 0

  project         = var.project_id
  name            = "${var.name}-ingress"
  profile         = "MODERN"
  min_tls_version = "TLS_1_2"
}

resource "kubernetes_ingress_v1" "serve" {
  count = local.expose ? 1 : 0

  metadata {
    name      = "${var.name}-serve"
    namespace = module.ray_cluster.namespace
    annotations = {
      "kubernetes.io/ingress.class"                 = "gce"
      "kubernetes.io/ingress.allow-http"            = "false"
      "kubernetes.io/ingress.global-static-ip-name" = google_compute_global_address.ingress[0].name
      "ingress.gcp.kubernetes.io/pre-shared-cert"   = google_compute_managed_ssl_certificate.ingress[0].name
      "networking.gke.io/v1beta1.FrontendConfig"    = "${var.name}-serve"
    }
  }

  spec {
    rule {
      host = var.ingress_domain
      http {
        path {
          path      = "/"
          path_type = "Prefix"
          backend {
            service {
              name = module.ray_cluster.serve_service_name
              port {
                number = module.ray_cluster.serve_port
              }
            }
          }
        }
      }
    }
  }
}
