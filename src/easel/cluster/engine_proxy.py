"""The ingress's engine: forwards each plan to its model's deployment and turns what can go wrong
across the Ray boundary into Easel errors, so clients get OpenAI's envelope as on one machine."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping

from ray.exceptions import ActorUnavailableError, RayActorError, RayTaskError
from ray.serve.exceptions import (
    BackPressureError,
    DeploymentUnavailableError,
    ReplicaUnavailableError,
)
from ray.serve.handle import DeploymentHandle

from easel.api.context import add_response_header
from easel.catalog import GenerationPlan
from easel.cluster.model import ReplicaOutput
from easel.engine.generate import GeneratedImage
from easel.errors import EaselError, RateLimitError, ServiceUnavailableError

log = logging.getLogger(__name__)

# A request whose replica died is sent once more (Ray routes it to a live replica), then answered 503.
ATTEMPTS = 2
REPLICA_HEADER = "x-easel-replica"


class DeploymentEngine:
    """Same calls as `easel.engine.worker.Engine`; the work happens in the model deployments."""

    def __init__(self, handles: Mapping[str, DeploymentHandle]) -> None:
        self._handles = dict(handles)

    def start(self) -> None:
        """Nothing to start: Ray starts the replicas, which load their pipelines."""

    def shutdown(self) -> None:
        """Nothing to stop: the replicas belong to Ray."""

    async def generate(self, plan: GenerationPlan, seed: int | None = None) -> list[GeneratedImage]:
        handle = self._handles[plan.model]
        lost: Exception | None = None
        for attempt in range(1, ATTEMPTS + 1):
            try:
                output: ReplicaOutput = await handle.generate.remote(plan, seed)
            except BackPressureError as exc:
                raise _busy(plan.model, exc) from None
            except RayTaskError as exc:
                if isinstance(exc.cause, EaselError):
                    raise exc.cause from None
                raise
            except DeploymentUnavailableError as exc:
                raise ServiceUnavailableError(
                    f"The model `{plan.model}` has no running replicas: its deployment failed. "
                    "See the Ray Serve logs.",
                    code="model_unavailable",
                    headers={"Retry-After": "30"},
                ) from exc
            except (RayActorError, ActorUnavailableError, ReplicaUnavailableError) as exc:
                log.warning("a replica of %s was lost (attempt %d): %s", plan.model, attempt, exc)
                lost = exc
                continue
            add_response_header(REPLICA_HEADER, output.replica)
            return output.images
        raise ServiceUnavailableError(
            f"The replica generating with `{plan.model}` stopped before it finished; the cluster is "
            "restarting it. Please retry the request.",
            code="replica_unavailable",
            headers={"Retry-After": "1"},
        ) from lost


def _busy(model: str, exc: BackPressureError) -> RateLimitError:
    retry_after = max(1, math.ceil(getattr(exc, "retry_after_s", None) or 1))
    return RateLimitError(
        f"Every replica of `{model}` is busy and its queue is full. Please retry after "
        f"{retry_after} seconds.",
        code="server_busy",
        headers={"Retry-After": str(retry_after)},
    )
