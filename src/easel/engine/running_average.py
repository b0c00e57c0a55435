"""A running figure that follows recent measurements: the scheduler's arrival gap and throughput,
and the batch sizer's images per second by batch size."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class RunningAverage:
    """Exponentially weighted: the first sample sets it, each later one moves it by `smoothing`
    of the difference."""

    smoothing: float
    value: float = 0.0
    samples: int = 0

    def add(self, sample: float) -> None:
        self.value = (
            sample if self.samples == 0 else self.value + self.smoothing * (sample - self.value)
        )
        self.samples += 1
