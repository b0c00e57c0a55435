"""One catalog model's worker: loads its pipeline once, then batches its requests."""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor

import torch
from diffusers import DiffusionPipeline

from easel.catalog import GenerationPlan, ModelSpec
from easel.engine.generate import draw_seed
from easel.engine.loader import ModelLoadError, load_pipeline
from easel.engine.scheduler import BatchScheduler
from easel.engine.tuning import tune_for_serving
from easel.engine.types import Generation, ModelState, SchedulerConfig
from easel.errors import ServiceUnavailableError

log = logging.getLogger(__name__)

# After a failed load, a new request tries again only after this many seconds, so a model with
# missing weights answers 503 at once instead of re-attempting a slow download on every request.
RELOAD_BACKOFF_SECONDS = 30.0


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
        # Why the last load failed: for the operator (log, `easel generate`), never for clients.
        self.load_error: str | None = None
        self._failed_at = 0.0
        self.state = ModelState.LOADING
        self.load_seconds: float | None = None

    def start_loading(self) -> None:
        self._executor.submit(self._ensure_loaded)

    async def generate(
        self,
        plan: GenerationPlan,
        *,
        seed: int | None = None,
        deadline_seconds: float | None = None,
    ) -> Generation:
        """As `ImageEngine.generate`, for this worker's model."""
        if (
            self.state is ModelState.FAILED
            and time.monotonic() - self._failed_at < RELOAD_BACKOFF_SECONDS
        ):
            raise self._unavailable()
        return await self.scheduler.generate(
            plan,
            seed=draw_seed(plan.n) if seed is None else seed,
            deadline_seconds=self.config.deadline_seconds
            if deadline_seconds is None
            else deadline_seconds,
        )

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
        self.load_error = None
        self.state = ModelState.READY
        return self._pipe

    def _fail(self, message: str) -> None:
        log.error(
            "model %s could not be loaded from %s: %s", self.spec.name, self.spec.source, message
        )
        self.load_error = message
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
