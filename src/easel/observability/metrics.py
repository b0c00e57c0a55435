"""Prometheus metrics. The serving layer observes requests and their phases; the engine reports
what only it knows (batch sizes, queue depth) through the `observe_*`/`set_*` functions below;
model state, load times, the memory budget and accelerator memory are read from the engine when
Prometheus scrapes."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping

import torch
from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from easel.engine.memory import MemoryState
from easel.engine.types import ImageEngine, ModelState

_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 60, 120, 300)

REQUESTS = Counter(
    "easel_requests",
    "Image generation requests answered, by model and HTTP status.",
    ["model", "status"],
)
IMAGES_GENERATED = Counter("easel_images_generated", "Images delivered to clients.", ["model"])
LIMIT_REFUSALS = Counter(
    "easel_limit_refusals",
    "Requests refused by a key's policy, by reason (rate_limit_exceeded, insufficient_quota, ...).",
    ["reason"],
)
QUEUE_SECONDS = Histogram(
    "easel_queue_seconds",
    "Seconds a request waited in the engine before its pipeline call started "
    "(model loads included).",
    ["model"],
    buckets=_LATENCY_BUCKETS,
)
GENERATION_SECONDS = Histogram(
    "easel_generation_seconds",
    "Seconds in the pipeline call that made a request's images.",
    ["model"],
    buckets=_LATENCY_BUCKETS,
)
ENCODING_SECONDS = Histogram(
    "easel_encoding_seconds",
    "Seconds to encode a request's images as PNG and store or inline them.",
    ["model"],
    buckets=_LATENCY_BUCKETS,
)
BATCH_SIZE = Histogram(
    "easel_batch_size",
    # Models sharing a pipeline share its calls: a call is counted for each model it served.
    "Images per pipeline call that served the model's requests.",
    ["model"],
    buckets=(1, 2, 4, 8, 16, 32, 64),
)
BATCH_LIMIT = Gauge(
    "easel_batch_limit_images",
    "Most images the next pipeline call of a batch class may hold: the size measured fastest.",
    ["model", "batch_class"],
)
QUEUE_DEPTH = Gauge(
    "easel_queue_depth",
    "Images waiting in the engine for their pipeline call to start, in all the model's queues.",
    ["model"],
)
PROMPT_REWRITE_FALLBACKS = Counter(
    "easel_prompt_rewrite_fallbacks",
    "Prompts that went to the pipeline as written because the rewriter failed, by reason "
    "(timeout, error, unavailable).",
    ["reason"],
)
IN_FLIGHT = Gauge(
    "easel_requests_in_flight",
    "Admitted requests not yet answered (waiting, generating or encoding).",
    ["model"],
)


def observe_batch_size(model: str, images: int) -> None:
    """The engine calls this once per pipeline call with the number of images it makes."""
    BATCH_SIZE.labels(model).observe(images)


def set_batch_limit(model: str, batch_class: str, images: int) -> None:
    """The engine calls this when it settles on a new batch size limit for a class of batches."""
    BATCH_LIMIT.labels(model, batch_class).set(images)


class _QueueDepths:
    """Each queue's waiting images per model, and their sum per model in `QUEUE_DEPTH`: a name's
    multi-image edits wait in its edits source's queue, its other requests in its own."""

    def __init__(self) -> None:
        self._queues: dict[object, dict[str, int]] = {}
        # Engines in other threads (tests, benchmarks) may report at the same time.
        self._lock = threading.Lock()

    def set(self, queue: object, depths: Mapping[str, int]) -> None:
        with self._lock:
            # A model the queue held images for and no longer names drops to what others hold.
            models = {*self._queues.get(queue, {}), *depths}
            if any(depths.values()):
                self._queues[queue] = dict(depths)
            else:  # an empty queue holds nothing for the sum: forgotten, so none is kept alive
                self._queues.pop(queue, None)
            for model in models:
                total = sum(queued.get(model, 0) for queued in self._queues.values())
                QUEUE_DEPTH.labels(model).set(total)


_QUEUE_DEPTHS = _QueueDepths()


def set_queue_depths(queue: object, depths: Mapping[str, int]) -> None:
    """The engine calls this whenever the images waiting in one of its queues change: `depths`
    holds that queue's count for each model it serves (0 included)."""
    _QUEUE_DEPTHS.set(queue, depths)


class EngineCollector(Collector):
    """Reads model states, load times, the memory budget and accelerator memory from the engine at
    scrape time."""

    def __init__(self, engine: ImageEngine) -> None:
        self._engine = engine

    def collect(self) -> Iterator[Metric]:
        ready = GaugeMetricFamily(
            "easel_model_ready",
            "1 when the model's pipeline is loaded, else 0.",
            labels=["model", "state"],
        )
        for model, state in self._engine.states().items():
            ready.add_metric([model, state.value], 1.0 if state is ModelState.READY else 0.0)
        yield ready
        load = GaugeMetricFamily(
            "easel_model_load_seconds",
            "Seconds the model's last successful load took.",
            labels=["model"],
        )
        for model, seconds in self._engine.load_seconds().items():
            if seconds is not None:
                load.add_metric([model], seconds)
        yield load
        memory = self._engine.memory()
        if memory is not None:
            yield from _budget_metrics(memory.budget)
        yield from _accelerator_memory(self._engine.device)

    def describe(self) -> Iterable[Metric]:
        return []


def _budget_metrics(budget: MemoryState) -> Iterator[Metric]:
    totals = GaugeMetricFamily(
        "easel_memory_budget_bytes",
        "The memory budget of loaded models: its total, what the residents hold now, and the most "
        "they held at once.",
        labels=["kind"],
    )
    totals.add_metric(["total"], float(budget.total_bytes))
    totals.add_metric(["used"], float(budget.used_bytes))
    totals.add_metric(["peak"], float(budget.peak_bytes))
    yield totals
    yield GaugeMetricFamily(
        "easel_memory_waiting_models",
        "Models waiting for room in the memory budget before they load.",
        value=float(budget.waiting),
    )
    yield CounterMetricFamily(
        "easel_memory_evictions",
        "Idle models released to make room for another.",
        value=float(budget.evictions),
    )
    resident = GaugeMetricFamily(
        "easel_memory_resident_bytes",
        "Bytes each resident model holds in the budget (a pipeline is named by its catalog names).",
        labels=["resident"],
    )
    last_used = GaugeMetricFamily(
        "easel_memory_resident_last_used_seconds",
        "When each resident model was last used, in seconds since the epoch.",
        labels=["resident"],
    )
    for model in budget.residents:
        resident.add_metric([model.name], float(model.bytes))
        last_used.add_metric([model.name], model.last_used)
    yield resident
    yield last_used


def _accelerator_memory(device: torch.device) -> Iterator[Metric]:
    if device.type != "cuda" or not torch.cuda.is_available():
        return
    memory = GaugeMetricFamily(
        "easel_accelerator_memory_bytes",
        "Accelerator memory held by PyTorch: allocated to tensors, reserved by the caching "
        "allocator, and the device's total.",
        labels=["device", "kind"],
    )
    index = device.index if device.index is not None else torch.cuda.current_device()
    name = f"cuda:{index}"
    memory.add_metric([name, "allocated"], float(torch.cuda.memory_allocated(index)))
    memory.add_metric([name, "reserved"], float(torch.cuda.memory_reserved(index)))
    memory.add_metric([name, "total"], float(torch.cuda.get_device_properties(index).total_memory))
    yield memory


def register_engine(engine: ImageEngine) -> EngineCollector:
    collector = EngineCollector(engine)
    REGISTRY.register(collector)
    return collector


def unregister(collector: Collector) -> None:
    REGISTRY.unregister(collector)
