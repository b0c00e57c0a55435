"""Catalog names that point at the same weights share one loaded pipeline, one queue and its
batches, while everything clients and operators read stays per name. In-process engines on real
tiny pipelines, and the app through the official SDK."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from diffusers import DiffusionPipeline
from prometheus_client import REGISTRY

from easel.catalog import Catalog, GenerationPlan, ModelSpec
from easel.catalog.defaults import DEFAULT_MODELS
from easel.engine import loader
from easel.engine.engine import Engine
from easel.engine.loader import PipelineKey
from easel.engine.types import Generation, ModelState
from easel.errors import RateLimitError, ServiceUnavailableError
from easel.settings import Settings
from tests.inprocess import running_app


@pytest.fixture(scope="module")
def other_sd(tiny_sd: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same weights under another directory: another source, so another pipeline."""
    copy = tmp_path_factory.mktemp("other") / "tiny-sd"
    shutil.copytree(tiny_sd, copy)
    return copy


@pytest.fixture(scope="module")
def catalog(tiny_sd: Path, other_sd: Path) -> Catalog:
    # `b` spells the directory of `a` differently: still one source.
    return Catalog(
        [
            ModelSpec(name="share-a", source=str(tiny_sd)),
            ModelSpec(name="share-b", source=f"{tiny_sd}/."),
            ModelSpec(name="share-c", source=str(other_sd)),
        ]
    )


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The sources the engine loads, in order: the real loader runs, observed."""
    seen: list[str] = []
    real = loader.load_pipeline

    def observed(
        source: str, device: torch.device, dtype: torch.dtype, decoder: str | None = None
    ) -> DiffusionPipeline:
        seen.append(source)
        return real(source, device, dtype, decoder)

    # The worker's own reference: that is the one it calls.
    monkeypatch.setattr("easel.engine.worker.load_pipeline", observed)
    return seen


@pytest.fixture
def run() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def make_engine(catalog: Catalog) -> Engine:
    return Engine(catalog, config=Settings().scheduler_config())


def plan(catalog: Catalog, model: str, size: str = "256x256") -> GenerationPlan:
    return catalog.get(model).plan(
        prompt=f"a cat for {model}", n=1, size=size, quality=None, style=None
    )


def batch_sizes_observed(model: str) -> float:
    return REGISTRY.get_sample_value("easel_batch_size_count", {"model": model}) or 0.0


def test_names_on_one_source_load_it_once(
    catalog: Catalog, loads: list[str], tiny_sd: Path, other_sd: Path
) -> None:
    engine = make_engine(catalog)
    try:
        shared = engine.pipeline("share-a")
        assert engine.pipeline("share-b") is shared
        assert engine.pipeline("share-c") is not shared
    finally:
        asyncio.run(engine.shutdown())
    assert sorted(loads) == sorted([str(tiny_sd.resolve()), str(other_sd.resolve())])
    assert set(engine.pipelines) == {PipelineKey.of(str(tiny_sd)), PipelineKey.of(str(other_sd))}


def test_names_on_one_source_batch_together_and_others_stay_apart(
    catalog: Catalog, run: asyncio.AbstractEventLoop
) -> None:
    engine = make_engine(catalog)
    before = {name: batch_sizes_observed(name) for name in catalog.names()}
    plans = [
        plan(catalog, "share-a"),
        plan(catalog, "share-b", size="512x512"),
        plan(catalog, "share-c"),
    ]

    async def scenario() -> list[Generation]:
        return await asyncio.gather(*(engine.generate(p, seed=10 * i) for i, p in enumerate(plans)))

    try:
        a, b, c = run.run_until_complete(scenario())
    finally:
        run.run_until_complete(engine.shutdown())
    # `a` and `b` shared one call; each still got its own seed and its own size back.
    assert [image.batch_images for image in a.images + b.images] == [2, 2]
    assert [image.seed for image in a.images + b.images] == [0, 10]
    assert a.images[0].pixels.shape == (256, 256, 3) and b.images[0].pixels.shape == (512, 512, 3)
    assert engine.stats()["share-a"]["batch_sizes"] == {2: 1}
    assert engine.stats()["share-b"]["batch_sizes"] == {2: 1}
    # `c` has its own pipeline, queue and batch.
    assert c.images[0].batch_images == 1
    assert engine.stats()["share-c"]["batch_sizes"] == {1: 1}
    # The shared call counts once for each name it served.
    after = {name: batch_sizes_observed(name) for name in catalog.names()}
    assert {name: after[name] - before[name] for name in after} == {
        "share-a": 1,
        "share-b": 1,
        "share-c": 1,
    }


def test_states_load_times_and_queue_depth_stay_per_name(
    catalog: Catalog, run: asyncio.AbstractEventLoop
) -> None:
    engine = make_engine(catalog)

    def queue_depth(model: str) -> float | None:
        return REGISTRY.get_sample_value("easel_queue_depth", {"model": model})

    async def scenario() -> list[Generation]:
        waiting = [
            asyncio.ensure_future(engine.generate(p, seed=1))
            for p in (plan(catalog, "share-a"), plan(catalog, "share-a"), plan(catalog, "share-b"))
        ]
        await asyncio.sleep(0)  # every request is queued; the batcher has not started yet
        assert (queue_depth("share-a"), queue_depth("share-b")) == (2, 1)
        return await asyncio.gather(*waiting)

    try:
        run.run_until_complete(scenario())
    finally:
        run.run_until_complete(engine.shutdown())
    assert (queue_depth("share-a"), queue_depth("share-b")) == (0, 0)
    assert engine.states() == {
        "share-a": ModelState.READY,
        "share-b": ModelState.READY,
        "share-c": ModelState.LOADING,  # never asked for, never loaded
    }
    load_seconds = engine.load_seconds()
    assert set(load_seconds) == {"share-a", "share-b", "share-c"}
    assert load_seconds["share-a"] == load_seconds["share-b"] is not None
    assert load_seconds["share-c"] is None


def test_a_source_that_cannot_load_fails_every_name_on_it_by_its_own_name(
    tmp_path: Path, run: asyncio.AbstractEventLoop
) -> None:
    missing = tmp_path / "no-such-pipeline"
    catalog = Catalog(
        [
            ModelSpec(name="gone-x", source=str(missing)),
            ModelSpec(name="gone-y", source=str(missing)),
        ]
    )
    engine = make_engine(catalog)

    async def scenario() -> list[Generation | BaseException]:
        # Both queue before the load fails: each is failed by the batcher, naming its own model.
        return await asyncio.gather(
            *(engine.generate(plan(catalog, name), seed=1) for name in ("gone-x", "gone-y")),
            return_exceptions=True,
        )

    try:
        queued = run.run_until_complete(scenario())
        # Within the reload backoff, a new request is refused at once, still by its name.
        with pytest.raises(ServiceUnavailableError) as later:
            run.run_until_complete(engine.generate(plan(catalog, "gone-y"), seed=1))
        with pytest.raises(ServiceUnavailableError) as direct:
            engine.pipeline("gone-x")
    finally:
        run.run_until_complete(engine.shutdown())
    errors = [error for error in queued if isinstance(error, ServiceUnavailableError)]
    errors += [later.value, direct.value]
    assert len(errors) == 4 and all(error.status_code == 503 for error in errors)
    messages = [str(error) for error in errors]
    assert ["`gone-x`" in m for m in messages] == [True, False, False, True]
    assert ["`gone-y`" in m for m in messages] == [False, True, True, False]
    assert engine.states() == {"gone-x": ModelState.FAILED, "gone-y": ModelState.FAILED}


@pytest.mark.anyio
async def test_a_server_with_two_names_on_one_pipeline_answers_both(
    tiny_sd: Path, tmp_path: Path
) -> None:
    # Every built-in name (the GPT names too) on one pipeline: the server loads it once.
    catalog = Catalog.build(overrides=[f"{name}={tiny_sd}" for name in DEFAULT_MODELS])
    async with running_app(Settings(data_dir=tmp_path), catalog) as app:
        sdk = app.sdk()
        answers = await asyncio.gather(
            *(
                sdk.images.generate(model=model, prompt="a cat", size="1024x1024")
                for model in ("dall-e-2", "dall-e-3")
            )
        )
        engine = app.app.state.services.engine
        assert len(engine.pipelines) == 1
        # Readiness is reported per name, both ready from the one load.
        readiness = (await app.http.get("/readyz")).json()
        assert readiness["models"] == dict.fromkeys(DEFAULT_MODELS, "ready")
    for answer in answers:
        assert answer.data is not None and len(answer.data) == 1


def test_a_full_shared_queue_refuses_by_the_name_asked_for_and_says_who_shares_it(
    catalog: Catalog, run: asyncio.AbstractEventLoop
) -> None:
    engine = Engine(catalog, config=Settings(queue_images=1).scheduler_config())

    async def scenario() -> RateLimitError:
        first = asyncio.ensure_future(engine.generate(plan(catalog, "share-a"), seed=1))
        await asyncio.sleep(0)  # queued; its pipeline is still loading, so it is still waiting
        try:
            with pytest.raises(RateLimitError) as refused:
                await engine.generate(plan(catalog, "share-b"), seed=2)
        finally:
            first.cancel()
        return refused.value

    try:
        error = run.run_until_complete(scenario())
    finally:
        run.run_until_complete(engine.shutdown())
    assert error.status_code == 429 and error.code == "queue_full"
    assert "the queue for model `share-b` (shared with `share-a`: the same weights)" in str(error)
