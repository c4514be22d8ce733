# The GPU catalogue: what a GPU is, and which 8-GPU machine types carry it on each cloud.
# Sources: terraform/README.md "Sources" (vendor and cloud docs, summarised in
# shared/reference/hardware.md). "[unverified]" marks numbers no primary source confirmed.
locals {
  # Keys are the accelerator names of our Serve configs (placement.accelerator).
  gpus = {
    H100 = {
      memory_gb = 80
      # Ray's `accelerator_type:<X>` resource and `ray.io/accelerator-type` label value.
      ray_accelerator_type = "H100"
      nvlink               = true
    }
    H200 = {
      memory_gb            = 141
      ray_accelerator_type = "H200"
      nvlink               = true
    }
    B200 = {
      memory_gb            = 180 # usable of 192 physical
      ray_accelerator_type = "B200"
      nvlink               = true
    }
    A100 = {
      memory_gb            = 80 # the 80 GB SXM part; Ray does not add `A100-80G` itself
      ray_accelerator_type = "A100"
      nvlink               = true
    }
    L40S = {
      memory_gb            = 48
      ray_accelerator_type = "L40S"
      nvlink               = false # PCIe only: prefer pipeline over tensor parallelism
    }
    MI300X = {
      memory_gb            = 192
      ray_accelerator_type = "AMD-Instinct-MI300X-OAM"
      nvlink               = false # xGMI full mesh (AMD), not NVLink
    }
  }

  # 8-GPU machine types. cloud: gke | eks | aks. fabric: the scale-out path a multi-node
  # replica's NCCL traffic takes (gib = GCP RDMA, tcpxo/tcpx = GCP GPUDirect-TCPX(O),
  # efa = AWS EFA, infiniband = Azure, none = no GPUDirect fabric: TCP sockets only).
  # memory_gib and vcpus: the whole machine; worker pods request a share (outputs.tf).
  machines = {
    # --- GKE ---
    "a3-ultragpu-8g" = { cloud = "gke", gpu = "H200", gpus = 8, vcpus = 224, memory_gib = 2952, fabric = "gib", fabric_nics = 8, local_ssd_count = 32, gke_accelerator = "nvidia-h200-141gb" }
    "a4-highgpu-8g"  = { cloud = "gke", gpu = "B200", gpus = 8, vcpus = 224, memory_gib = 3968, fabric = "gib", fabric_nics = 8, local_ssd_count = 32, gke_accelerator = "nvidia-b200" }
    "a3-megagpu-8g"  = { cloud = "gke", gpu = "H100", gpus = 8, vcpus = 208, memory_gib = 1872, fabric = "tcpxo", fabric_nics = 8, local_ssd_count = 16, gke_accelerator = "nvidia-h100-mega-80gb" }
    "a3-highgpu-8g"  = { cloud = "gke", gpu = "H100", gpus = 8, vcpus = 208, memory_gib = 1872, fabric = "tcpx", fabric_nics = 4, local_ssd_count = 16, gke_accelerator = "nvidia-h100-80gb" }
    "a2-ultragpu-8g" = { cloud = "gke", gpu = "A100", gpus = 8, vcpus = 96, memory_gib = 1360, fabric = "none", fabric_nics = 0, local_ssd_count = 8, gke_accelerator = "nvidia-a100-80gb" }
    # --- EKS (fabric_nics = EFA network cards) ---
    "p5.48xlarge"      = { cloud = "eks", gpu = "H100", gpus = 8, vcpus = 192, memory_gib = 2048, fabric = "efa", fabric_nics = 32, local_ssd_count = 8, gke_accelerator = null }
    "p5e.48xlarge"     = { cloud = "eks", gpu = "H200", gpus = 8, vcpus = 192, memory_gib = 2048, fabric = "efa", fabric_nics = 32, local_ssd_count = 8, gke_accelerator = null }
    "p5en.48xlarge"    = { cloud = "eks", gpu = "H200", gpus = 8, vcpus = 192, memory_gib = 2048, fabric = "efa", fabric_nics = 16, local_ssd_count = 8, gke_accelerator = null }
    "p6-b200.48xlarge" = { cloud = "eks", gpu = "B200", gpus = 8, vcpus = 192, memory_gib = 2048, fabric = "efa", fabric_nics = 8, local_ssd_count = 8, gke_accelerator = null } # EFA card count [unverified]
    "p4de.24xlarge"    = { cloud = "eks", gpu = "A100", gpus = 8, vcpus = 96, memory_gib = 1152, fabric = "efa", fabric_nics = 4, local_ssd_count = 8, gke_accelerator = null }
    "g6e.48xlarge"     = { cloud = "eks", gpu = "L40S", gpus = 8, vcpus = 192, memory_gib = 1536, fabric = "efa", fabric_nics = 4, local_ssd_count = 4, gke_accelerator = null } # EFA card count [unverified]
    # --- AKS (catalogue only: no AKS module yet) ---
    "Standard_ND96isr_H100_v5"   = { cloud = "aks", gpu = "H100", gpus = 8, vcpus = 96, memory_gib = 1900, fabric = "infiniband", fabric_nics = 8, local_ssd_count = 8, gke_accelerator = null }
    "Standard_ND96isr_H200_v5"   = { cloud = "aks", gpu = "H200", gpus = 8, vcpus = 96, memory_gib = 1850, fabric = "infiniband", fabric_nics = 8, local_ssd_count = 8, gke_accelerator = null }
    "Standard_ND96isr_MI300X_v5" = { cloud = "aks", gpu = "MI300X", gpus = 8, vcpus = 96, memory_gib = 1850, fabric = "infiniband", fabric_nics = 8, local_ssd_count = 8, gke_accelerator = null }
    "Standard_ND96amsr_A100_v4"  = { cloud = "aks", gpu = "A100", gpus = 8, vcpus = 96, memory_gib = 1900, fabric = "infiniband", fabric_nics = 8, local_ssd_count = 8, gke_accelerator = null }
  }

  # The machine type chosen when var.machine_type is null: the first listed per (cloud, GPU).
  default_machine_type = {
    gke = { H100 = "a3-megagpu-8g", H200 = "a3-ultragpu-8g", B200 = "a4-highgpu-8g", A100 = "a2-ultragpu-8g" }
    eks = { H100 = "p5.48xlarge", H200 = "p5e.48xlarge", B200 = "p6-b200.48xlarge", A100 = "p4de.24xlarge", L40S = "g6e.48xlarge" }
    aks = { H100 = "Standard_ND96isr_H100_v5", H200 = "Standard_ND96isr_H200_v5", MI300X = "Standard_ND96isr_MI300X_v5", A100 = "Standard_ND96amsr_A100_v4" }
  }
}
