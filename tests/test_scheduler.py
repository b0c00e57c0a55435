"""The engine's queue and batcher, in-process on a real tiny pipeline: coalescing, fairness,
cancellation, deadlines, backpressure and the out-of-memory split."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from easel.api.context import RequestIdLogFilter
from easel.catalog import Catalog, GenerationPlan
from easel.engine.engine import Engine
from easel.engine.faults import OOM_ENV
from easel.engine.jobs import Job, Part, split_parts
from easel.engine.scheduler import BatchFailed
from easel.engine.types import GeneratedImage, Generation
from easel.errors import DeadlineExceededError, RateLimitError, ServerError
from easel.observability.logs import request_id_var
from easel.settings import Settings


@pytest.fixture(scope="module")
def catalog(tiny_sd: Path, tmp_path_factory: pytest.TempPathFactory) -> Catalog:
    config = tmp_path_factory.mktemp("scheduler") / "models.yaml"
    # `slow` runs long enough (hundreds of steps) for cancellation to land mid-batch.
    config.write_text(
        "models:\n"
        "  slow:\n"
        f"    source: {tiny_sd}\n"
        "    sizes: [256x256]\n"
        "    default_size: 256x256\n"
        "    qualities: {standard: {steps: 400, guidance_scale: 0}}\n"
    )
    return Catalog.build(config, [f"dall-e-2={tiny_sd}", f"dall-e-3={tiny_sd}"])


def make_engine(catalog: Catalog, **settings: Any) -> Engine:
    """An engine with the server's default limits, but for these settings."""
    return Engine(catalog, config=Settings(**settings).scheduler_config())


def plan(catalog: Catalog, model: str = "dall-e-2", **fields: Any) -> GenerationPlan:
    values: dict[str, Any] = {
        "prompt": "a cat",
        "n": None,
        "size": "256x256",
        "quality": None,
        "style": None,
    }
    values.update(fields)
    return catalog.get(model).plan(**values)


@pytest.fixture
def run() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


async def eventually(condition: Callable[[], bool]) -> None:
    """Wait until `condition()` holds: the scheduler's counters have no event to wait on."""
    while True:
        if condition():
            return
        await asyncio.sleep(0.01)


def seeds(images: list[GeneratedImage]) -> list[int]:
    return [image.seed for image in images]


def run_together(
    run: asyncio.AbstractEventLoop, engine: Engine, plans: list[GenerationPlan], seed_step: int
) -> list[list[GeneratedImage]]:
    """Every plan at once (all are queued before the batcher first runs); request i is seeded with
    i * seed_step. Shuts the engine down afterwards."""

    async def scenario() -> list[list[GeneratedImage]]:
        generations = await asyncio.gather(
            *(engine.generate(p, seed=seed_step * i) for i, p in enumerate(plans))
        )
        return [generation.images for generation in generations]

    try:
        return run.run_until_complete(scenario())
    finally:
        run.run_until_complete(engine.shutdown())


def test_compatible_requests_share_one_pipeline_call(
    catalog: Catalog, run: asyncio.AbstractEventLoop
) -> None:
    engine = make_engine(catalog)
    plans = [
        plan(catalog, prompt="one", n=2, size="256x256"),
        plan(catalog, prompt="two", n=1, size="512x512"),
        plan(catalog, prompt="three", n=3, size="1024x1024"),
    ]
    results = run_together(run, engine, plans, seed_step=100)
    assert [len(images) for images in results] == [2, 1, 3]
    assert seeds(results[0]) == [0, 1] and seeds(results[1]) == [100]
    assert seeds(results[2]) == [200, 201, 202]
    sizes = [{image.pixels.shape for image in images} for images in results]
    assert sizes == [{(256, 256, 3)}, {(512, 512, 3)}, {(1024, 1024, 3)}]
    assert {image.batch_images for images in results for image in images} == {6}
    assert engine.stats()["dall-e-2"]["batch_sizes"] == {6: 1}


def test_budget_and_incompatible_requests_make_separate_batches(
    catalog: Catalog, run: asyncio.AbstractEventLoop
) -> None:
    engine = make_engine(catalog, batch_images=3)
    plans = [
        plan(catalog, prompt="big", n=5),  # more than a batch: split over two batches
        plan(catalog, prompt="small", n=1),
    ]
    results = run_together(run, engine, plans, seed_step=10)
    assert seeds(results[0]) == [0, 1, 2, 3, 4]
    assert seeds(results[1]) == [10]
    # 3 images of the oldest request first; then its last 2 with the second request (3 in all).
    assert engine.stats()["dall-e-2"]["batch_sizes"] == {3: 2}


@pytest.mark.slow
def test_batches_follow_the_sizer_and_fixed_size_fills_them(
    catalog: Catalog, run: asyncio.AbstractEventLoop
) -> None:
    plans = [plan(catalog, prompt=f"p{i}", n=1) for i in range(16)]
    engine = make_engine(catalog, batch_images=4)
    run_together(run, engine, plans, seed_step=1)
    stats = engine.stats()["dall-e-2"]
    # Three full batches measure the budget of 4; then the sizer measures half of it, whatever
    # this machine's speed, so the last 4 images run in 2 + 2.
    assert stats["batch_sizes"] == {4: 3, 2: 2}
    (limits,) = stats["batch_limits"].values()
    assert set(limits["images_per_second"]) == {2, 4}

    fixed = make_engine(catalog, batch_images=4, adaptive_batch_size=False)
    run_together(run, fixed, plans, seed_step=1)
    assert fixed.stats()["dall-e-2"]["batch_sizes"] == {4: 4}


@pytest.mark.slow
def test_oldest_request_goes_first_between_classes(
    catalog: Catalog, run: asyncio.AbstractEventLoop
) -> None:
    engine = make_engine(catalog, batch_images=2)
    order: list[str] = []
    plans = [
        ("a", plan(catalog, prompt="a", n=2)),
        ("b", plan(catalog, "dall-e-2", prompt="b", n=1, size="256x256")),
        ("c", plan(catalog, prompt="c", n=2)),
    ]
    # Make "b" a different class: another guidance scale.
    plans[1] = ("b", dataclasses.replace(plans[1][1], guidance_scale=3.0))

    async def one(name: str, p: GenerationPlan) -> None:
        await engine.generate(p, seed=1)
        order.append(name)

    async def scenario() -> None:
        await asyncio.gather(*(one(name, p) for name, p in plans))

    try:
        run.run_until_complete(scenario())
    finally:
        run.run_until_complete(engine.shutdown())
    # "c" is compatible with "a" but the batch is full; "b" waited longer than "c" and goes next.
    assert order == ["a", "b", "c"]


def test_queued_request_of_a_gone_client_is_removed_and_abandoned_batch_stops(
    catalog: Catalog, run: asyncio.AbstractEventLoop
) -> None:
    engine = make_engine(catalog, batch_images=1)
    slow = plan(catalog, "slow")

    async def scenario() -> None:
        running = asyncio.ensure_future(engine.generate(slow, seed=1))
        queued = asyncio.ensure_future(engine.generate(slow, seed=2))
        scheduler = engine.workers["slow"].scheduler
        await eventually(lambda: scheduler.queued_images == 1)  # one running, the other waiting
        queued.cancel()
        await asyncio.sleep(0.5)  # let the batch get under way before its last client leaves
        running.cancel()
        await eventually(lambda: scheduler.stats.abandoned_batches > 0)

    try:
        run.run_until_complete(scenario())
        stats = engine.stats()["slow"]
    finally:
        run.run_until_complete(engine.shutdown())
    assert stats["removed_from_queue"] == 1
    assert stats["abandoned_batches"] == 1
    assert stats["batches"] == 0  # the running batch never completed its 400 steps


def test_deadline_ends_the_request_with_an_envelope(
    catalog: Catalog, run: asyncio.AbstractEventLoop
) -> None:
    engine = make_engine(catalog, deadline_seconds=0.5)
    try:
        with pytest.raises(DeadlineExceededError) as excinfo:
            run.run_until_complete(engine.generate(plan(catalog, "slow"), seed=1))
        assert excinfo.value.status_code == 504 and excinfo.value.code == "deadline_exceeded"
        # The engine keeps serving.
        images = run.run_until_complete(
            engine.generate(plan(catalog), seed=3, deadline_seconds=300)
        ).images
    finally:
        run.run_until_complete(engine.shutdown())
    assert seeds(images) == [3]


def test_full_queue_is_429_with_retry_after(
    catalog: Catalog, run: asyncio.AbstractEventLoop
) -> None:
    engine = make_engine(catalog, queue_images=3, batch_images=1)

    async def scenario() -> list[object]:
        scheduler = engine.workers["slow"].scheduler
        first = asyncio.ensure_future(engine.generate(plan(catalog, "slow"), seed=1))
        await asyncio.sleep(0)
        await eventually(lambda: not scheduler.queued_images)  # until the first request runs
        waiting = [
            asyncio.ensure_future(engine.generate(plan(catalog, "slow"), seed=s)) for s in (2, 3, 4)
        ]
        await asyncio.sleep(0)
        assert scheduler.queued_images == 3
        over = engine.generate(plan(catalog, "slow"), seed=5)
        results: list[object] = []
        try:
            await over
        except RateLimitError as exc:
            results.append(exc)
        for task in [first, *waiting]:
            task.cancel()
        await asyncio.gather(first, *waiting, return_exceptions=True)
        return results

    try:
        (error,) = run.run_until_complete(scenario())
    finally:
        run.run_until_complete(engine.shutdown())
    assert isinstance(error, RateLimitError)
    assert error.status_code == 429 and error.code == "queue_full"
    assert int(error.headers["Retry-After"]) >= 1


def test_out_of_memory_splits_the_batch(
    catalog: Catalog, run: asyncio.AbstractEventLoop, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Fault injection: a CPU cannot run out of accelerator memory, so the test-only hook raises
    # torch.OutOfMemoryError for any call of 3 or more 256x256 images.
    monkeypatch.setenv(OOM_ENV, str(3 * 256 * 256))
    engine = make_engine(catalog)
    plans = [plan(catalog, prompt="x", n=3), plan(catalog, prompt="y", n=2)]
    results = run_together(run, engine, plans, seed_step=10)
    assert seeds(results[0]) == [0, 1, 2] and seeds(results[1]) == [10, 11]
    stats = engine.stats()["dall-e-2"]
    # 5 -> 2 + 3, then 3 -> 1 + 2: two splits, three calls that fit.
    assert stats["oom_splits"] == 2
    assert stats["batch_sizes"] == {1: 1, 2: 2}


@pytest.mark.slow
def test_out_of_memory_keeps_later_batches_below_the_size_that_failed(
    catalog: Catalog, run: asyncio.AbstractEventLoop, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Fault injection as above: 3 or more 256x256 images are "out of memory".
    monkeypatch.setenv(OOM_ENV, str(3 * 256 * 256))
    engine = make_engine(catalog, batch_images=4)

    async def scenario() -> None:
        await engine.generate(plan(catalog, prompt="x", n=3), seed=1)
        await asyncio.gather(
            *(engine.generate(plan(catalog, prompt=f"p{i}"), seed=i) for i in range(6))
        )

    try:
        run.run_until_complete(scenario())
    finally:
        run.run_until_complete(engine.shutdown())
    stats = engine.stats()["dall-e-2"]
    # Only the first batch (3 images) was split; the six later images never again ran 3 at once.
    assert stats["oom_splits"] == 1
    assert max(stats["batch_sizes"]) == 2
    assert sum(size * count for size, count in stats["batch_sizes"].items()) == 9


def test_single_image_that_does_not_fit_fails_alone(
    catalog: Catalog, run: asyncio.AbstractEventLoop, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Fault injection (test-only hook): anything from one 256x256 image up is "out of memory".
    monkeypatch.setenv(OOM_ENV, str(256 * 256))
    engine = make_engine(catalog)
    try:
        with pytest.raises(ServerError) as excinfo:
            run.run_until_complete(engine.generate(plan(catalog), seed=1))
        assert excinfo.value.code == "out_of_memory"
        assert excinfo.value.headers["x-should-retry"] == "false"
        monkeypatch.delenv(OOM_ENV)
        images = run.run_until_complete(engine.generate(plan(catalog), seed=2)).images
    finally:
        run.run_until_complete(engine.shutdown())
    assert seeds(images) == [2]


def test_split_parts_cuts_a_job_at_the_middle(catalog: Catalog) -> None:
    loop = asyncio.new_event_loop()
    try:
        job_a = Job(plan=plan(catalog, n=3), seed=0, future=loop.create_future())
        job_b = Job(plan=plan(catalog, n=2), seed=0, future=loop.create_future())
    finally:
        loop.close()
    left, right = split_parts([Part(job_a, 0, 3), Part(job_b, 0, 2)])
    assert left == [Part(job_a, 0, 2)]
    assert right == [Part(job_a, 2, 1), Part(job_b, 0, 2)]


def test_a_request_the_pipeline_cannot_run_fails_alone(
    catalog: Catalog, run: asyncio.AbstractEventLoop
) -> None:
    # A lone surrogate is not encodable: the real tokenizer raises on it, failing its batch.
    engine = make_engine(catalog)
    plans = [plan(catalog, prompt=f"honest {i}") for i in range(3)]
    plans.insert(1, plan(catalog, prompt="bad \ud800"))

    async def scenario() -> list[Generation | BaseException]:
        return await asyncio.gather(
            *(engine.generate(p, seed=10 * i) for i, p in enumerate(plans)),
            return_exceptions=True,
        )

    try:
        results = run.run_until_complete(scenario())
    finally:
        run.run_until_complete(engine.shutdown())
    assert isinstance(results.pop(1), BatchFailed)
    assert [seeds(done.images) for done in results if isinstance(done, Generation)] == [
        [0],
        [20],
        [30],
    ]
    stats = engine.stats()["dall-e-2"]
    # The shared batch of 4 failed; apart, three requests ran and the bad one failed alone.
    assert stats["failed_batches"] == 2
    assert stats["batch_sizes"] == {1: 3}


def test_each_batch_logs_the_ids_of_its_requests(
    catalog: Catalog, run: asyncio.AbstractEventLoop, caplog: pytest.LogCaptureFixture
) -> None:
    engine = make_engine(catalog)
    caplog.handler.addFilter(RequestIdLogFilter())
    caplog.set_level(logging.DEBUG, logger="easel.engine.scheduler")

    async def one(request_id: str) -> None:
        request_id_var.set(request_id)  # as the middleware does, in the request's own task
        await engine.generate(plan(catalog, prompt=request_id), seed=1)

    async def scenario() -> None:
        # The first request starts the batcher; the second round's batch must not carry its id.
        await asyncio.gather(one("req_a1"), one("req_a2"))
        await asyncio.gather(one("req_b1"), one("req_b2"), one("req_b3"))

    try:
        run.run_until_complete(scenario())
    finally:
        run.run_until_complete(engine.shutdown())
    batch_lines = [r for r in caplog.records if r.getMessage().startswith("dall-e-2: ran a batch")]
    named = [getattr(record, "request_id", None) for record in batch_lines]
    assert named == ["req_a1,req_a2", "req_b1,req_b2,req_b3"]
