"""The ingress's matting model: calls to the matting deployment, with Ray's failures as the same
Easel errors a model deployment's are."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from ray.serve.handle import DeploymentHandle

from easel.cluster.engine_proxy import across_ray
from easel.cluster.matting import MattingReplica
from easel.engine.matting import MattingModel


class DeploymentMatting:
    """A `Matting` whose model runs in the matting deployment's replicas."""

    def __init__(self, handle: DeploymentHandle[MattingReplica]) -> None:
        self._handle = handle

    async def ready(self) -> None:
        async def attempt() -> None:
            await self._handle.ready.remote()

        await across_ray(MattingModel.name, attempt)

    async def cut_out(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        # A list of uint8 arrays: Ray sends each as its raw buffer.
        frames = [np.ascontiguousarray(image, dtype=np.uint8) for image in images]

        async def attempt() -> list[np.ndarray]:
            cut: list[np.ndarray] = await self._handle.cut_out.remote(frames)
            return cut

        return await across_ray(MattingModel.name, attempt)
