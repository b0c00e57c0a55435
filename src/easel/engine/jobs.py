"""What the scheduler queues: one request's images (a job) and the slices of jobs a batch runs."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from easel.catalog import GenerationPlan
from easel.engine.edits import EditCall
from easel.engine.types import GeneratedImage, GenerationTiming, PreviewRequest
from easel.observability.logs import request_id_var


@dataclass(frozen=True)
class BatchKey:
    """Everything one pipeline call needs identical across its images: requests with equal keys can
    share a call. Prompts, negative prompts and seeds are per image and stay out of the key."""

    width: int
    height: int
    steps: int
    guidance_scale: float
    # SDXL encodes a missing negative prompt as zeros but "" as text: the two cannot share a call.
    has_negative_prompt: bool
    # How an edit's call takes its input images; None for a generation, so the two never share.
    edit: EditCall | None = None

    @property
    def denoising_steps(self) -> int:
        """The steps the call runs: image-to-image and inpainting at strength s skip the first
        (1 - s) of the schedule, as diffusers' pipelines count them."""
        strength = self.edit.strength if self.edit is not None else None
        if strength is None:
            return self.steps
        return max(1, min(int(self.steps * strength), self.steps))

    @property
    def label(self) -> str:
        negative = ", negative prompt" if self.has_negative_prompt else ""
        size = f"{self.width}x{self.height}"
        edit = f", {self.edit.label}" if self.edit else ""
        return f"{size}, {self.steps} steps, guidance {self.guidance_scale:g}{negative}{edit}"


@dataclass(eq=False)
class Job:
    """One request's images on its way through the queue: image i is seeded with `seed + i`."""

    plan: GenerationPlan
    seed: int
    future: asyncio.Future[list[GeneratedImage]]
    previews: PreviewRequest | None = None
    # The submitter's request id, so log lines about this job name it.
    request_id: str = field(default_factory=request_id_var.get)
    enqueued_at: float = field(default_factory=time.monotonic)
    timing: GenerationTiming = field(default_factory=GenerationTiming)
    first_started: float | None = None  # when its first batch began
    dispatched: int = 0  # images handed to batches so far
    cancelled: bool = False
    images: list[GeneratedImage | None] = field(default_factory=list)
    # Counted on the pipeline's thread with its tokenizer, before the job's first batch.
    text_tokens: int | None = None

    def __post_init__(self) -> None:
        self.images = [None] * self.plan.n

    @property
    def undispatched(self) -> int:
        return self.plan.n - self.dispatched

    def log(self, logger: logging.Logger, level: int, message: str, *args: object) -> None:
        """Log a line about this job, carrying its request id."""
        logger.log(level, message, *args, extra={"request_id": self.request_id})


@dataclass(frozen=True)
class Part:
    """Images `first` .. `first + count - 1` of a job, inside one batch."""

    job: Job
    first: int
    count: int


def batch_images(parts: list[Part]) -> int:
    return sum(part.count for part in parts)


def request_ids(parts: list[Part]) -> str:
    """The ids of the requests in a batch, comma-separated, for its log lines."""
    return ",".join(dict.fromkeys(part.job.request_id for part in parts))


def by_request(parts: list[Part]) -> list[list[Part]]:
    """A batch's parts grouped by request, in batch order."""
    groups: dict[Job, list[Part]] = {}
    for part in parts:
        groups.setdefault(part.job, []).append(part)
    return list(groups.values())


def split_parts(parts: list[Part]) -> tuple[list[Part], list[Part]]:
    """Two halves by image count; a job straddling the middle is cut in two."""
    middle = batch_images(parts) // 2
    left: list[Part] = []
    right: list[Part] = []
    taken = 0
    for part in parts:
        if taken >= middle:
            right.append(part)
        elif taken + part.count <= middle:
            left.append(part)
        else:
            head = middle - taken
            left.append(Part(part.job, part.first, head))
            right.append(Part(part.job, part.first + head, part.count - head))
        taken += part.count
    return left, right
