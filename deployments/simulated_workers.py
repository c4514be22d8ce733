"""Placeholder workers: what vLLM's Ray executor holds in a replica's bundles, for the test double.

vLLM's Ray executor starts one worker actor per GPU bundle of the replica's placement group,
holding that bundle's GPUs. When a node holding some of them dies, those workers die with it,
the engine's streams fail and its health check raises, so Serve replaces the replica. The
simulated engine (`deployments.simulated_engine`) has no workers of its own, so without these
placeholders a lost node would go unnoticed. Each placeholder does nothing but exist; the
replica learns of its death through a call that never returns while the actor lives.
"""

from __future__ import annotations

import asyncio

import ray
from ray.util.placement_group import PlacementGroup, get_current_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy


class WorkerLostError(RuntimeError):
    """A placeholder worker of this replica died (its node was lost)."""


@ray.remote(num_cpus=0)
class PlaceholderWorker:
    def ready(self) -> None:
        return None

    async def hold(self) -> None:
        # Never returns: the caller's reference fails exactly when this actor dies.
        await asyncio.Event().wait()


class PlaceholderWorkers:
    """One placeholder per GPU bundle of the calling replica's group, as vLLM places workers."""

    def __init__(self, group: PlacementGroup):
        specs = group.bundle_specs
        workers = [
            PlaceholderWorker.options(
                num_gpus=spec["GPU"],
                scheduling_strategy=PlacementGroupSchedulingStrategy(
                    placement_group=group, placement_group_bundle_index=index
                ),
            ).remote()
            for index, spec in enumerate(specs)
            if spec.get("GPU")
        ]
        # Placed before the replica reports ready, as vLLM waits for its workers.
        ray.get([worker.ready.remote() for worker in workers])
        # Kept: an actor whose last handle is dropped is killed.
        self._workers = workers
        self._holds = [worker.hold.remote() for worker in workers]
        self._lost: asyncio.Future | None = None

    @classmethod
    def for_this_replica(cls) -> PlaceholderWorkers | None:
        """Placeholders when the replica's group has bundles beyond its own, else None."""
        group = get_current_placement_group()
        if group is None or len(group.bundle_specs) < 2:
            return None
        return cls(group)

    async def run_for(self, seconds: float) -> None:
        """Returns after `seconds`; raises WorkerLostError as soon as a worker is dead."""
        if self._lost is None:
            # Made on first use: an asyncio future belongs to the replica's event loop. The
            # holds never return, so the gather ends with the first worker's death.
            self._lost = asyncio.gather(
                *(asyncio.wrap_future(hold.future()) for hold in self._holds)
            )
        done, _ = await asyncio.wait([self._lost], timeout=seconds)
        if done:
            raise WorkerLostError(f"a worker of this replica is gone: {self._lost.exception()!r}")

    async def check(self) -> None:
        await self.run_for(0)
