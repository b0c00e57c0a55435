"""Summaries of a run: throughput and latency percentiles."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class RunSummary:
    images: int
    seconds: float
    images_per_second: float
    p50_ms: float
    p95_ms: float

    @classmethod
    def of(cls, latencies: list[float], images: int, seconds: float) -> RunSummary:
        return cls(
            images=images,
            seconds=round(seconds, 3),
            images_per_second=round(images / seconds, 3),
            p50_ms=round(float(np.percentile(latencies, 50)) * 1000, 1),
            p95_ms=round(float(np.percentile(latencies, 95)) * 1000, 1),
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
