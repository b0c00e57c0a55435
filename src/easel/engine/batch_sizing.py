"""How many images a batch should hold: the size that measured the most images per second.

Bigger batches are not always faster per image. On a CPU, or a GPU that one image already fills,
throughput peaks at some size and then falls (activations spill out of cache, memory traffic
grows), while every extra image in a batch still adds latency. So for each class of batch (one
`BatchKey`) the sizer keeps a running images-per-second figure for every batch size it has seen
run, and limits batches to the smallest size within a small tolerance of the best. It starts at
the configured budget and measures the neighbours of the best size so far (half and double, within
the budget) until both are known, which walks it to the peak; every so often it forgets all but the
current limit's figure and probes again, since the machine's other load and the model's warm-up
change the best size. A batch that runs out of accelerator memory caps its class below that size
until the next reprobe, so the scheduler does not split every batch again.

Measurements are noisy (the machine's other load, batches that are not full), so the limit moves
from one measured size to another only when that size beats the current one by a margin, and then
stays for a minimum number of batches: without both it follows the noise from batch to batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from easel.engine.jobs import BatchKey
from easel.engine.running_average import RunningAverage

# Batches of a size that make its figure trustworthy enough to decide on.
MIN_SAMPLES = 3
# A smaller batch within this fraction of the best throughput wins: same work, less latency.
TOLERANCE = 0.05
# Batches of one class after which the neighbours are measured again.
REPROBE_BATCHES = 200
# How much each batch moves its size's running figure.
SMOOTHING = 0.3
# Another measured size replaces the current limit only when faster by this fraction more.
HYSTERESIS = 0.1
# Batches a limit chosen among measured sizes runs before the sizer may move it again.
MIN_DWELL_BATCHES = 20


@dataclass
class _ClassState:
    budget: int
    limit: int
    ceiling: int  # the budget, or less after running out of memory
    rates: dict[int, RunningAverage] = field(default_factory=dict)  # images/s by batch size
    batches: int = 0
    dwell: int = 0  # batches the current limit must still run before it may change

    def measured(self, size: int) -> bool:
        rate = self.rates.get(size)
        return rate is not None and rate.samples >= MIN_SAMPLES


class BatchSizer:
    """Per batch class, the most images a batch should hold. Not thread-safe: the scheduler calls
    it from its event loop only."""

    def __init__(self, adaptive: bool = True) -> None:
        self.adaptive = adaptive
        self._classes: dict[BatchKey, _ClassState] = {}

    def limit(self, key: BatchKey, budget: int) -> int:
        """Images the next batch of this class may hold, at most `budget` (the configured
        image and pixel budget for the class)."""
        if not self.adaptive:
            return budget
        state = self._classes.get(key)
        if state is None:
            state = self._classes[key] = _ClassState(budget=budget, limit=budget, ceiling=budget)
        return state.limit

    def record(self, key: BatchKey, images: int, seconds: float) -> int | None:
        """A batch of this class ran to completion: `images` images in `seconds`. Returns the
        class's limit when this changed it, else None."""
        state = self._classes.get(key)
        if not self.adaptive or state is None or seconds <= 0:
            return None
        state.rates.setdefault(images, RunningAverage(SMOOTHING)).add(images / seconds)
        state.batches += 1
        if state.batches % REPROBE_BATCHES == 0:
            state.rates = {size: r for size, r in state.rates.items() if size == state.limit}
            state.ceiling = state.budget  # the memory that ran out may be free again
        if state.dwell:
            state.dwell -= 1
            return None
        return _set_limit(state, _next_limit(state))

    def record_out_of_memory(self, key: BatchKey, images: int) -> int | None:
        """A batch of this class ran out of accelerator memory at `images` images: until the next
        reprobe, batches stay below that. Returns the new limit when it changed, else None."""
        state = self._classes.get(key)
        if not self.adaptive or state is None or images <= 1:
            return None
        state.ceiling = min(state.ceiling, images - 1)
        state.rates = {size: rate for size, rate in state.rates.items() if size <= state.ceiling}
        return _set_limit(state, min(state.limit, max(1, images // 2)))

    def snapshot(self) -> dict[str, Any]:
        """Each class's current limit and measured images per second by batch size."""
        return {
            key.label: {
                "limit": state.limit,
                "images_per_second": {
                    size: round(rate.value, 2) for size, rate in sorted(state.rates.items())
                },
            }
            for key, state in self._classes.items()
        }


def _set_limit(state: _ClassState, limit: int) -> int | None:
    """Set the class's limit; the new limit when it changed, else None. A limit chosen among
    measured sizes dwells; a probe of an unmeasured size lasts until it is measured."""
    if limit == state.limit:
        return None
    state.limit = limit
    state.dwell = MIN_DWELL_BATCHES if state.measured(limit) else 0
    return limit


def _next_limit(state: _ClassState) -> int:
    """Keep measuring a size until its figure counts; then take the best measured size, unless
    one of its neighbours is still unmeasured: that is probed first. The current limit's figure
    counts `HYSTERESIS` higher, so a change must beat it by that margin."""
    if not state.measured(state.limit):
        return state.limit
    rates = {size: rate.value for size, rate in state.rates.items() if state.measured(size)}
    rates[state.limit] *= 1 + HYSTERESIS
    best = max(rates.values())
    chosen = min(size for size, value in rates.items() if value >= (1 - TOLERANCE) * best)
    for neighbour in (min(state.ceiling, chosen * 2), max(1, chosen // 2)):
        if neighbour != chosen and not state.measured(neighbour):
            return neighbour
    return chosen
