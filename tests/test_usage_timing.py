"""A failed request's usage record keeps where its time went until it failed: the wait and the
generating of a 504 past its deadline, a 500 from a pipeline fault or a 499 for a client that
left are not recorded as 0 ms. In process, through the official SDK (or, for a client that
leaves, the ASGI messages a server sends the app), with the usage table read back."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import openai
import pytest
from starlette.types import Message, Scope

from easel.api.state import AppServices
from easel.catalog import Catalog, ModelSpec
from easel.catalog.spec import QualityPreset
from easel.engine.engine import Engine
from easel.settings import Settings
from easel.usage.store import UsageRecord
from tests.inprocess import InProcessApp, running_app

pytestmark = pytest.mark.anyio

MODEL = "dall-e-2"
STREAMED = "gpt-slow"
SIZE = "256x256"
DEADLINE_SECONDS = 0.5
LEAVE_AFTER_SECONDS = 0.5


@contextlib.asynccontextmanager
async def serving_a_slow_model(settings: Settings, tiny_sd: Path) -> AsyncIterator[InProcessApp]:
    """The app with MODEL and STREAMED (a GPT name, which streams) on the tiny SD pipeline, with
    enough steps that it runs well past the deadline and a client's patience."""
    slow = QualityPreset(steps=500, guidance_scale=1.0)
    specs = [
        ModelSpec(
            name=MODEL,
            source=str(tiny_sd),
            sizes=(SIZE,),
            default_size=SIZE,
            qualities={"standard": slow},
        ),
        ModelSpec(
            name=STREAMED,
            family="gpt-image",
            source=str(tiny_sd),
            qualities={"low": slow},
            default_quality="low",
        ),
    ]
    async with running_app(settings, Catalog(specs)) as running:
        services: AppServices = running.app.state.services
        assert isinstance(services.engine, Engine)
        # Loaded before the request: its time goes to generating, not to waiting for the load.
        await asyncio.to_thread(services.engine.pipeline, MODEL)
        yield running


@pytest.fixture
async def app(anyio_backend: str, tmp_path: Path, tiny_sd: Path) -> AsyncIterator[InProcessApp]:
    settings = Settings(data_dir=tmp_path, deadline_seconds=DEADLINE_SECONDS)
    async with serving_a_slow_model(settings, tiny_sd) as running:
        yield running


@pytest.fixture
async def patient_app(
    anyio_backend: str, tmp_path: Path, tiny_sd: Path
) -> AsyncIterator[InProcessApp]:
    """The same app without a deadline: only the client ends a request."""
    settings = Settings(data_dir=tmp_path, deadline_seconds=0)
    async with serving_a_slow_model(settings, tiny_sd) as running:
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


async def post_then_leave(
    app: InProcessApp,
    body: dict[str, Any],
    leaves: asyncio.Event,
    on_send: Callable[[Message], None] = lambda _message: None,
) -> None:
    """POST `body` to /v1/images/generations as a client that closes the connection once
    `leaves` is set, as an ASGI server reports it: the app's next `receive` is the disconnect.
    httpx's ASGI transport reports a disconnect only after the response, so the app is called
    directly. `on_send` sees each message the app sends."""
    payload = json.dumps(body).encode()
    scope: Scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/images/generations",
        "raw_path": b"/v1/images/generations",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"easel.test"),
            (b"authorization", f"Bearer {app.api_key}".encode()),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(payload)).encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("easel.test", 80),
    }
    body_received = False

    async def receive() -> Message:
        nonlocal body_received
        if not body_received:
            body_received = True
            return {"type": "http.request", "body": payload, "more_body": False}
        await leaves.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        on_send(message)

    await app.app(scope, receive, send)


async def usage_once_recorded(app: InProcessApp, status: int) -> UsageRecord:
    """The last usage record, once one with `status` is written (a stream's after it ends)."""
    services: AppServices = app.app.state.services
    key = services.keys.find(app.api_key)
    assert key is not None
    for _ in range(300):
        records = services.usage.records(key.id)
        if records and records[-1].status == status:
            return records[-1]
        await asyncio.sleep(0.1)
    raise AssertionError(f"no usage record with status {status}")


def assert_time_until_it_left(record: UsageRecord, left_after: float, waited: float) -> None:
    """It was generating, alone on a loaded pipeline, from soon after it came until it left."""
    assert (record.status, record.images_delivered) == (499, 0)
    assert left_after * 1000 * 0.9 <= record.queued_ms + record.generating_ms <= waited * 1000
    assert record.generating_ms >= left_after * 1000 / 2


async def test_a_client_that_leaves_records_its_time_until_it_left(
    patient_app: InProcessApp,
) -> None:
    leaves = asyncio.Event()
    started = time.monotonic()
    asyncio.get_running_loop().call_later(LEAVE_AFTER_SECONDS, leaves.set)
    await post_then_leave(patient_app, {"model": MODEL, "prompt": "a lighthouse"}, leaves)
    record = await usage_once_recorded(patient_app, 499)
    assert_time_until_it_left(record, LEAVE_AFTER_SECONDS, time.monotonic() - started)


async def test_a_streamed_client_that_leaves_records_its_time_until_it_left(
    patient_app: InProcessApp,
) -> None:
    leaves = asyncio.Event()
    started = time.monotonic()
    left_after = 0.0

    def leave_on_the_first_partial_image(message: Message) -> None:
        nonlocal left_after
        if b"partial_image" in message.get("body", b"") and not leaves.is_set():
            left_after = time.monotonic() - started
            leaves.set()

    body = {"model": STREAMED, "prompt": "a lighthouse", "stream": True, "partial_images": 3}
    await post_then_leave(patient_app, body, leaves, leave_on_the_first_partial_image)
    assert leaves.is_set()
    record = await usage_once_recorded(patient_app, 499)
    assert_time_until_it_left(record, left_after, time.monotonic() - started)
