"""The engine: one worker per catalog model, which loads its pipeline once and batches requests."""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from enum import Enum

import torch
from diffusers import DiffusionPipeline

from easel.catalog import Catalog, GenerationPlan, ModelSpec
from easel.engine.device import best_device, dtype_for
from easel.engine.generate import GeneratedImage, draw_seed
from easel.engine.loader import ModelLoadError, load_pipeline
from easel.engine.scheduler import BatchScheduler, SchedulerConfig
from easel.engine.timing import GenerationTiming
from easel.engine.tuning import tune_for_serving
from easel.errors import ServiceUnavailableError

log = logging.getLogger(__name__)

# After a failed load, a new request tries again only after this many seconds, so a model with
# missing weights answers 503 at once instead of re-attempting a slow download on every request.
RELOAD_BACKOFF_SECONDS = 30.0


class ModelState(str, Enum):
    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"


class ModelWorker:
    """Holds one model's pipeline and its queue; a single thread loads the pipeline and then runs
    its batches in turn, so requests that arrive during loading simply wait behind the load."""

    def __init__(
        self,
        spec: ModelSpec,
        device: torch.device,
        dtype: torch.dtype,
        config: SchedulerConfig,
    ) -> None:
        self.spec = spec
        self.device = device
        self.dtype = dtype
        self.config = config
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"easel-{spec.name}")
        self.scheduler = BatchScheduler(spec.name, config, self._executor, self._loaded_pipeline)
        self._pipe: DiffusionPipeline | None = None
        self._error: str | None = None
        self._failed_at = 0.0
        self.state = ModelState.LOADING
        self.load_seconds: float | None = None

    def start_loading(self) -> None:
        self._executor.submit(self._ensure_loaded)

    async def generate(
        self,
        plan: GenerationPlan,
        seed: int | None = None,
        deadline_seconds: float | None = None,
        timing: GenerationTiming | None = None,
    ) -> list[GeneratedImage]:
        if (
            self.state is ModelState.FAILED
            and time.monotonic() - self._failed_at < RELOAD_BACKOFF_SECONDS
        ):
            raise self._unavailable()
        chosen_seed = draw_seed() if seed is None else seed
        deadline = self.config.deadline_seconds if deadline_seconds is None else deadline_seconds
        return await self.scheduler.generate(plan, chosen_seed, deadline, timing)

    def pipeline(self) -> DiffusionPipeline:
        """The pipeline, loaded on the worker thread if need be, or 503 `model_unavailable`."""
        return self._executor.submit(self._loaded_pipeline).result()

    async def shutdown(self) -> None:
        await self.scheduler.shutdown()
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _loaded_pipeline(self) -> DiffusionPipeline:
        """On the worker thread: the pipeline, loaded now if need be, or 503 `model_unavailable`."""
        pipe = self._ensure_loaded()
        if pipe is None:
            raise self._unavailable()
        return pipe

    def _ensure_loaded(self) -> DiffusionPipeline | None:
        """Runs on the worker thread only, so loads never overlap."""
        if self._pipe is not None:
            return self._pipe
        if (
            self.state is ModelState.FAILED
            and time.monotonic() - self._failed_at < RELOAD_BACKOFF_SECONDS
        ):
            return None
        self.state = ModelState.LOADING
        started = time.monotonic()
        try:
            pipe = load_pipeline(self.spec.source, self.device, self.dtype)
            tune_for_serving(pipe)
            self._pipe = pipe
        except ModelLoadError as exc:
            self._fail(str(exc))
            return None
        except Exception as exc:  # a broken pipeline must not take the server down
            log.exception("model %s failed to load", self.spec.name)
            self._fail(f"{type(exc).__name__}: {exc}")
            return None
        self.load_seconds = time.monotonic() - started
        self._error = None
        self.state = ModelState.READY
        return self._pipe

    def _fail(self, message: str) -> None:
        log.error(
            "model %s could not be loaded from %s: %s", self.spec.name, self.spec.source, message
        )
        self._error = message
        self._failed_at = time.monotonic()
        self.state = ModelState.FAILED

    def _unavailable(self) -> ServiceUnavailableError:
        return ServiceUnavailableError(
            # Where it was loaded from and why it failed are the operator's: _fail logged them.
            f"The model `{self.spec.name}` cannot be loaded right now; the server's log says why.",
            code="model_unavailable",
            # The load is retried only after the backoff: an SDK retrying at once would only hang.
            headers={"Retry-After": str(int(RELOAD_BACKOFF_SECONDS)), "x-should-retry": "false"},
        )


class Engine:
    """All model workers of a catalog, on one device, each with its own queue and batcher."""

    def __init__(
        self,
        catalog: Catalog,
        config: SchedulerConfig,
        device: torch.device | None = None,
    ) -> None:
        self.device = device or best_device()
        dtype = dtype_for(self.device)
        self.workers = {
            spec.name: ModelWorker(spec, self.device, dtype, config) for spec in catalog
        }

    def start(self) -> None:
        for worker in self.workers.values():
            worker.start_loading()

    async def generate(
        self,
        plan: GenerationPlan,
        seed: int | None = None,
        timing: GenerationTiming | None = None,
        *,
        deadline_seconds: float | None = None,
    ) -> list[GeneratedImage]:
        """The plan's images; image i is seeded with `seed + i` (a random seed when None).

        Raises 429 `queue_full` when the model's queue is full, 504 `deadline_exceeded` after
        `deadline_seconds` (default: the configured deadline). Cancelling the awaiting task
        withdraws the request. `timing`, when given, is filled with the seconds the request
        waited (a model load included) and spent in pipeline calls.
        """
        worker = self.workers[plan.model]
        return await worker.generate(plan, seed, deadline_seconds, timing)

    def states(self) -> dict[str, ModelState]:
        return {name: worker.state for name, worker in self.workers.items()}

    def pipeline(self, model: str) -> DiffusionPipeline:
        """`model`'s loaded pipeline (waiting for its load), or 503 `model_unavailable`."""
        return self.workers[model].pipeline()

    def load_seconds(self) -> dict[str, float | None]:
        """How long each model's last successful load took (None while it has none)."""
        return {name: worker.load_seconds for name, worker in self.workers.items()}

    def stats(self) -> dict[str, dict[str, object]]:
        """Per model: what its scheduler did, and the batch size limits it measured."""
        return {
            name: {
                **worker.scheduler.stats.snapshot(),
                "batch_limits": worker.scheduler.sizer.snapshot(),
            }
            for name, worker in self.workers.items()
        }

    async def shutdown(self) -> None:
        """Cancel every queued request and stop the batchers; a running batch finishes on its own
        thread, its results unused."""
        for worker in self.workers.values():
            await worker.shutdown()
