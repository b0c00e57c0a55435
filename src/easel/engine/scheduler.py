"""One pipeline's queue and batcher: compatible requests share pipeline calls, oldest request
first, whichever of the pipeline's catalog names they asked for.

Requests wait in arrival order. Each batch starts from the oldest waiting request and adds every
later request with the same `BatchKey` that fits the per-batch budget of images and pixels, so no
class of requests starves behind another. One batch runs at a time per pipeline, on the pipeline's
own thread; requests arriving meanwhile form the next batch.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import math
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

import torch
from diffusers import DiffusionPipeline

from easel.background import cancel_and_wait
from easel.catalog import GenerationPlan
from easel.engine.batch_sizing import BatchSizer
from easel.engine.edits import edit_call
from easel.engine.generate import BatchAbandoned, run_batch
from easel.engine.jobs import (
    BatchKey,
    Job,
    Part,
    batch_images,
    by_request,
    request_ids,
    split_parts,
)
from easel.engine.previews import step_previews
from easel.engine.resolution import generation_size
from easel.engine.running_average import RunningAverage
from easel.engine.tokens import count_text_tokens
from easel.engine.types import (
    GeneratedImage,
    Generation,
    GenerationTiming,
    PreviewRequest,
    SchedulerConfig,
    note_failure_timing,
)
from easel.errors import (
    DeadlineExceededError,
    EaselError,
    InvalidRequestError,
    RateLimitError,
    ServerError,
)
from easel.observability.metrics import observe_batch_size, set_batch_limit, set_queue_depths

log = logging.getLogger(__name__)

# How much each new measurement moves the running averages of arrival gaps and throughput.
_SMOOTHING = 0.2


class BatchFailed(RuntimeError):
    """The pipeline raised while running a request, alone in its batch or with others that
    succeeded apart after their shared batch failed."""


@dataclass
class SchedulerStats:
    """Counters of what the scheduler did, for logs, benchmarks and tests."""

    batches: int = 0
    images: int = 0
    batch_sizes: Counter[int] = field(default_factory=Counter)
    removed_from_queue: int = 0
    abandoned_batches: int = 0
    deadline_exceeded: int = 0
    queue_full: int = 0
    oom_splits: int = 0
    failed_batches: int = 0

    def snapshot(self) -> dict[str, Any]:
        return {
            "batches": self.batches,
            "images": self.images,
            "batch_sizes": dict(sorted(self.batch_sizes.items())),
            "removed_from_queue": self.removed_from_queue,
            "abandoned_batches": self.abandoned_batches,
            "deadline_exceeded": self.deadline_exceeded,
            "queue_full": self.queue_full,
            "oom_splits": self.oom_splits,
            "failed_batches": self.failed_batches,
        }


Outcome = list[tuple[Part, "list[GeneratedImage] | BaseException"]]


@dataclass
class PipelineCalls:
    """What one batch's pipeline calls did, for the batch sizer: written on the pipeline's thread,
    read on the event loop once the batch is over."""

    ran: list[tuple[int, float]] = field(default_factory=list)  # (images, seconds) of each call
    out_of_memory: list[int] = field(default_factory=list)  # images of each call that ran out


class BatchScheduler:
    """Queue and batcher of one pipeline, for its catalog `names`. `load` returns the pipeline
    (loading it if needed) or None when it cannot be loaded, and `unavailable(name)` is then the
    error for a request of that name; `load` and every batch run on `executor`, the pipeline's one
    thread. After each pipeline `load` returned, `finished` is called once the batcher no longer
    uses it (its batch is over, or there was none to run). Metrics stay per name: each name's queue
    depth, the batches that served it."""

    def __init__(
        self,
        names: tuple[str, ...],
        config: SchedulerConfig,
        executor: Executor,
        load: Callable[[], DiffusionPipeline | None],
        unavailable: Callable[[str], EaselError],
        *,
        finished: Callable[[], None],
    ) -> None:
        self.names = names
        # What log lines about the pipeline as a whole call it.
        self.label = "/".join(names)
        self.config = config
        self.stats = SchedulerStats()
        self.sizer = BatchSizer(adaptive=config.adaptive_batch_size)
        self._executor = executor
        self._load = load
        self._unavailable = unavailable
        self._finished = finished
        self._pending: list[Job] = []
        self._running_images = 0
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._last_arrival: float | None = None
        self._arrival_gap = RunningAverage(_SMOOTHING)
        self._last_batch_requests = 0
        self._images_per_second = RunningAverage(_SMOOTHING)

    @property
    def queued_images(self) -> int:
        return sum(job.undispatched for job in self._pending)

    async def generate(
        self,
        plan: GenerationPlan,
        *,
        seed: int,
        deadline_seconds: float | None,
        previews: PreviewRequest | None = None,
    ) -> Generation:
        """Queue the plan and wait for its images. Cancelling the caller cancels the request:
        removed from the queue, or its batch stopped once no request in it is left."""
        job = self._submit(plan, seed, previews)
        try:
            async with asyncio.timeout(deadline_seconds):
                images = await asyncio.shield(job.future)
                return Generation(images, job.timing, text_tokens=job.text_tokens or 0)
        except TimeoutError:
            self._cancel(job, "its deadline passed")
            self.stats.deadline_exceeded += 1
            exceeded = DeadlineExceededError(
                f"The request did not finish within this server's deadline of "
                f"{deadline_seconds:g} seconds and was cancelled. Try again when the server is "
                "less busy, or ask for fewer images.",
                code="deadline_exceeded",
            )
            note_failure_timing(exceeded, _timing_until_now(job))
            raise exceeded from None
        except asyncio.CancelledError as cancelled:
            self._cancel(job, "its client went away")
            note_failure_timing(cancelled, _timing_until_now(job))
            raise
        except Exception as exc:
            note_failure_timing(exc, _timing_until_now(job))
            raise

    async def shutdown(self) -> None:
        """Stop the batcher (waiting until it has stopped) and cancel every queued request."""
        await cancel_and_wait(self._task)
        for job in self._pending:
            job.future.cancel()
        self._pending.clear()
        self._queue_changed()

    def _queue_changed(self) -> None:
        queued = Counter(dict.fromkeys(self.names, 0))
        for job in self._pending:
            queued[job.plan.model] += job.undispatched
        set_queue_depths(self, queued)

    def _submit(self, plan: GenerationPlan, seed: int, previews: PreviewRequest | None) -> Job:
        queued = self.queued_images
        if queued and queued + plan.n > self.config.queue_images:
            self.stats.queue_full += 1
            retry_after = self._retry_after(queued)
            raise RateLimitError(
                f"The server is busy: the queue for model `{plan.model}`{self._shared_with(plan)} "
                f"already holds {queued} of at most {self.config.queue_images} images. "
                f"Retry after {retry_after} seconds.",
                code="queue_full",
                headers={
                    "Retry-After": str(retry_after),
                    "retry-after-ms": str(retry_after * 1000),
                },
            )
        loop = asyncio.get_running_loop()
        job = Job(plan=plan, seed=seed, future=loop.create_future(), previews=previews)
        self._note_arrival(job.enqueued_at)
        self._pending.append(job)
        self._queue_changed()
        if self._wakeup is None:
            self._wakeup = asyncio.Event()
        if self._task is None or self._task.done():
            # A fresh context: the batcher serves every request, not just the one that started it.
            self._task = loop.create_task(
                self._batch_forever(),
                name=f"easel-batcher-{self.label}",
                context=contextvars.Context(),
            )
        self._wakeup.set()
        return job

    def _shared_with(self, plan: GenerationPlan) -> str:
        """Why a client's queue may be full of other names' requests: they share its weights."""
        others = [f"`{name}`" for name in self.names if name != plan.model]
        return f" (shared with {', '.join(others)}: the same weights)" if others else ""

    def _retry_after(self, queued: int) -> int:
        """Seconds until the work ahead is likely done, from the measured images per second."""
        if not self._images_per_second.value:
            return 1
        ahead = queued + self._running_images
        return max(1, math.ceil(ahead / self._images_per_second.value))

    def _note_arrival(self, now: float) -> None:
        if self._last_arrival is not None:
            self._arrival_gap.add(now - self._last_arrival)
        self._last_arrival = now

    def _cancel(self, job: Job, reason: str) -> None:
        job.cancelled = True
        if job in self._pending:
            self._pending.remove(job)
            self._queue_changed()
            self.stats.removed_from_queue += 1
            job.log(
                log,
                logging.INFO,
                "%s: removed a request for %d images from the queue: %s",
                job.plan.model,
                job.undispatched,
                reason,
            )
        if not job.future.done():
            job.future.cancel()

    async def _batch_forever(self) -> None:
        assert self._wakeup is not None
        loop = asyncio.get_running_loop()
        while True:
            if not self._pending:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            pipe = await loop.run_in_executor(self._executor, self._load)
            if pipe is None:
                self._fail_pending()
                continue
            try:
                # The requests may have given up while the pipeline loaded or waited for memory;
                # edits the loaded model cannot run are refused before any key is made of them,
                # those that arrived while waiting for company too.
                self._refuse_unrunnable(pipe)
                if self._pending:
                    await self._wait_for_company(pipe)
                self._refuse_unrunnable(pipe)
                if not self._pending:
                    continue
                key, parts = self._take_batch(pipe)
                try:
                    await self._run(loop, pipe, key, parts)
                except Exception:  # the batcher must outlive any fault, or the pipeline stops
                    log.exception("%s: batcher fault", _models(parts), extra=_naming(parts))
            finally:
                self._finished()

    def _fail_pending(self) -> None:
        """The pipeline cannot be loaded: every waiting request fails, naming its own model."""
        for job in self._pending:
            if not job.future.done():
                job.future.set_exception(self._unavailable(job.plan.model))
        self._pending.clear()
        self._queue_changed()

    def _refuse_unrunnable(self, pipe: DiffusionPipeline) -> None:
        """Fail the waiting edits the loaded model cannot run (a mask to a family without an
        inpaint pipeline, too many images), each with its own 400."""
        refused = False
        for job in list(self._pending):
            try:
                edit_call(pipe, job.plan)
            except InvalidRequestError as exc:
                self._pending.remove(job)
                refused = True
                if not job.future.done():
                    job.future.set_exception(exc)
                job.log(log, logging.INFO, "%s: refused an edit: %s", job.plan.model, exc)
        if refused:
            self._queue_changed()

    async def _wait_for_company(self, pipe: DiffusionPipeline) -> None:
        """Wait a few milliseconds for more requests, but only while company is likely and the
        next batch is not yet full. A lone client never pays the wait."""
        assert self._wakeup is not None
        oldest = self._pending[0]
        until = oldest.enqueued_at + self.config.batch_wait_seconds
        key = self._key(pipe, oldest)
        if key.edit and key.edit.shares_inputs:
            return  # no other request can join its call
        full = self._batch_limit(key)
        while self._pending and self.queued_images < full and self._company_likely():
            remaining = until - time.monotonic()
            if remaining <= 0:
                return
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), remaining)
            except TimeoutError:
                return

    def _company_likely(self) -> bool:
        """Requests arrive more often than the wait, or the last batch served more clients than
        are waiting now (their next requests are on the way)."""
        return (
            self._arrival_gap.samples > 0
            and self._arrival_gap.value <= self.config.batch_wait_seconds
        ) or len(self._pending) < self._last_batch_requests

    def _key(self, pipe: DiffusionPipeline, job: Job) -> BatchKey:
        plan = job.plan
        width, height = generation_size(pipe, plan.width, plan.height)
        return BatchKey(
            width,
            height,
            plan.steps,
            plan.guidance_scale,
            plan.negative_prompt is not None,
            edit_call(pipe, plan),
        )

    def _batch_limit(self, key: BatchKey) -> int:
        """Most images in a batch of this class: the configured image and pixel budgets, an edit
        call's own limit, and within them the size the sizer measured fastest."""
        by_pixels = self.config.batch_pixels // (key.width * key.height)
        budget = max(1, min(self.config.batch_images, by_pixels))
        if key.edit and key.edit.most_images:
            budget = min(budget, key.edit.most_images)
        return self.sizer.limit(key, budget)

    def _take_batch(self, pipe: DiffusionPipeline) -> tuple[BatchKey, list[Part]]:
        """The oldest request (as many of its images as fit, at least one) plus every later
        compatible request that fits whole."""
        oldest = self._pending[0]
        key = self._key(pipe, oldest)
        budget = self._batch_limit(key)
        take = min(oldest.undispatched, budget)
        parts = [Part(oldest, oldest.dispatched, take)]
        oldest.dispatched += take
        used = take
        for job in self._pending[1:]:
            if used >= budget:
                break
            if job.undispatched <= budget - used and self._joins(pipe, key, job):
                parts.append(Part(job, job.dispatched, job.undispatched))
                used += job.undispatched
                job.dispatched = job.plan.n
        self._pending = [job for job in self._pending if job.undispatched]
        self._queue_changed()
        return key, parts

    def _joins(self, pipe: DiffusionPipeline, key: BatchKey, job: Job) -> bool:
        """Whether `job` may join a batch of `key`: the same key, unless the call takes one set of
        input images for all its images (then it is the oldest request's alone)."""
        return self._key(pipe, job) == key and not (key.edit and key.edit.shares_inputs)

    async def _run(
        self,
        loop: asyncio.AbstractEventLoop,
        pipe: DiffusionPipeline,
        key: BatchKey,
        parts: list[Part],
    ) -> None:
        images = batch_images(parts)
        self._running_images = images
        jobs = {part.job for part in parts}
        self._last_batch_requests = len(jobs)
        started = time.monotonic()
        for job in jobs:
            if job.first_started is None:  # a job spread over batches waited until its first
                job.first_started = started
                job.timing.queued_seconds = started - job.enqueued_at
        calls = PipelineCalls()
        running = loop.run_in_executor(self._executor, self._attempt, pipe, key, parts, calls)
        try:
            outcome = await asyncio.shield(running)
        except asyncio.CancelledError:
            # The batcher is shutting down: its requests are cancelled, and the batch, with no one
            # left to deliver to, stops at its next step. Until it has, the pipeline is in use:
            # the memory budget must not release it under the batch.
            for job in jobs:
                job.cancelled = True
                job.future.cancel()
            await asyncio.wait([running])
            raise
        finally:
            self._running_images = 0
            for job in jobs:
                assert job.first_started is not None  # set above for every job of the batch
                job.timing.generating_seconds = time.monotonic() - job.first_started
        self._resize(key, calls, parts)
        made = sum(len(r) for _, r in outcome if not isinstance(r, BaseException))
        if made:
            self._images_per_second.add(made / max(time.monotonic() - started, 1e-6))
        for part, result in outcome:
            self._deliver(part, result)

    def _resize(self, key: BatchKey, calls: PipelineCalls, parts: list[Part]) -> None:
        changes = [self.sizer.record_out_of_memory(key, images) for images in calls.out_of_memory]
        changes += [self.sizer.record(key, images, seconds) for images, seconds in calls.ran]
        limit = next((change for change in reversed(changes) if change is not None), None)
        if limit is not None:
            for name in self.names:
                set_batch_limit(name, key.label, limit)
            log.info(
                "%s: batches of %s now hold at most %d images",
                self.label,
                key.label,
                limit,
                extra=_naming(parts),
            )

    def _attempt(
        self, pipe: DiffusionPipeline, key: BatchKey, parts: list[Part], calls: PipelineCalls
    ) -> Outcome:
        """Run one batch on the pipeline's thread; on out-of-memory, retry each half on its own; on
        any other fault, retry each request on its own, so a request the pipeline cannot run fails
        alone. Notes in `calls` what each pipeline call did."""
        jobs = {part.job for part in parts}
        naming = _naming(parts)
        models = _models(parts)

        def abandoned() -> bool:
            return all(job.cancelled for job in jobs)

        images = batch_images(parts)
        if abandoned():
            return [(part, BatchAbandoned(0)) for part in parts]
        started = time.perf_counter()
        try:
            for job in jobs:
                if job.text_tokens is None:
                    job.text_tokens = count_text_tokens(pipe, job.plan.user_prompt)
            results = run_batch(pipe, key, parts, abandoned, step_previews(pipe, key, parts))
        except BatchAbandoned as exc:
            self.stats.abandoned_batches += 1
            log.info(
                "%s: stopped a batch of %d images after step %d of %d: every request in it "
                "was cancelled",
                models,
                images,
                exc.step,
                key.steps,
                extra=naming,
            )
            return [(part, exc) for part in parts]
        except torch.OutOfMemoryError as exc:
            _free_accelerator_memory(pipe)
            if images == 1:
                log.error(
                    "%s: out of memory for a single %dx%d image: %s",
                    models,
                    key.width,
                    key.height,
                    exc,
                    extra=naming,
                )
                return [(parts[0], _out_of_memory(key))]
            calls.out_of_memory.append(images)
            self.stats.oom_splits += 1
            log.warning(
                "%s: out of memory for a batch of %d images; retrying it in halves",
                models,
                images,
                extra=naming,
            )
            left, right = split_parts(parts)
            return self._attempt(pipe, key, left, calls) + self._attempt(pipe, key, right, calls)
        except Exception as exc:  # a pipeline fault fails the request that caused it, no other
            self.stats.failed_batches += 1
            requests = by_request(parts)
            if len(requests) > 1:
                log.warning(
                    "%s: a batch of %d images from %d requests failed; retrying each request "
                    "on its own",
                    models,
                    images,
                    len(requests),
                    exc_info=True,
                    extra=naming,
                )
                return [
                    result
                    for request in requests
                    for result in self._attempt(pipe, key, request, calls)
                ]
            log.exception("%s: a batch of %d images failed", models, images, extra=naming)
            failure = BatchFailed(f"{type(exc).__name__} in a batch of {images} images: {exc}")
            failure.__cause__ = exc
            return [(part, failure) for part in parts]
        calls.ran.append((images, time.perf_counter() - started))
        self.stats.batches += 1
        self.stats.images += images
        self.stats.batch_sizes[images] += 1
        for model in dict.fromkeys(part.job.plan.model for part in parts):
            observe_batch_size(model, images)
        log.debug(
            "%s: ran a batch of %d images from %d requests",
            models,
            images,
            len(jobs),
            extra=naming,
        )
        return list(zip(parts, results, strict=True))

    def _deliver(self, part: Part, result: list[GeneratedImage] | BaseException) -> None:
        job = part.job
        if job.future.done():
            return
        if isinstance(result, BaseException):
            job.future.set_exception(result)
            return
        job.images[part.first : part.first + part.count] = result
        if not job.undispatched and all(image is not None for image in job.images):
            job.future.set_result([image for image in job.images if image is not None])


def _timing_until_now(job: Job) -> GenerationTiming:
    """Where a request's time went until now: waiting, then generating once its first batch began
    (that batch may still run, its end not yet noted)."""
    now = time.monotonic()
    if job.first_started is None:
        return GenerationTiming(queued_seconds=now - job.enqueued_at)
    return GenerationTiming(job.timing.queued_seconds, now - job.first_started)


def _naming(parts: list[Part]) -> dict[str, object]:
    """`extra` for a batch's log lines: they carry the ids of all its requests."""
    return {"request_id": request_ids(parts)}


def _models(parts: list[Part]) -> str:
    """The catalog names a batch serves, for its log lines."""
    return "/".join(dict.fromkeys(part.job.plan.model for part in parts))


def _out_of_memory(key: BatchKey) -> ServerError:
    return ServerError(
        f"Generating one {key.width}x{key.height} image with {key.steps} steps needs more "
        "accelerator memory than this server has free, even alone in its batch. Try a smaller "
        "size or a lighter quality.",
        code="out_of_memory",
        headers={"x-should-retry": "false"},
    )


def _free_accelerator_memory(pipe: DiffusionPipeline) -> None:
    if pipe.device.type == "cuda":
        torch.cuda.empty_cache()
