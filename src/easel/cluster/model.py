"""A model deployment: each replica holds one pipeline, for the catalog names that share it, in
Easel's own engine."""

from __future__ import annotations

import asyncio
import dataclasses
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass

import numpy as np
import ray
from ray import serve

from easel.background import cancel_and_wait
from easel.catalog import Catalog, GenerationPlan
from easel.cluster.groups import ModelGroup
from easel.cluster.logs import send_easel_logs_to_serve
from easel.cluster.resources import DeploymentDemand
from easel.engine.engine import Engine
from easel.engine.types import Generation, ModelState, PreviewRequest
from easel.settings import load_settings


@dataclass(frozen=True)
class ReplicaState:
    state: ModelState
    load_seconds: float | None


@dataclass(frozen=True)
class PartialImage:
    """One partial image on its way from a replica to the ingress: what `PreviewRequest.deliver`
    takes, at the latents' resolution. Ray sends the uint8 array as one raw buffer (48 KB for a
    1024x1024 image's 128x128 latents): encoding it would cost more than its bytes do."""

    index: int
    pixels: np.ndarray


class ModelReplica:
    """Runs the same `Engine` as `easel serve`, for the names of one `ModelGroup`, so its
    scheduling (batching across those names, bounded queue, cancellation) is the single-process
    one; Ray places, scales and restarts replicas."""

    def __init__(self, group: ModelGroup) -> None:
        send_easel_logs_to_serve()
        self._models = group.names
        # The replica's EASEL_* environment sizes its queue and batches, as for `easel serve`.
        self._engine = Engine(Catalog(group.specs), config=load_settings().scheduler_config())
        self._engine.start()
        context = serve.get_replica_context()
        # Which replica made a generation: deployment#id, process and node.
        self.identity = (
            f"{context.deployment}#{context.replica_id.unique_id} "
            f"pid={os.getpid()} node={ray.util.get_node_ip_address()}"
        )

    async def generate(
        self,
        plan: GenerationPlan,
        *,
        seed: int | None = None,
        deadline_seconds: float | None = None,
    ) -> Generation:
        """`Engine.generate`, with this replica's identity on the result."""
        return await self._generate(plan, seed, deadline_seconds, None)

    async def generate_with_previews(
        self,
        plan: GenerationPlan,
        partial_images: int,
        *,
        seed: int | None = None,
        deadline_seconds: float | None = None,
    ) -> AsyncIterator[PartialImage | Generation]:
        """`generate` asking for `partial_images` partial images: yields each as it is made, then
        the generation. Closing or cancelling the stream withdraws the request."""
        partials: asyncio.Queue[PartialImage | None] = asyncio.Queue()
        loop = asyncio.get_running_loop()

        def deliver(index: int, pixels: np.ndarray) -> None:  # on the pipeline's thread
            loop.call_soon_threadsafe(partials.put_nowait, PartialImage(index, pixels))

        previews = PreviewRequest(partial_images, deliver)
        generating = asyncio.create_task(self._generate(plan, seed, deadline_seconds, previews))
        # Queued after every partial image the pipeline delivered before it finished.
        generating.add_done_callback(lambda _: partials.put_nowait(None))
        try:
            while (partial := await partials.get()) is not None:
                yield partial
            yield await generating
        finally:
            await cancel_and_wait(generating)

    async def _generate(
        self,
        plan: GenerationPlan,
        seed: int | None,
        deadline_seconds: float | None,
        previews: PreviewRequest | None,
    ) -> Generation:
        generation = await self._engine.generate(
            plan, seed=seed, deadline_seconds=deadline_seconds, previews=previews
        )
        return dataclasses.replace(generation, replica=self.identity)

    def states(self) -> dict[str, ReplicaState]:
        """Per catalog name this replica serves (the engine also reports the worker of an edits
        source, under its own name, which no client asks for)."""
        states = self._engine.states()
        load_seconds = self._engine.load_seconds()
        return {name: ReplicaState(states[name], load_seconds[name]) for name in self._models}

    async def __del__(self) -> None:
        # Ray Serve awaits an async __del__ when it stops the replica.
        await self._engine.shutdown()


def model_demand(group: ModelGroup, cluster_has_gpus: bool) -> DeploymentDemand:
    """What the group's `deployment` block asks of the cluster at start."""
    plan = group.deployment
    gpus = plan.gpus_per_replica
    if gpus is None:
        gpus = 1.0 if cluster_has_gpus else 0.0
    return DeploymentDemand(
        name=group.name,
        # Autoscaling starts with at least one replica, so the first request need not wait.
        replicas=max(plan.min_replicas, 1),
        per_replica={"CPU": plan.cpus_per_replica, "GPU": gpus},
    )


def model_deployment(group: ModelGroup, demand: DeploymentDemand) -> serve.Deployment:
    """`ModelReplica` sized as `demand`, scaled as the group's `deployment` block says."""
    plan = group.deployment
    return serve.deployment(
        name=demand.name,
        ray_actor_options=demand.actor_options(),
        autoscaling_config={
            "min_replicas": plan.min_replicas,
            "initial_replicas": demand.replicas,
            "max_replicas": plan.max_replicas,
            "target_ongoing_requests": plan.target_ongoing_requests,
        },
        max_ongoing_requests=plan.max_ongoing_requests,
        max_queued_requests=plan.max_queued_requests,
    )(ModelReplica)
