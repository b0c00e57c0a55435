"""The ingress's engine: forwards each plan to its model's deployment and turns what can go wrong
across the Ray boundary into Easel errors, so clients get OpenAI's envelope as on one machine."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Mapping

import torch
from ray.exceptions import ActorUnavailableError, RayActorError, RayTaskError
from ray.serve.exceptions import (
    BackPressureError,
    DeploymentUnavailableError,
    ReplicaUnavailableError,
)
from ray.serve.handle import DeploymentHandle

from easel.background import cancel_and_wait
from easel.catalog import GenerationPlan
from easel.cluster.model import ModelReplica, ReplicaState
from easel.engine.types import EngineMemory, Generation, ModelState, PreviewRequest
from easel.errors import EaselError, RateLimitError, ServiceUnavailableError

log = logging.getLogger(__name__)

# A request whose replica died is sent once more (Ray routes it to a live replica), then gets 503.
ATTEMPTS = 2
STATE_POLL_SECONDS = 2.0
STATE_TIMEOUT = 5.0


class DeploymentEngine:
    """An `ImageEngine` whose work happens in the model deployments."""

    # The ingress holds no pipeline: accelerator metrics come from the replicas' own processes.
    device = torch.device("cpu")

    def __init__(
        self, handles: Mapping[str, DeploymentHandle[ModelReplica]], undeployed: Mapping[str, str]
    ) -> None:
        """`handles`: the deployed models; `undeployed`: models without replicas, with why."""
        self._handles = dict(handles)
        self._undeployed = dict(undeployed)
        self._states = {name: ReplicaState(ModelState.LOADING, None) for name in self._handles}
        self._states.update(
            {name: ReplicaState(ModelState.FAILED, None) for name in self._undeployed}
        )
        self._poller: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Ray starts the replicas, which load their pipelines; the ingress follows their state."""
        self._poller = asyncio.get_running_loop().create_task(self._poll_states())

    async def shutdown(self) -> None:
        """The replicas belong to Ray; only the state poller stops."""
        await cancel_and_wait(self._poller)

    def states(self) -> dict[str, ModelState]:
        return {name: replica.state for name, replica in self._states.items()}

    def load_seconds(self) -> dict[str, float | None]:
        return {name: replica.load_seconds for name, replica in self._states.items()}

    def memory(self) -> EngineMemory | None:
        """Each replica has its own budget, in its own process: the ingress holds no models."""
        return None

    async def _poll_states(self) -> None:
        # Sync callers (/readyz, /v1/models, metrics) read a cache: a Ray call per read would block.
        while True:
            for name, handle in self._handles.items():
                try:
                    self._states[name] = await asyncio.wait_for(
                        handle.state.remote(), STATE_TIMEOUT
                    )
                except Exception as exc:  # an unreachable deployment is not ready
                    log.debug("state of %s unknown: %s", name, exc)
                    self._states[name] = ReplicaState(ModelState.FAILED, None)
            await asyncio.sleep(STATE_POLL_SECONDS)

    async def generate(
        self,
        plan: GenerationPlan,
        *,
        seed: int | None = None,
        deadline_seconds: float | None = None,
        previews: PreviewRequest | None = None,
    ) -> Generation:
        """See `ImageEngine.generate`; the result names the replica that made it. Partial
        images do not cross the Ray boundary yet: `previews` gets none, and a streamed request
        receives only its completed events."""
        if plan.model in self._undeployed:
            raise ServiceUnavailableError(
                f"The model `{plan.model}` is not available: {self._undeployed[plan.model]}",
                code="model_unavailable",
                # Only a new deployment changes this: an SDK retrying would only wait.
                headers={"x-should-retry": "false"},
            )
        handle = self._handles[plan.model]
        lost: Exception | None = None
        for attempt in range(1, ATTEMPTS + 1):
            try:
                generation: Generation = await handle.generate.remote(
                    plan, seed=seed, deadline_seconds=deadline_seconds
                )
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
            return generation
        raise ServiceUnavailableError(
            f"The replica generating with `{plan.model}` stopped before it finished; the cluster "
            "is restarting it. Please retry the request.",
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
