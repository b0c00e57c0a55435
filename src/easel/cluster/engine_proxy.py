"""The ingress's engine: forwards each plan to the deployment serving its model (streaming back
the partial images a request asks for) and turns what can go wrong across the Ray boundary into
Easel errors, so clients get OpenAI's envelope as on one machine."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Protocol, TypeVar, cast

import torch
from ray.exceptions import ActorUnavailableError, RayActorError, RayTaskError
from ray.serve.exceptions import (
    BackPressureError,
    DeploymentUnavailableError,
    ReplicaUnavailableError,
)
from ray.serve.handle import DeploymentHandle, DeploymentResponseGenerator

from easel.background import cancel_and_wait
from easel.catalog import GenerationPlan
from easel.cluster.model import ModelReplica, PartialImage, ReplicaState
from easel.engine.types import EngineMemory, Generation, ModelState, PreviewRequest
from easel.errors import EaselError, RateLimitError, ServiceUnavailableError

log = logging.getLogger(__name__)

# A request whose replica died is sent once more (Ray routes it to a live replica), then gets 503.
ATTEMPTS = 2
STATE_POLL_SECONDS = 2.0
STATE_TIMEOUT = 5.0

Result = TypeVar("Result")


class DeploymentEngine:
    """An `ImageEngine` whose work happens in the model deployments."""

    # The ingress holds no pipeline: accelerator metrics come from the replicas' own processes.
    device = torch.device("cpu")

    def __init__(
        self, handles: Mapping[str, DeploymentHandle[ModelReplica]], undeployed: Mapping[str, str]
    ) -> None:
        """`handles`: each deployed model's deployment (names that share a pipeline share one);
        `undeployed`: models without replicas, with why."""
        self._handles = dict(handles)
        self._undeployed = dict(undeployed)
        # Each deployment's handle and the names it serves: its replicas report them all at once.
        self._deployments: dict[str, tuple[DeploymentHandle[ModelReplica], list[str]]] = {}
        for name, handle in self._handles.items():
            self._deployments.setdefault(handle.deployment_name, (handle, []))[1].append(name)
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
            for deployment, (handle, names) in self._deployments.items():
                states: dict[str, ReplicaState] = {}
                try:
                    states = await asyncio.wait_for(handle.states.remote(), STATE_TIMEOUT)
                except Exception as exc:  # an unreachable deployment is not ready
                    log.debug("state of %s unknown: %s", deployment, exc)
                for name in names:
                    self._states[name] = states.get(name, ReplicaState(ModelState.FAILED, None))
            await asyncio.sleep(STATE_POLL_SECONDS)

    async def generate(
        self,
        plan: GenerationPlan,
        *,
        seed: int | None = None,
        deadline_seconds: float | None = None,
        previews: PreviewRequest | None = None,
    ) -> Generation:
        """See `ImageEngine.generate`; the result names the replica that made it. With `previews`
        the replica streams its partial images, each delivered as it arrives."""
        handle = self._deployed(plan.model)
        if previews is None:

            async def unary() -> Generation:
                response = handle.generate.remote(
                    plan, seed=seed, deadline_seconds=deadline_seconds
                )
                with _cancelled_with(response):
                    generation: Generation = await response
                return generation

            return await across_ray(plan.model, unary)

        relay = _PreviewRelay(previews)

        async def streamed() -> Generation:
            # A streaming handle calling a generator method returns a generator.
            stream = cast(
                DeploymentResponseGenerator[PartialImage | Generation],
                handle.options(stream=True).generate_with_previews.remote(
                    plan, previews.count, seed=seed, deadline_seconds=deadline_seconds
                ),
            )
            with _cancelled_with(stream):
                return await relay.relay(stream)

        # Sent again, the request would repeat the indices already delivered: only a stream that
        # delivered nothing yet is retried.
        return await across_ray(plan.model, streamed, may_retry=relay.nothing_delivered)

    def _deployed(self, model: str) -> DeploymentHandle[ModelReplica]:
        if model in self._undeployed:
            raise ServiceUnavailableError(
                f"The model `{model}` is not available: {self._undeployed[model]}",
                code="model_unavailable",
                # Only a new deployment changes this: an SDK retrying would only wait.
                headers={"x-should-retry": "false"},
            )
        return self._handles[model]


class _PreviewRelay:
    """Hands the partial images a replica streams on to the request's `PreviewRequest`."""

    def __init__(self, previews: PreviewRequest) -> None:
        self._previews = previews
        self._delivered = False

    def nothing_delivered(self) -> bool:
        return not self._delivered

    async def relay(
        self, stream: DeploymentResponseGenerator[PartialImage | Generation]
    ) -> Generation:
        """Deliver the stream's partial images; return the generation that ends it."""
        async for item in stream:
            if isinstance(item, Generation):
                return item
            # `deliver` only hands the image on (it is meant for the pipeline's thread), so
            # calling it on the event loop blocks nothing.
            self._previews.deliver(item.index, item.pixels)
            self._delivered = True
        raise RuntimeError("the replica's stream ended without its generation")


class _RayCall(Protocol):
    """A deployment handle call, unary or streaming."""

    def cancel(self) -> None: ...


@contextlib.contextmanager
def _cancelled_with(response: _RayCall) -> Iterator[None]:
    """Cancel the Ray call when the task awaiting it is cancelled (a client that left): Ray
    would let it run on. The replica's task is cancelled, which withdraws the request."""
    try:
        yield
    except asyncio.CancelledError:
        response.cancel()
        raise


async def across_ray(
    model: str,
    attempt: Callable[[], Awaitable[Result]],
    may_retry: Callable[[], bool] = lambda: True,
) -> Result:
    """`attempt`'s result (a call to the deployment serving `model`), with what can go wrong
    across the Ray boundary as Easel errors: a lost replica is tried once more (if `may_retry`),
    then 503."""
    lost: Exception | None = None
    for number in range(1, ATTEMPTS + 1):
        try:
            return await attempt()
        except BackPressureError as exc:
            raise _busy(model, exc) from None
        except RayTaskError as exc:
            if isinstance(exc.cause, EaselError):
                raise exc.cause from None
            raise
        except DeploymentUnavailableError as exc:
            raise ServiceUnavailableError(
                f"The model `{model}` has no running replicas: its deployment failed. "
                "See the Ray Serve logs.",
                code="model_unavailable",
                headers={"Retry-After": "30"},
            ) from exc
        except (RayActorError, ActorUnavailableError, ReplicaUnavailableError) as exc:
            log.warning("a replica of %s was lost (attempt %d): %s", model, number, exc)
            lost = exc
            if not may_retry():
                break
    raise ServiceUnavailableError(
        f"The replica generating with `{model}` stopped before it finished; the cluster "
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
