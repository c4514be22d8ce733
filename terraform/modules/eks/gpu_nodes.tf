# GPU nodes: one managed node group in one zone, in a cluster placement group, with every
# EFA network card of the instance attached (32 on p5/p5e), and the NVMe instance store
# as pod ephemeral storage (the model cache).

# EFA needs all traffic allowed between the members of its security group.
resource "aws_security_group" "efa" {
  name        = "${var.name}-efa"
  description = "EFA: all traffic between the GPU nodes themselves"
  vpc_id      = aws_vpc.main.id
  tags        = merge(local.tags, { Name = "${var.name}-efa" })
}

resource "aws_vpc_security_group_ingress_rule" "efa_self" {
  security_group_id            = aws_security_group.efa.id
  description                  = "EFA and NCCL between GPU nodes"
  ip_protocol                  = "-1"
  referenced_security_group_id = aws_security_group.efa.id
}

resource "aws_vpc_security_group_egress_rule" "efa_self" {
  security_group_id            = aws_security_group.efa.id
  description                  = "EFA and NCCL between GPU nodes"
  ip_protocol                  = "-1"
  referenced_security_group_id = aws_security_group.efa.id
}

resource "aws_placement_group" "gpu" {
  name     = "${var.name}-${local.gpu_pool}"
  strategy = "cluster"
  tags     = local.tags
}

resource "aws_launch_template" "gpu" {
  name_prefix = "${var.name}-${local.gpu_pool}-"

  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }

  block_device_mappings {
    device_name = "/dev/xvda"
    ebs {
      volume_size = var.gpu_root_volume_gb
      volume_type = "gp3"
      encrypted   = true
    }
  }

  placement {
    group_name = aws_placement_group.gpu.name
  }

  # Card 0 carries the primary ENA+EFA interface; the others are EFA-only (no IP address).
  dynamic "network_interfaces" {
    for_each = range(local.efa_interfaces)
    content {
      network_card_index    = network_interfaces.value
      device_index          = network_interfaces.value == 0 ? 0 : 1
      interface_type        = network_interfaces.value == 0 ? "efa" : "efa-only"
      delete_on_termination = true
      security_groups       = [aws_eks_cluster.main.vpc_config[0].cluster_security_group_id, aws_security_group.efa.id]
    }
  }

  dynamic "capacity_reservation_specification" {
    for_each = var.capacity_reservation_id == null ? [] : [var.capacity_reservation_id]
    content {
      capacity_reservation_target {
        capacity_reservation_id = capacity_reservation_specification.value
      }
    }
  }

  # AL2023 nodeadm: the NVMe instance store as one RAID0 for containerd and pod emptyDirs.
  user_data = base64encode(<<-EOT
    MIME-Version: 1.0
    Content-Type: multipart/mixed; boundary="BOUNDARY"

    --BOUNDARY
    Content-Type: application/node.eks.aws

    apiVersion: node.eks.aws/v1alpha1
    kind: NodeConfig
    spec:
      instance:
        localStorage:
          strategy: RAID0

    --BOUNDARY--
  EOT
  )

  tag_specifications {
    resource_type = "instance"
    tags          = merge(local.tags, { Name = "${var.name}-${local.gpu_pool}" })
  }
}

resource "aws_eks_node_group" "gpu" {
  cluster_name    = aws_eks_cluster.main.name
  node_group_name = local.gpu_pool
  node_role_arn   = aws_iam_role.nodes.arn
  subnet_ids      = [aws_subnet.private[0].id] # one zone: local.gpu_zone
  ami_type        = "AL2023_x86_64_NVIDIA"     # driver, EFA and aws-ofi-nccl on the host
  instance_types  = [module.sizing.machine_type]
  capacity_type   = "ON_DEMAND"

  launch_template {
    id      = aws_launch_template.gpu.id
    version = aws_launch_template.gpu.latest_version
  }

  # Pool bounds from the sizing: replicas x nodes per replica.
  scaling_config {
    desired_size = module.sizing.min_nodes
    min_size     = module.sizing.min_nodes
    max_size     = module.sizing.max_nodes
  }

  update_config {
    max_unavailable = 1
  }

  labels = {
    (local.pool_label)       = local.gpu_pool
    "giantserve.io/gpu"      = var.gpu_type
    "nvidia.com/gpu.present" = "true" # what the NVIDIA device plugin's default affinity selects
  }

  taint {
    key    = local.gpu_taint_key
    value  = "present"
    effect = "NO_SCHEDULE"
  }

  tags = local.tags

  depends_on = [aws_iam_role_policy_attachment.nodes]

  lifecycle {
    # The cluster autoscaler owns the node count after creation.
    ignore_changes = [scaling_config[0].desired_size]
  }
}

# Scale from zero: the cluster autoscaler reads a group's labels, taints and extended
# resources from its Auto Scaling group's tags (managed node groups do not copy them there).
resource "aws_autoscaling_group_tag" "gpu" {
  for_each = {
    "k8s.io/cluster-autoscaler/node-template/label/${local.pool_label}"       = local.gpu_pool
    "k8s.io/cluster-autoscaler/node-template/label/giantserve.io/gpu"         = var.gpu_type
    "k8s.io/cluster-autoscaler/node-template/taint/${local.gpu_taint_key}"    = "present:NoSchedule"
    "k8s.io/cluster-autoscaler/node-template/resources/nvidia.com/gpu"        = tostring(module.sizing.gpus_per_node)
    "k8s.io/cluster-autoscaler/node-template/resources/vpc.amazonaws.com/efa" = tostring(local.efa_interfaces)
  }

  autoscaling_group_name = aws_eks_node_group.gpu.resources[0].autoscaling_groups[0].name
  tag {
    key                 = each.key
    value               = each.value
    propagate_at_launch = false
  }
}
