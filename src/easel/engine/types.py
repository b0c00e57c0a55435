"""The engine's contract: what a generation returns, and what every engine offers its callers (the
HTTP layer, the metrics collector): `easel.engine.engine.Engine` in this process, or the cluster's
proxy to engines in Ray Serve replicas."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol

import numpy as np

from easel.catalog import GenerationPlan

if TYPE_CHECKING:
    import torch

    from easel.engine.memory import MemoryState

# Seeds are unsigned 32-bit integers, the range every client and numpy's generators accept.
MAX_SEED = 2**32 - 1


def highest_first_seed(n: int) -> int:
    """The highest seed a request for `n` images may start at: image i is made with seed + i, and
    the last one must itself be a seed a client can send back."""
    return MAX_SEED - (n - 1)


@dataclass(frozen=True)
class GeneratedImage:
    pixels: np.ndarray  # height x width x 3, uint8
    seed: int
    generated_width: int
    generated_height: int
    batch_images: int = 1  # images in the pipeline call that made this one


@dataclass
class GenerationTiming:
    """Seconds a request waited before its first pipeline call started (a model load included),
    and seconds from then until its last pipeline call ended."""

    queued_seconds: float = 0.0
    generating_seconds: float = 0.0


# The attribute of a failed request's error that holds its `GenerationTiming`: an attribute, so it
# travels with the error whatever its type, across the Ray boundary too (errors pickle theirs).
_FAILURE_TIMING = "easel_generation_timing"


def note_failure_timing(error: BaseException, timing: GenerationTiming) -> None:
    """Record on the error a request fails with (or on the cancellation of one whose client left)
    where its time went until then."""
    setattr(error, _FAILURE_TIMING, timing)


def failure_timing(error: BaseException) -> GenerationTiming:
    """Where a failed request's time went: what the engine noted on its error, or none for a
    request refused before it was queued."""
    timing = getattr(error, _FAILURE_TIMING, None)
    return timing if isinstance(timing, GenerationTiming) else GenerationTiming()


@dataclass(frozen=True)
class Generation:
    """A request's images, where its time went, and which replica made them (None in process)."""

    images: list[GeneratedImage]
    timing: GenerationTiming = field(default_factory=GenerationTiming)
    replica: str | None = None
    # The user's prompt in tokens of the model's own tokenizer (0 for a pipeline without one).
    text_tokens: int = 0


@dataclass(frozen=True)
class PreviewRequest:
    """Partial images of a request's first image while it is denoised: up to `count`, at evenly
    spaced steps. `deliver(index, pixels)` gets each (0-based index, h x w x 3 uint8 at the
    latents' resolution, in the image's aspect) on the pipeline's thread, so it must only hand
    them on; enlarging them to the requested size is the receiver's work, off that thread. A
    pipeline whose latents cannot be previewed delivers none."""

    count: int
    deliver: Callable[[int, np.ndarray], None]


@dataclass(frozen=True)
class SchedulerConfig:
    """Limits of each pipeline's queue (shared by the names that use it) and of the memory all the
    engine's pipelines share, filled in from the server's settings (the defaults' home)."""

    queue_images: int  # images waiting (not yet running) before new requests get 429
    batch_images: int  # most images in one pipeline call
    batch_pixels: int  # most generated pixels in one pipeline call
    batch_wait_seconds: float  # longest wait for company when the model is idle
    adaptive_batch_size: bool  # limit batches to the size measured fastest (batch_sizing.py)
    deadline_seconds: float | None  # a request still unfinished then is cancelled; None: never
    # Bytes of device memory the loaded models may hold together; None: the device's memory less a
    # margin (memory.default_budget_bytes).
    memory_budget_bytes: int | None = None


@dataclass(frozen=True)
class EngineMemory:
    """The engine's memory budget as operators read it: the budget's state, and for each resident
    that is a pipeline the catalog names it serves and whether it runs offloaded."""

    device: str
    budget: MemoryState
    models: dict[str, tuple[str, ...]]  # resident name -> catalog names
    offloaded: frozenset[str]  # resident names running with model CPU offload


class ModelState(StrEnum):
    LOADING = "loading"
    READY = "ready"
    # Not loaded (it did not fit at start, or was released to make room): the next request loads it.
    UNLOADED = "unloaded"
    FAILED = "failed"


class ImageEngine(Protocol):
    """What callers need of an engine."""

    # Where the pipelines run; the metrics read its accelerator memory.
    device: torch.device

    def start(self) -> None:
        """Begin loading every model; requests that arrive meanwhile wait for their model."""

    async def generate(
        self,
        plan: GenerationPlan,
        *,
        seed: int | None = None,
        deadline_seconds: float | None = None,
        previews: PreviewRequest | None = None,
    ) -> Generation:
        """The plan's images; image i is seeded with `seed + i` (a drawn seed when None), with
        the partial images `previews` asks for.

        Raises 429 `queue_full` when the model's queue is full, 504 `deadline_exceeded` after
        `deadline_seconds` (default: the engine's configured deadline). Cancelling the awaiting
        task withdraws the request.
        """
        ...

    def states(self) -> dict[str, ModelState]: ...

    def load_seconds(self) -> dict[str, float | None]:
        """How long each model's last successful load took (None while it has none)."""
        ...

    def memory(self) -> EngineMemory | None:
        """What the memory budget holds; None where the engine holds no models itself."""
        ...

    async def shutdown(self) -> None: ...
