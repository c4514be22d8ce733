# The only public endpoint: an internet-facing ALB, HTTPS 443 only (ACM certificate, TLS 1.2+),
# to Serve's port 8000 on the head pod. Ray's dashboard (8265), GCS (6379) and client (10001)
# ports are never behind it.

locals {
  expose = var.acm_certificate_arn != null
}

resource "kubernetes_ingress_v1" "serve" {
  count = local.expose ? 1 : 0

  metadata {
    name      = "${var.name}-serve"
    namespace = module.ray_cluster.namespace
    annotations = {
      "alb.ingress.kubernetes.io/scheme"                   = "internet-facing"
      "alb.ingress.kubernetes.io/target-type"              = "ip"
      "alb.ingress.kubernetes.io/listen-ports"             = jsonencode([{ HTTPS = 443 }])
      "alb.ingress.kubernetes.io/certificate-arn"          = var.acm_certificate_arn
      "alb.ingress.kubernetes.io/ssl-policy"               = "ELBSecurityPolicy-TLS13-1-2-2021-06"
      "alb.ingress.kubernetes.io/inbound-cidrs"            = join(",", var.ingress_allowed_cidrs)
      "alb.ingress.kubernetes.io/healthcheck-path"         = "/-/healthz" # Serve's proxy health route
      "alb.ingress.kubernetes.io/load-balancer-attributes" = "idle_timeout.timeout_seconds=3600,routing.http.drop_invalid_header_fields.enabled=true"
      "alb.ingress.kubernetes.io/target-group-attributes"  = "deregistration_delay.timeout_seconds=300"
    }
  }

  wait_for_load_balancer = true

  spec {
    ingress_class_name = "alb"
    rule {
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

  depends_on = [helm_release.lb_controller]
}
