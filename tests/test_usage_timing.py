"""A failed request's usage record keeps where its time went until it failed: the wait and the
generating of a 504 past its deadline or a 500 from a pipeline fault are not recorded as 0 ms.
In process, through the official SDK, with the usage table read back."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import openai
import pytest

from easel.api.state import AppServices
from easel.catalog import Catalog, ModelSpec
from easel.catalog.spec import QualityPreset
from easel.engine.engine import Engine
from easel.settings import Settings
from easel.usage.store import UsageRecord
from tests.inprocess import InProcessApp, running_app

pytestmark = pytest.mark.anyio

MODEL = "dall-e-2"
SIZE = "256x256"
DEADLINE_SECONDS = 0.5


@pytest.fixture
async def app(anyio_backend: str, tmp_path: Path, tiny_sd: Path) -> AsyncIterator[InProcessApp]:
    # Enough steps that the tiny pipeline runs well past the deadline.
    spec = ModelSpec(
        name=MODEL,
        source=str(tiny_sd),
        sizes=(SIZE,),
        default_size=SIZE,
        qualities={"standard": QualityPreset(steps=500, guidance_scale=1.0)},
    )
    settings = Settings(data_dir=tmp_path, deadline_seconds=DEADLINE_SECONDS)
    async with running_app(settings, Catalog([spec])) as running:
        services: AppServices = running.app.state.services
        assert isinstance(services.engine, Engine)
        # Loaded before the request: its time goes to generating, not to waiting for the load.
        await asyncio.to_thread(services.engine.pipeline, MODEL)
        yield running


def last_usage(app: InProcessApp) -> UsageRecord:
    services: AppServices = app.app.state.services
    key = services.keys.find(app.api_key)
    assert key is not None
    return services.usage.records(key.id)[-1]


async def test_a_request_past_its_deadline_records_its_time_until_then(app: InProcessApp) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        await app.sdk().images.generate(model=MODEL, prompt="a lighthouse at dawn")
    assert caught.value.status_code == 504
    record = last_usage(app)
    assert (record.status, record.images_delivered) == (504, 0)
    # The whole deadline went to waiting and generating, most of it to generating.
    assert record.queued_ms + record.generating_ms >= DEADLINE_SECONDS * 1000 * 0.9
    assert record.generating_ms >= DEADLINE_SECONDS * 1000 / 2


async def test_a_pipeline_fault_records_the_time_until_the_fault(
    app: InProcessApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A pipeline fault cannot be caused from a request on purpose: the batch runner is replaced by
    # one that works a while, then raises.
    def faulty_batch(*_args: Any) -> None:
        time.sleep(0.3)
        raise RuntimeError("injected pipeline fault")

    monkeypatch.setattr("easel.engine.scheduler.run_batch", faulty_batch)
    with pytest.raises(openai.InternalServerError):
        await app.sdk().images.generate(model=MODEL, prompt="a lighthouse at dawn")
    record = last_usage(app)
    assert (record.status, record.images_delivered) == (500, 0)
    assert record.generating_ms >= 300
