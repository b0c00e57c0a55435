"""The background-matting deployment: `background: transparent` cut out where the accelerators
are, not in the ingress (whose device is the CPU)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from ray import serve
from ray.serve import Application

from easel.cluster.args import DEFAULT_MATTING_GPU_SHARE, ClusterArgs
from easel.cluster.logs import send_easel_logs_to_serve
from easel.cluster.resources import DeploymentDemand
from easel.engine.device import best_device
from easel.engine.matting import MattingModel

MATTING_NAME = "matting"
# The replica mostly waits on its device (or ONNX Runtime's own threads on a CPU cluster).
CPUS_PER_REPLICA = 0.25


class MattingReplica:
    """One `MattingModel` on its replica's best device: the GPU Ray gave it, if any."""

    def __init__(self, source: str) -> None:
        send_easel_logs_to_serve()
        self._model = MattingModel(source, best_device())

    async def ready(self) -> None:
        await self._model.ready()

    async def cut_out(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        return await self._model.cut_out(images)


def matting_source(cluster: ClusterArgs) -> str | None:
    """The matting model the server settings name, None when transparent backgrounds are off."""
    return cluster.server.settings().matting_model or None


def matting_demand(cluster: ClusterArgs, cluster_has_gpus: bool) -> DeploymentDemand | None:
    """What the matting deployment asks of the cluster; None when matting is off."""
    if matting_source(cluster) is None:
        return None
    gpus = cluster.matting.gpus_per_replica
    if gpus is None:
        gpus = DEFAULT_MATTING_GPU_SHARE if cluster_has_gpus else 0.0
    return DeploymentDemand(
        name=MATTING_NAME,
        replicas=cluster.matting.replicas,
        per_replica={"CPU": CPUS_PER_REPLICA, "GPU": gpus},
    )


def matting_application(cluster: ClusterArgs, cluster_has_gpus: bool) -> Application | None:
    """The matting deployment, sized as `matting_demand`; None when matting is off."""
    source = matting_source(cluster)
    demand = matting_demand(cluster, cluster_has_gpus)
    if source is None or demand is None:
        return None
    deployment = serve.deployment(
        name=demand.name, num_replicas=demand.replicas, ray_actor_options=demand.actor_options()
    )(MattingReplica)
    return deployment.bind(source)
