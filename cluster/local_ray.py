"""A Ray cluster on this machine only, bound to the loopback address.

Ray binds to the machine's network address by default; every server here must
listen on 127.0.0.1 and every test must send traffic only to this machine.
"""

from __future__ import annotations

import os
import socket

from cluster.ray_env import SERVING_ENV

# Set before Ray starts, so the raylet and every worker (vLLM engines included) inherit them.
LOOPBACK_ENV = {
    # Without this Ray rewrites 127.0.0.1 to the machine's address.
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_NODE_IP_ADDRESS": "127.0.0.1",
    "VLLM_HOST_IP": "127.0.0.1",
    "RAY_USAGE_STATS_ENABLED": "0",
    "VLLM_NO_USAGE_STATS": "1",
    "DO_NOT_TRACK": "1",
    "HF_HUB_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    **SERVING_ENV,
}

# An engine replica plus the ingress need more logical CPUs than 2 physical cores;
# logical CPUs only gate scheduling, the OS shares the real ones.
DEFAULT_LOGICAL_CPUS = 8


def apply_loopback_env() -> None:
    for key, value in LOOPBACK_ENV.items():
        os.environ.setdefault(key, value)


def free_loopback_port() -> int:
    """A TCP port free on 127.0.0.1 now (the OS picks it)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# Ports Serve takes once per machine, whatever the cluster: right for a GPU node, not for
# two local clusters at once (a test run beside `make serve`, a test that runs the serve
# command): the second one's HAProxy or fallback proxy could not bind and Serve never
# became ready. Serve keeps HAProxy's files apart per node id already.
PER_MACHINE_SERVE_PORTS = (
    "RAY_SERVE_HAPROXY_METRICS_PORT",  # 9101
    "RAY_SERVE_HAPROXY_STATS_PORT",  # 8404
    "RAY_SERVE_FALLBACK_PROXY_HTTP_PORT",  # 8500
    "RAY_SERVE_FALLBACK_PROXY_GRPC_PORT",  # 9500
)


def _own_serve_ports() -> dict[str, str]:
    """A port of its own for each of Serve's per-machine ports, for a new local cluster."""
    return {name: str(free_loopback_port()) for name in PER_MACHINE_SERVE_PORTS}


def init_local_ray(num_cpus: int = DEFAULT_LOGICAL_CPUS, **kwargs) -> None:
    """Start a new loopback-only Ray cluster, or join the one RAY_ADDRESS names.

    "local" rather than Ray's default: without an address Ray joins any cluster
    already running on the machine, which may be somebody else's.
    """
    import ray

    apply_loopback_env()
    address = os.environ.get("RAY_ADDRESS")
    if not address:
        os.environ.update(_own_serve_ports())
    ray.init(
        address=address or "local",
        num_cpus=None if address else num_cpus,
        _node_ip_address="127.0.0.1",
        include_dashboard=kwargs.pop("include_dashboard", False),
        configure_logging=True,
        logging_level="WARNING",
        **kwargs,
    )
