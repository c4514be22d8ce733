# In-cluster add-ons: GPU and EFA device plugins, the cluster autoscaler (follows the Ray
# worker pods between the node group's bounds), the AWS Load Balancer Controller (ALB).

resource "helm_release" "nvidia_device_plugin" {
  name       = "nvidia-device-plugin"
  repository = "https://nvidia.github.io/k8s-device-plugin"
  chart      = "nvidia-device-plugin"
  version    = "0.17.1"
  namespace  = "kube-system"
  values = [yamlencode({
    nodeSelector = { (local.pool_label) = local.gpu_pool }
    tolerations  = [{ key = local.gpu_taint_key, operator = "Exists", effect = "NoSchedule" }]
  })]

  depends_on = [aws_eks_node_group.head]
}

resource "helm_release" "efa_device_plugin" {
  name       = "aws-efa-k8s-device-plugin"
  repository = "https://aws.github.io/eks-charts"
  chart      = "aws-efa-k8s-device-plugin"
  version    = "v0.5.7"
  namespace  = "kube-system"
  values = [yamlencode({
    nodeSelector = { (local.pool_label) = local.gpu_pool }
    tolerations  = [{ key = local.gpu_taint_key, operator = "Exists", effect = "NoSchedule" }]
  })]

  depends_on = [aws_eks_node_group.head]
}

# --- pod identities ---

data "aws_iam_policy_document" "pod_identity_assume" {
  statement {
    actions = ["sts:AssumeRole", "sts:TagSession"]
    principals {
      type        = "Service"
      identifiers = ["pods.eks.amazonaws.com"]
    }
  }
}

data "aws_iam_policy_document" "cluster_autoscaler" {
  #checkov:skip=CKV_AWS_356:Describe* calls take no resource ARNs; the mutating calls below are limited to this cluster's tagged groups.
  statement {
    sid = "Describe"
    actions = [
      "autoscaling:DescribeAutoScalingGroups",
      "autoscaling:DescribeAutoScalingInstances",
      "autoscaling:DescribeLaunchConfigurations",
      "autoscaling:DescribeScalingActivities",
      "autoscaling:DescribeTags",
      "ec2:DescribeImages",
      "ec2:DescribeInstanceTypes",
      "ec2:DescribeLaunchTemplateVersions",
      "ec2:GetInstanceTypesFromInstanceRequirements",
      "eks:DescribeNodegroup",
    ]
    resources = ["*"]
  }
  statement {
    sid       = "ScaleOwnGroups"
    actions   = ["autoscaling:SetDesiredCapacity", "autoscaling:TerminateInstanceInAutoScalingGroup"]
    resources = ["*"]
    condition {
      test     = "StringEquals"
      variable = "aws:ResourceTag/eks:cluster-name"
      values   = [aws_eks_cluster.main.name]
    }
  }
}

resource "aws_iam_role" "cluster_autoscaler" {
  name               = "${var.name}-cluster-autoscaler"
  assume_role_policy = data.aws_iam_policy_document.pod_identity_assume.json
  tags               = local.tags
}

resource "aws_iam_role_policy" "cluster_autoscaler" {
  name   = "cluster-autoscaler"
  role   = aws_iam_role.cluster_autoscaler.id
  policy = data.aws_iam_policy_document.cluster_autoscaler.json
}

resource "aws_eks_pod_identity_association" "cluster_autoscaler" {
  cluster_name    = aws_eks_cluster.main.name
  namespace       = "kube-system"
  service_account = "cluster-autoscaler"
  role_arn        = aws_iam_role.cluster_autoscaler.arn
}

resource "helm_release" "cluster_autoscaler" {
  name       = "cluster-autoscaler"
  repository = "https://kubernetes.github.io/autoscaler"
  chart      = "cluster-autoscaler"
  version    = "9.46.6"
  namespace  = "kube-system"
  values = [yamlencode({
    awsRegion     = var.region
    autoDiscovery = { clusterName = aws_eks_cluster.main.name }
    rbac          = { serviceAccount = { name = "cluster-autoscaler" } }
    nodeSelector  = { (local.pool_label) = local.head_pool }
    extraArgs = {
      "balance-similar-node-groups" = true
      "skip-nodes-with-system-pods" = false
      "scale-down-unneeded-time"    = "10m"
      "max-node-provision-time"     = "30m" # GPU capacity can be slow to come
    }
  })]

  depends_on = [aws_eks_pod_identity_association.cluster_autoscaler, aws_eks_addon.main]
}

# --- AWS Load Balancer Controller (only when the API is exposed) ---

# The controller's own IAM policy, from the tag of the version installed.
data "http" "lb_controller_policy" {
  count = local.expose ? 1 : 0
  url   = "https://raw.githubusercontent.com/kubernetes-sigs/aws-load-balancer-controller/v${var.aws_load_balancer_controller_version}/docs/install/iam_policy.json"
}

resource "aws_iam_role" "lb_controller" {
  count = local.expose ? 1 : 0

  name               = "${var.name}-aws-lb-controller"
  assume_role_policy = data.aws_iam_policy_document.pod_identity_assume.json
  tags               = local.tags
}

resource "aws_iam_role_policy" "lb_controller" {
  count = local.expose ? 1 : 0

  name   = "aws-load-balancer-controller"
  role   = aws_iam_role.lb_controller[0].id
  policy = data.http.lb_controller_policy[0].response_body
}

resource "aws_eks_pod_identity_association" "lb_controller" {
  count = local.expose ? 1 : 0

  cluster_name    = aws_eks_cluster.main.name
  namespace       = "kube-system"
  service_account = "aws-load-balancer-controller"
  role_arn        = aws_iam_role.lb_controller[0].arn
}

resource "helm_release" "lb_controller" {
  count = local.expose ? 1 : 0

  name       = "aws-load-balancer-controller"
  repository = "https://aws.github.io/eks-charts"
  chart      = "aws-load-balancer-controller"
  version    = replace(var.aws_load_balancer_controller_version, "/^2\\./", "1.")
  namespace  = "kube-system"
  values = [yamlencode({
    clusterName    = aws_eks_cluster.main.name
    region         = var.region
    vpcId          = aws_vpc.main.id
    serviceAccount = { name = "aws-load-balancer-controller" }
    nodeSelector   = { (local.pool_label) = local.head_pool }
  })]

  depends_on = [aws_eks_pod_identity_association.lb_controller, aws_eks_addon.main]
}
