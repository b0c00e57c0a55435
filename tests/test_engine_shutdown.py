"""An engine that has shut down leaves nothing running in the process: while diffusers builds a
model it patches torch.nn for every thread (accelerate's empty-weight initialisation), so a load
that outlived its engine gave the next pipeline built in the process empty (meta) weights."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from diffusers import DiffusionPipeline
from pydantic import ByteSize

from easel.catalog import Catalog, ModelSpec
from easel.devtools.tiny_pipelines import build_tiny_sd
from easel.engine import generate, loader
from easel.engine.engine import Engine
from easel.engine.pipeline_weights import estimate_bytes
from easel.engine.types import GeneratedImage, Generation
from easel.settings import Settings


@pytest.mark.anyio
async def test_shutdown_waits_for_a_load_in_progress_and_the_next_pipeline_gets_real_weights(
    tiny_sd: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started, finished = threading.Event(), threading.Event()
    real = loader.load_pipeline

    def observed(
        source: str, device: torch.device, dtype: torch.dtype, decoder: str | None = None
    ) -> DiffusionPipeline:
        started.set()
        try:
            return real(source, device, dtype, decoder)
        finally:
            finished.set()

    # The worker's own reference: the real loader runs, observed.
    monkeypatch.setattr("easel.engine.worker.load_pipeline", observed)
    catalog = Catalog([ModelSpec(name="loading", source=str(tiny_sd))])
    engine = Engine(catalog, config=Settings().scheduler_config())
    # The order of tests/test_shared_pipelines.py then tests/test_observability.py: a request
    # queued behind a load gives up, the engine shuts down mid-load, and the next test builds its
    # pipeline from scratch in the same process.
    request = asyncio.ensure_future(
        engine.generate(
            catalog.get("loading").plan(prompt="a cat", n=1, size=None, quality=None, style=None),
            seed=1,
        )
    )
    await asyncio.to_thread(started.wait, 60)
    request.cancel()
    await engine.shutdown()
    assert finished.is_set(), "the load outlived the engine's shutdown"

    rebuilt = DiffusionPipeline.from_pretrained(build_tiny_sd(tmp_path / "next", seed=1))
    meta = [
        name
        for name, component in rebuilt.components.items()
        if isinstance(component, torch.nn.Module)
        and any(parameter.is_meta for parameter in component.parameters())
    ]
    assert meta == []


@pytest.mark.anyio
async def test_shutdown_stops_a_running_batch_at_its_next_step(
    tiny_sd: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    batch_started = threading.Event()
    real = generate.run_batch

    def observed(*args: Any, **kwargs: Any) -> list[list[GeneratedImage]]:
        batch_started.set()
        return real(*args, **kwargs)

    # The scheduler's own reference: the real batch runs, observed.
    monkeypatch.setattr("easel.engine.scheduler.run_batch", observed)
    catalog = Catalog([ModelSpec(name="running", source=str(tiny_sd))])
    engine = Engine(catalog, config=Settings().scheduler_config())
    plan = catalog.get("running").plan(prompt="a cat", n=1, size=None, quality=None, style=None)
    # Steps enough to take minutes on two CPU cores: the batch is still running at shutdown.
    request = asyncio.ensure_future(engine.generate(dataclasses.replace(plan, steps=5000), seed=1))
    await asyncio.to_thread(batch_started.wait, 60)
    # Failing, these time out rather than wait for the whole batch.
    await asyncio.wait_for(engine.shutdown(), 30)
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(request, 30)
    assert engine.stats()["running"]["abandoned_batches"] == 1


@pytest.mark.anyio
async def test_a_load_waiting_for_memory_at_shutdown_never_starts(
    tiny_sd: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    loads: list[str] = []
    batch_started = threading.Event()
    real_load, real_batch = loader.load_pipeline, generate.run_batch

    def observed_load(
        source: str, device: torch.device, dtype: torch.dtype, decoder: str | None = None
    ) -> DiffusionPipeline:
        loads.append(source)
        return real_load(source, device, dtype, decoder)

    def observed_batch(*args: Any, **kwargs: Any) -> list[list[GeneratedImage]]:
        batch_started.set()
        return real_batch(*args, **kwargs)

    # The real loader and batches run, observed.
    monkeypatch.setattr("easel.engine.worker.load_pipeline", observed_load)
    monkeypatch.setattr("easel.engine.scheduler.run_batch", observed_batch)
    other = shutil.copytree(tiny_sd, tmp_path / "other-sd")
    catalog = Catalog(
        [ModelSpec(name="first", source=str(tiny_sd)), ModelSpec(name="second", source=str(other))]
    )
    # Room for one of the two pipelines at a time.
    budget = ByteSize(estimate_bytes(tiny_sd, torch.float32) * 3 // 2)
    engine = Engine(catalog, config=Settings(memory_budget=budget).scheduler_config())

    def request(model: str) -> asyncio.Future[Generation]:
        plan = catalog.get(model).plan(prompt="a cat", n=1, size=None, quality=None, style=None)
        return asyncio.ensure_future(engine.generate(dataclasses.replace(plan, steps=5000), seed=1))

    running = request("first")
    await asyncio.to_thread(batch_started.wait, 60)
    # Its pipeline's thread waits for the room the running batch holds.
    waiting = request("second")
    await asyncio.to_thread(until, lambda: engine.memory_budget.state().waiting == 1)
    await asyncio.wait_for(engine.shutdown(), 30)
    for cancelled in (running, waiting):
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(cancelled, 30)
    assert loads == [engine.workers["first"].key.source]
    # Nor was the running batch's pipeline released under it, which failed the batch.
    assert [record.message for record in caplog.records if record.levelno >= logging.ERROR] == []


def until(condition: Callable[[], bool], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        time.sleep(0.01)


@pytest.mark.anyio
async def test_shutdown_waits_for_a_load_only_so_long(
    tiny_sd: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Fault injection: a load that takes far longer than the wait (real large weights would).
    loading, release = threading.Event(), threading.Event()

    def endless(*args: Any, **kwargs: Any) -> DiffusionPipeline:
        loading.set()
        release.wait(60)
        raise loader.ModelLoadError("released by the test")

    monkeypatch.setattr("easel.engine.worker.load_pipeline", endless)
    monkeypatch.setattr("easel.engine.worker.SHUTDOWN_WAIT_SECONDS", 0.5)
    catalog = Catalog([ModelSpec(name="slow-load", source=str(tiny_sd))])
    engine = Engine(catalog, config=Settings().scheduler_config())
    engine.start()
    try:
        await asyncio.to_thread(loading.wait, 60)
        started = time.monotonic()
        with caplog.at_level(logging.WARNING, logger="easel.engine.worker"):
            await asyncio.wait_for(engine.shutdown(), 30)
        assert time.monotonic() - started < 10
        assert "slow-load: still busy (a load)" in caplog.text
    finally:
        release.set()
