"""The ingress deployment: the whole OpenAI API, from the same FastAPI app as `easel serve`."""

from __future__ import annotations

from fastapi import FastAPI
from ray import serve
from ray.serve.handle import DeploymentHandle

from easel.api.app import create_app
from easel.cluster.args import ClusterArgs
from easel.cluster.engine_proxy import DeploymentEngine
from easel.cluster.logs import send_easel_logs_to_serve
from easel.cluster.matting import MattingReplica
from easel.cluster.matting_proxy import DeploymentMatting
from easel.cluster.model import ModelReplica


@serve.ingress()
class EaselIngress:
    """Auth, validation, limits and storage run here; generation goes to the model deployments
    and background matting to the matting deployment."""

    def __init__(
        self,
        args: ClusterArgs,
        models: dict[str, DeploymentHandle[ModelReplica]],
        matting: DeploymentHandle[MattingReplica] | None,
    ) -> None:
        """`matting`: None when transparent backgrounds are off."""
        send_easel_logs_to_serve()
        self._args = args
        self._models = models
        self._matting = matting

    def __serve_build_asgi_app__(self) -> FastAPI:
        # Built on the replica, so database connections and the sweeper belong to this process.
        return create_app(
            self._args.server.settings(),
            self._args.catalog(),
            engine=DeploymentEngine(self._models, self._args.undeployed),
            matting=DeploymentMatting(self._matting) if self._matting is not None else None,
            # Ray Serve's proxy gives every request an x-request-id and sends it back.
            proxy_sets_request_id=True,
        )
