"""One pipeline's worker: loads it once, then batches the requests of every catalog name on it."""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor

import torch
from diffusers import DiffusionPipeline

from easel.catalog import GenerationPlan
from easel.engine.generate import draw_seed
from easel.engine.loader import ModelLoadError, PipelineKey, load_pipeline
from easel.engine.scheduler import BatchScheduler
from easel.engine.tuning import tune_for_serving
from easel.engine.types import Generation, ModelState, SchedulerConfig
from easel.errors import ServiceUnavailableError

log = logging.getLogger(__name__)

# After a failed load, a new request tries again only after this many seconds, so a model with
# missing weights answers 503 at once instead of re-attempting a slow download on every request.
RELOAD_BACKOFF_SECONDS = 30.0


class PipelineWorker:
    """Holds one pipeline and its queue, for every catalog name that points at it; a single thread
    loads the pipeline and then runs its batches in turn, so requests that arrive during loading
    simply wait behind the load. Its state is the state of each of its names."""

    def __init__(
        self,
        key: PipelineKey,
        names: tuple[str, ...],
        device: torch.device,
        dtype: torch.dtype,
        config: SchedulerConfig,
    ) -> None:
        self.key = key
        self.names = names
        self.device = device
        self.dtype = dtype
        self.config = config
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"easel-{names[0]}")
        self.scheduler = BatchScheduler(
            names, config, self._executor, self._ensure_loaded, self._unavailable
        )
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
        """As `ImageEngine.generate`, for one of this worker's names."""
        if self._backing_off():
            raise self._unavailable(plan.model)
        return await self.scheduler.generate(
            plan,
            seed=draw_seed(plan.n) if seed is None else seed,
            deadline_seconds=self.config.deadline_seconds
            if deadline_seconds is None
            else deadline_seconds,
        )

    def pipeline(self, model: str) -> DiffusionPipeline:
        """The pipeline, loaded on the worker thread if need be, or 503 `model_unavailable` naming
        `model`, the name it was asked for by."""
        pipe = self._executor.submit(self._ensure_loaded).result()
        if pipe is None:
            raise self._unavailable(model)
        return pipe

    async def shutdown(self) -> None:
        await self.scheduler.shutdown()
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _ensure_loaded(self) -> DiffusionPipeline | None:
        """The pipeline, loaded now if need be; None while it cannot be loaded. Runs on the worker
        thread only, so loads never overlap."""
        if self._pipe is not None:
            return self._pipe
        if self._backing_off():
            return None
        self.state = ModelState.LOADING
        started = time.monotonic()
        try:
            pipe = load_pipeline(self.key.source, self.device, self.dtype, self.key.decoder)
            tune_for_serving(pipe)
            self._pipe = pipe
        except ModelLoadError as exc:
            self._fail(str(exc))
            return None
        except Exception as exc:  # a broken pipeline must not take the server down
            log.exception("models %s failed to load", ", ".join(self.names))
            self._fail(f"{type(exc).__name__}: {exc}")
            return None
        self.load_seconds = time.monotonic() - started
        self.load_error = None
        self.state = ModelState.READY
        return self._pipe

    def _backing_off(self) -> bool:
        """The last load failed too recently to try again."""
        return (
            self.state is ModelState.FAILED
            and time.monotonic() - self._failed_at < RELOAD_BACKOFF_SECONDS
        )

    def _fail(self, message: str) -> None:
        log.error(
            "models %s could not be loaded from %s: %s",
            ", ".join(self.names),
            self.key.source,
            message,
        )
        self.load_error = message
        self._failed_at = time.monotonic()
        self.state = ModelState.FAILED

    def _unavailable(self, model: str) -> ServiceUnavailableError:
        """The 503 for a request of `model`, one of this pipeline's names."""
        return ServiceUnavailableError(
            # Where it was loaded from and why it failed are the operator's: _fail logged them.
            f"The model `{model}` cannot be loaded right now; the server's log says why.",
            code="model_unavailable",
            # The load is retried only after the backoff: an SDK retrying at once would only hang.
            headers={"Retry-After": str(int(RELOAD_BACKOFF_SECONDS)), "x-should-retry": "false"},
        )
