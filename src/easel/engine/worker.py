"""The engine: one worker per catalog model, which loads its pipeline once and runs generations."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from enum import Enum

import torch
from diffusers import DiffusionPipeline

from easel.catalog import Catalog, GenerationPlan, ModelSpec
from easel.engine.device import best_device, dtype_for
from easel.engine.generate import GeneratedImage, draw_seed, run_plan
from easel.engine.loader import ModelLoadError, load_pipeline
from easel.engine.timing import GenerationTiming
from easel.errors import ServiceUnavailableError
from easel.observability.metrics import observe_batch_size, set_queue_depth

log = logging.getLogger(__name__)

# After a failed load, a new request tries again only after this many seconds, so a model with
# missing weights answers 503 at once instead of re-attempting a slow download on every request.
RELOAD_BACKOFF_SECONDS = 30.0

class ModelState(str, Enum):
    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"


class ModelWorker:
    """Holds one model's pipeline; a single thread loads it and then runs its generations in order,
    so a request that arrives during loading simply waits behind the load."""

    def __init__(
        self,
        spec: ModelSpec,
        device: torch.device,
        dtype: torch.dtype,
    ) -> None:
        self.spec = spec
        self.device = device
        self.dtype = dtype
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"easel-{spec.name}")
        self._pipe: DiffusionPipeline | None = None
        self._error: str | None = None
        self._failed_at = 0.0
        self.state = ModelState.LOADING
        self.load_seconds: float | None = None
        self._waiting = 0
        self._waiting_lock = threading.Lock()

    def start_loading(self) -> None:
        self._executor.submit(self._ensure_loaded)

    async def generate(
        self, plan: GenerationPlan, seed: int | None = None, timing: GenerationTiming | None = None
    ) -> list[GeneratedImage]:
        if self.state is ModelState.FAILED and time.monotonic() - self._failed_at < RELOAD_BACKOFF_SECONDS:
            raise self._unavailable()
        chosen_seed = draw_seed() if seed is None else seed
        self._count_waiting(+1)
        future = self._executor.submit(
            self._run, plan, chosen_seed, time.monotonic(), timing or GenerationTiming()
        )
        return await asyncio.wrap_future(future)

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _run(
        self, plan: GenerationPlan, seed: int, submitted: float, timing: GenerationTiming
    ) -> list[GeneratedImage]:
        pipe = self._ensure_loaded()
        self._count_waiting(-1)
        started = time.monotonic()
        timing.queued_seconds = started - submitted
        if pipe is None:
            raise self._unavailable()
        observe_batch_size(self.spec.name, plan.n)
        images = run_plan(pipe, plan, seed)
        timing.generating_seconds = time.monotonic() - started
        return images

    def _count_waiting(self, change: int) -> None:
        with self._waiting_lock:
            self._waiting += change
            set_queue_depth(self.spec.name, self._waiting)

    def _ensure_loaded(self) -> DiffusionPipeline | None:
        """Runs on the worker thread only, so loads never overlap."""
        if self._pipe is not None:
            return self._pipe
        if self.state is ModelState.FAILED and time.monotonic() - self._failed_at < RELOAD_BACKOFF_SECONDS:
            return None
        self.state = ModelState.LOADING
        started = time.monotonic()
        try:
            self._pipe = load_pipeline(self.spec.source, self.device, self.dtype)
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
        log.error("model %s could not be loaded from %s: %s", self.spec.name, self.spec.source, message)
        self._error = message
        self._failed_at = time.monotonic()
        self.state = ModelState.FAILED

    def _unavailable(self) -> ServiceUnavailableError:
        return ServiceUnavailableError(
            f"The model `{self.spec.name}` is not available: its pipeline could not be loaded from "
            f"{self.spec.source!r}: {self._error}",
            code="model_unavailable",
            headers={"Retry-After": str(int(RELOAD_BACKOFF_SECONDS))},
        )


class Engine:
    """All model workers of a catalog, on one device."""

    def __init__(self, catalog: Catalog, device: torch.device | None = None) -> None:
        self.device = device or best_device()
        dtype = dtype_for(self.device)
        self.workers = {spec.name: ModelWorker(spec, self.device, dtype) for spec in catalog}

    def start(self) -> None:
        for worker in self.workers.values():
            worker.start_loading()

    async def generate(
        self, plan: GenerationPlan, seed: int | None = None, timing: GenerationTiming | None = None
    ) -> list[GeneratedImage]:
        return await self.workers[plan.model].generate(plan, seed, timing)

    def states(self) -> dict[str, ModelState]:
        return {name: worker.state for name, worker in self.workers.items()}

    def load_seconds(self) -> dict[str, float | None]:
        """How long each model's last successful load took (None while it has none)."""
        return {name: worker.load_seconds for name, worker in self.workers.items()}

    def shutdown(self) -> None:
        for worker in self.workers.values():
            worker.shutdown()
