"""Where one request's time went inside the engine, for usage records and latency metrics."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class GenerationTiming:
    """Filled in by the engine: seconds waiting before the pipeline call started (a model load
    included), and seconds in the pipeline call."""

    queued_seconds: float = 0.0
    generating_seconds: float = 0.0
