# Kubernetes plumbing of one Ray cluster: namespace, auth token Secret, the KubeRay operator,
# the RayCluster (built by ../raycluster-spec), the Serve Service and a NetworkPolicy.

locals {
  operator_namespace = "kuberay-system"
  auth_secret_key    = "auth_token" # the key KubeRay's authOptions.secretName expects
  serve_port         = 8000
  common_labels      = merge(var.labels, { "app.kubernetes.io/part-of" = "giantserve" })
}

resource "kubernetes_namespace_v1" "ray" {
  metadata {
    name   = var.namespace
    labels = local.common_labels
  }
}

resource "random_password" "ray_auth" {
  length  = 64
  special = false
}

resource "kubernetes_secret_v1" "ray_auth" {
  metadata {
    name      = var.auth_secret_name
    namespace = kubernetes_namespace_v1.ray.metadata[0].name
    labels    = local.common_labels
  }
  data = {
    (local.auth_secret_key) = coalesce(var.ray_auth_token, random_password.ray_auth.result)
  }
  type = "Opaque"
}

resource "helm_release" "kuberay_operator" {
  name             = "kuberay-operator"
  repository       = var.kuberay_helm_repository
  chart            = "kuberay-operator"
  version          = var.kuberay_operator_version
  namespace        = local.operator_namespace
  create_namespace = true
  wait             = true
}

# Cloud objects (fabric Networks, NCCL plugin installers, BackendConfig) go in before the Ray
# pods. A pass-through chart, not kubernetes_manifest: their CRDs need not exist at plan time.
resource "helm_release" "extra_manifests" {
  count     = length(var.extra_manifests) > 0 ? 1 : 0
  name      = "${var.name}-platform"
  chart     = "${path.module}/charts/manifests"
  namespace = kubernetes_namespace_v1.ray.metadata[0].name
  values    = [yamlencode({ manifests = var.extra_manifests })]
}

resource "helm_release" "raycluster" {
  name      = var.name
  chart     = "${path.module}/charts/manifests"
  namespace = kubernetes_namespace_v1.ray.metadata[0].name
  values    = [yamlencode({ manifests = [var.raycluster] })]
  # A RayCluster is ready long after Helm returns (GPU nodes, image pulls, weights).
  wait = false

  depends_on = [helm_release.kuberay_operator, helm_release.extra_manifests, kubernetes_secret_v1.ray_auth]
}

# What the cloud's load balancer targets: Serve's HTTP proxy on the head (Serve config
# proxy_location HeadOnly or EveryNode, http_options.host 0.0.0.0). ClusterIP: exposed only
# through the cloud module's TLS ingress.
resource "kubernetes_service_v1" "serve" {
  metadata {
    name        = "${var.name}-serve"
    namespace   = kubernetes_namespace_v1.ray.metadata[0].name
    labels      = local.common_labels
    annotations = var.serve_service_annotations
  }
  spec {
    type = "ClusterIP"
    selector = {
      "ray.io/cluster"   = var.name
      "ray.io/node-type" = "head"
    }
    port {
      name        = "http"
      port        = local.serve_port
      target_port = local.serve_port
      protocol    = "TCP"
    }
  }
}

resource "kubernetes_network_policy_v1" "ray" {
  count = var.network_policy_enabled ? 1 : 0

  metadata {
    name      = "${var.name}-ray"
    namespace = kubernetes_namespace_v1.ray.metadata[0].name
    labels    = local.common_labels
  }
  spec {
    pod_selector {
      match_labels = { "ray.io/cluster" = var.name }
    }
    policy_types = ["Ingress"]

    # Ray pods among themselves: GCS, raylets, object transfers, NCCL bootstrap.
    ingress {
      from {
        pod_selector {
          match_labels = { "ray.io/cluster" = var.name }
        }
      }
    }
    # The KubeRay operator.
    ingress {
      from {
        namespace_selector {
          match_labels = { "kubernetes.io/metadata.name" = local.operator_namespace }
        }
      }
    }
    # Everyone else, the load balancer included: the Serve port only (never 6379/8265/10001).
    ingress {
      ports {
        port     = tostring(local.serve_port)
        protocol = "TCP"
      }
    }
  }
}
