"""The in-process engine: one worker per pipeline, shared by the catalog names that point at it,
on one device, within one memory budget."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

import torch
from diffusers import DiffusionPipeline

from easel.catalog import Catalog, GenerationPlan, ModelSpec
from easel.engine.device import best_device, dtype_for
from easel.engine.edits import edits_source_for, plan_for_source
from easel.engine.family_presets import fit_presets_to_families
from easel.engine.loader import PipelineKey
from easel.engine.memory import MemoryBudget, default_budget_bytes
from easel.engine.types import (
    EngineMemory,
    Generation,
    ModelState,
    PreviewRequest,
    SchedulerConfig,
)
from easel.engine.worker import PipelineWorker

log = logging.getLogger(__name__)


class Engine:
    """The pipelines of a catalog, on one device, each with its own queue and batcher. Names that
    point at the same pipeline share its weights, queue and batches; everything a client or an
    operator reads (states, load times, stats, errors) is still per name."""

    def __init__(
        self,
        catalog: Catalog,
        config: SchedulerConfig,
        device: torch.device | None = None,
    ) -> None:
        fit_presets_to_families(catalog)
        self.device = device or best_device()
        dtype = dtype_for(self.device)
        # Every model on the device counts against it: pipelines, and any other model (matting,
        # prompt rewriting) that takes part through `memory.BudgetedModel`.
        self.memory_budget = MemoryBudget(
            config.memory_budget_bytes or default_budget_bytes(self.device)
        )
        log.info(
            "memory budget: %d MB of %s memory for loaded models",
            self.memory_budget.total_bytes // 1_000_000,
            self.device.type,
        )
        self._catalog = catalog
        names_by_pipeline = {
            key: [spec.name for spec in specs] for key, specs in specs_by_pipeline(catalog).items()
        }
        edit_names_by_pipeline: dict[PipelineKey, list[str]] = {}
        for spec in catalog:
            if spec.edits_source is not None:
                edits_key = PipelineKey.of(spec.edits_source, None)
                edit_names_by_pipeline.setdefault(edits_key, []).append(spec.name)
        self.pipelines = {
            key: PipelineWorker(key, tuple(names), self.device, dtype, config, self.memory_budget)
            for key, names in names_by_pipeline.items()
        }
        # An edits source that is no name's own pipeline gets a worker of its own, named for the
        # edits it runs, and loaded only when the first of them comes.
        for key, names in edit_names_by_pipeline.items():
            if key not in self.pipelines:
                self.pipelines[key] = PipelineWorker(
                    key,
                    (edits_worker_name(names),),
                    self.device,
                    dtype,
                    config,
                    self.memory_budget,
                    loads_at_start=False,
                )
        # Each catalog name's worker (names sharing a pipeline share the worker), and each edits
        # source's worker by its own name.
        self.workers = {name: worker for worker in self.pipelines.values() for name in worker.names}
        # The worker of each name's edits that run on its edits source.
        self._edits_workers = {
            name: self.pipelines[key]
            for key, names in edit_names_by_pipeline.items()
            for name in names
        }

    def start(self) -> None:
        for worker in self.pipelines.values():
            if worker.loads_at_start:
                worker.start_loading()

    async def generate(
        self,
        plan: GenerationPlan,
        *,
        seed: int | None = None,
        deadline_seconds: float | None = None,
        previews: PreviewRequest | None = None,
    ) -> Generation:
        """See `ImageEngine.generate`. An edit of several images to a name with an edits source
        runs there (`edits_source_for`)."""
        worker = self.workers[plan.model]
        if plan.edit is not None:
            source = edits_source_for(self._catalog.get(plan.model), len(plan.edit.images))
            if source is not None:
                worker = self._edits_workers[plan.model]
                plan = plan_for_source(plan, source)
        return await worker.generate(
            plan, seed=seed, deadline_seconds=deadline_seconds, previews=previews
        )

    def states(self) -> dict[str, ModelState]:
        return {name: worker.state for name, worker in self.workers.items()}

    def pipeline(self, model: str) -> DiffusionPipeline:
        """`model`'s loaded pipeline (waiting for its load), or 503 `model_unavailable`."""
        return self.workers[model].pipeline(model)

    def load_seconds(self) -> dict[str, float | None]:
        """How long each model's last successful load took (None while it has none)."""
        return {name: worker.load_seconds for name, worker in self.workers.items()}

    def memory(self) -> EngineMemory:
        workers = {worker.name: worker for worker in self.pipelines.values()}
        return EngineMemory(
            device=self.device.type,
            budget=self.memory_budget.state(),
            models={name: worker.names for name, worker in workers.items()},
            offloaded=frozenset(name for name, worker in workers.items() if worker.offloaded),
        )

    def stats(self) -> dict[str, dict[str, Any]]:
        """Per model: what its pipeline's scheduler did (for every name sharing the pipeline), and
        the batch size limits it measured."""
        return {
            name: {
                **worker.scheduler.stats.snapshot(),
                "batch_limits": worker.scheduler.sizer.snapshot(),
            }
            for name, worker in self.workers.items()
        }

    async def shutdown(self) -> None:
        """Cancel every queued and running request and stop the batchers, waiting until every
        pipeline's thread is idle (`PipelineWorker.shutdown`). All at once: a worker's thread
        may be waiting for memory another's batch holds."""
        await asyncio.gather(*(worker.shutdown() for worker in self.pipelines.values()))


def specs_by_pipeline(specs: Iterable[ModelSpec]) -> dict[PipelineKey, list[ModelSpec]]:
    """Catalog entries by the pipeline they share, in catalog order: each group's names share one
    copy of the weights, one queue and one batcher (an engine's worker; a cluster's deployment)."""
    groups: dict[PipelineKey, list[ModelSpec]] = {}
    for spec in specs:
        groups.setdefault(PipelineKey.of(spec.source, spec.decoder), []).append(spec)
    return groups


def edits_worker_name(names: list[str]) -> str:
    """What states, logs and the memory budget call the worker of an edits source that is no
    name's own pipeline: the names whose multi-image edits it runs."""
    return f"{'/'.join(names)} (multi-image edits)"
