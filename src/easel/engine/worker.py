"""One pipeline's worker: loads it within the memory budget, then batches the requests of every
catalog name on it."""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor

import torch
from diffusers import DiffusionPipeline

from easel.catalog import GenerationPlan
from easel.engine.generate import draw_seed
from easel.engine.loader import ModelLoadError, PipelineKey, load_pipeline, resolve_source
from easel.engine.memory import MemoryBudget
from easel.engine.pipeline_weights import (
    drop_weights,
    estimate_bytes,
    largest_module_bytes,
    loaded_bytes,
)
from easel.engine.scheduler import BatchScheduler
from easel.engine.tuning import tune_for_serving
from easel.engine.types import Generation, ModelState, PreviewRequest, SchedulerConfig
from easel.errors import ServiceUnavailableError

log = logging.getLogger(__name__)

# After a failed load, a new request tries again only after this many seconds, so a model with
# missing weights answers 503 at once instead of re-attempting a slow download on every request.
RELOAD_BACKOFF_SECONDS = 30.0
# A load cannot be interrupted: a shutdown waits this long for one in progress, then returns and
# leaves it to end on its own (the process is normally exiting), so Ctrl-C during a minute-long
# load of large weights is not a minute's wait.
SHUTDOWN_WAIT_SECONDS = 10.0


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
        budget: MemoryBudget,
        *,
        loads_at_start: bool = True,
    ) -> None:
        self.key = key
        self.names = names
        # The budget's name for it: its catalog names.
        self.name = "/".join(names)
        self.device = device
        self.dtype = dtype
        self.config = config
        self.budget = budget
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"easel-{names[0]}")
        self.scheduler = BatchScheduler(
            names,
            config,
            self._executor,
            self._ensure_loaded,
            self._unavailable,
            finished=self._finished,
        )
        self._pipe: DiffusionPipeline | None = None
        # What the loaded pipeline holds (0 while none is), and what a load needs: estimated once
        # from the weight files, on the worker thread.
        self._bytes = 0
        self._load_bytes: int | None = None
        # Too big for the whole budget on an accelerator: it runs with model CPU offload.
        self.offloaded = False
        # Why the last load failed: for the operator (log, `easel generate`), never for clients.
        self.load_error: str | None = None
        self._failed_at = 0.0
        # Whether `Engine.start` loads it; one that waits for its first use starts unloaded.
        self.loads_at_start = loads_at_start
        self.state = ModelState.LOADING if loads_at_start else ModelState.UNLOADED
        self.load_seconds: float | None = None
        self._shutting_down = False

    def start_loading(self) -> None:
        """Load the pipeline now if it fits in the budget's free room; else on its first use."""
        self._executor.submit(self._load_if_it_fits)

    async def generate(
        self,
        plan: GenerationPlan,
        *,
        seed: int | None = None,
        deadline_seconds: float | None = None,
        previews: PreviewRequest | None = None,
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
            previews=previews,
        )

    def pipeline(self, model: str) -> DiffusionPipeline:
        """The pipeline, loaded on the worker thread if need be, or 503 `model_unavailable` naming
        `model`, the name it was asked for by. Another model's load may release it later."""
        pipe = self._executor.submit(self._ensure_loaded).result()
        if pipe is None:
            raise self._unavailable(model)
        self.budget.done(self)
        return pipe

    def resident_bytes(self) -> int:
        return self._bytes

    def release(self) -> None:
        """Drop the weights; called by the budget, only while no batch runs."""
        pipe, self._pipe = self._pipe, None
        self._bytes = 0
        if self.state is not ModelState.FAILED:
            self.state = ModelState.UNLOADED
        if pipe is not None:
            drop_weights(pipe, self.device)
            log.info("released models %s from %s", ", ".join(self.names), self.device)

    async def shutdown(self) -> None:
        """Stop the batcher, then wait until the pipeline's thread is idle: nothing of this worker
        runs after. A load in progress must end first, since diffusers patches torch.nn for every
        thread while it builds a model (see `loader.LOAD_LOCK`); a running batch stops at its next
        step, its requests cancelled; a load still waiting for room in the memory budget never
        starts. Waits `SHUTDOWN_WAIT_SECONDS` at most."""
        self._shutting_down = True
        await self.scheduler.shutdown()
        idle = asyncio.to_thread(self._executor.shutdown, wait=True, cancel_futures=True)
        try:
            await asyncio.wait_for(idle, SHUTDOWN_WAIT_SECONDS)
        except TimeoutError:
            log.warning(
                "models %s: still busy (a load) %.0f s into the shutdown; not waiting for it",
                ", ".join(self.names),
                SHUTDOWN_WAIT_SECONDS,
            )

    def _load_if_it_fits(self) -> None:
        load_bytes = self._estimate()
        if load_bytes is None:
            return
        if not self.budget.try_acquire(self, load_bytes):
            self.state = ModelState.UNLOADED
            log.info(
                "models %s: not loaded at start (%d MB does not fit the memory budget's free "
                "room); loading on first use",
                ", ".join(self.names),
                load_bytes // 1_000_000,
            )
            return
        try:
            self._load()
        finally:
            self.budget.done(self)

    def _ensure_loaded(self) -> DiffusionPipeline | None:
        """The pipeline, loaded now if need be (waiting for room in the memory budget), and in use
        until `_finished`; None while it cannot be loaded. Runs on the worker thread only, so loads
        of one pipeline never overlap."""
        if self._backing_off():
            return None
        load_bytes = self._estimate()
        if load_bytes is None:
            return None
        self.budget.acquire(self, load_bytes)
        if self._pipe is None:
            self._load()
        if self._pipe is None:
            self.budget.done(self)
        return self._pipe

    def _finished(self) -> None:
        """The batcher is done with the pipeline for now: the budget may release it."""
        self.budget.done(self)

    def _estimate(self) -> int | None:
        """The bytes a load of the pipeline needs, from its weight files (fetched if need be);
        None when its source cannot be had."""
        if self._load_bytes is None:
            try:
                directory = resolve_source(self.key.source)
            except ModelLoadError as exc:
                self._fail(str(exc))
                return None
            self._load_bytes = estimate_bytes(directory, self.dtype)
        return self._load_bytes

    def _load(self) -> None:
        """Load the pipeline, with room for it already acquired; on failure, note why."""
        assert self._load_bytes is not None  # estimated before the room was acquired
        if self._shutting_down:  # the room came after the shutdown: nothing is left to use it
            return
        self.state = ModelState.LOADING
        self.offloaded = self.device.type != "cpu" and not self.budget.fits(self._load_bytes)
        started = time.monotonic()
        try:
            # An offloaded pipeline stays in RAM; its hooks move each component to the device
            # while it runs.
            pipe = load_pipeline(
                self.key.source,
                torch.device("cpu") if self.offloaded else self.device,
                self.dtype,
                self.key.decoder,
            )
            tune_for_serving(pipe)
            if self.offloaded:
                pipe.enable_model_cpu_offload(device=self.device)
        except ModelLoadError as exc:
            self._fail(str(exc))
            return
        except Exception as exc:  # a broken pipeline must not take the server down
            log.exception("models %s failed to load", ", ".join(self.names))
            self._fail(f"{type(exc).__name__}: {exc}")
            return
        self._pipe = pipe
        self._bytes = largest_module_bytes(pipe) if self.offloaded else loaded_bytes(pipe)
        self._warn_if_oversized()
        self.load_seconds = time.monotonic() - started
        self.load_error = None
        self.state = ModelState.READY

    def _warn_if_oversized(self) -> None:
        assert self._load_bytes is not None
        if self.budget.fits(self._load_bytes):
            return
        if self.offloaded:
            consequence = "running it with model CPU offload: slower, but within the budget"
        else:
            # A CPU has no slower memory to offload to.
            consequence = "loaded it whole anyway: on a CPU there is nowhere to offload it to"
        log.warning(
            "models %s need about %d MB, more than the whole memory budget of %d MB; %s",
            ", ".join(self.names),
            self._load_bytes // 1_000_000,
            self.budget.total_bytes // 1_000_000,
            consequence,
        )

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
