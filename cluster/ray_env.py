"""Environment every Ray node of a giantserve cluster starts with (local or on GPU nodes).

Set before `ray start` (or `ray.init` for a local cluster): Ray reads them when its
processes start, and the vLLM engine processes that replicas spawn inherit them.
"""

SERVING_ENV = {
    # Ray starts workers at nice 15, and the vLLM engine processes a replica spawns
    # inherit it: the serving path would lose the CPU to anything else on the node.
    "RAY_worker_niceness": "0",
}
