"""`stream: true` on /v1/images/generations: OpenAI's server-sent events, partial images first.

Everything that can refuse the request (validation, the key's limits, admission) happens before
the stream starts, so refusals keep their JSON envelope and status. The generation then runs in
a task of its own, which the stream only reads from: a client that leaves cancels that task, and
its usage record and metrics are still written (a cancelled stream cannot await anything).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from easel.api.auth import Caller
from easel.api.errors import GENERIC_SERVER_ERROR
from easel.api.images.metering import CLIENT_CLOSED_REQUEST, Meter, Outcome, metered
from easel.api.images.protocol import CompletedEvent, ImageJob, ImagesUsage, PartialImageEvent
from easel.api.images.serving import (
    encode_files,
    generate,
    ready_to_deliver,
    validated,
    with_revised_prompt,
)
from easel.api.state import AppServices
from easel.catalog.usage_tokens import generation_usage
from easel.encoding import encode_image_async
from easel.engine.types import Generation, PreviewRequest
from easel.errors import EaselError, ServerError
from easel.usage.store import GENERATIONS

log = logging.getLogger(__name__)

# Producer tasks of streams whose client has gone, kept until they have written their records
# (the event loop holds tasks only weakly).
_finishing: set[asyncio.Task[None]] = set()


class ImageStream:
    """A streamed request's generation, running in its own task, and the events it queues."""

    def __init__(self, producer: asyncio.Task[None], events: asyncio.Queue[str | None]) -> None:
        self._producer = producer
        self._events = events

    async def events(self) -> AsyncIterator[str]:
        while (event := await self._events.get()) is not None:
            yield event

    def stop(self, outcome: Outcome) -> None:
        """The response is over: a generation still running lost its client. Synchronous, so it
        works from a cancelled response too."""
        if self._producer.done():
            return
        log.info("client disconnected; cancelling its streamed generation")
        outcome.status = CLIENT_CLOSED_REQUEST
        self._producer.cancel()
        _finishing.add(self._producer)
        self._producer.add_done_callback(_finishing.discard)


class EventStreamResponse(StreamingResponse):
    """Sends a stream's events; however the response ends (done, client gone before or during
    the events), the generation behind it is not left running for nobody."""

    def __init__(self, stream: ImageStream, outcome: Outcome) -> None:
        super().__init__(stream.events(), media_type="text/event-stream")
        self._stream = stream
        self._outcome = outcome

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._stream.stop(self._outcome)


async def open_stream(
    services: AppServices,
    body: dict[str, Any],
    caller: Caller,
    outcome: Outcome,
    exits: contextlib.AsyncExitStack,
) -> EventStreamResponse:
    """Validate and admit the request (raising its 4xx), start its generation, and return the
    response that streams its events. `exits` holds what must close when the request ends (its
    request counter); the generation takes it over."""
    request, job = validated(services, body, caller, outcome)
    await ready_to_deliver(services, job)
    meter = await exits.enter_async_context(
        metered(services, caller, request.end_user, job.plan, outcome, GENERATIONS)
    )
    events: asyncio.Queue[str | None] = asyncio.Queue()
    producer = asyncio.ensure_future(
        _produce(services, caller, job, meter, exits.pop_all(), events)
    )
    return EventStreamResponse(ImageStream(producer, events), outcome)


async def _produce(
    services: AppServices,
    caller: Caller,
    job: ImageJob,
    meter: Meter,
    exits: contextlib.AsyncExitStack,
    events: asyncio.Queue[str | None],
) -> None:
    """Generate, queueing each partial image's event as it is encoded, then the completed events
    once the usage record is stored; or an error event."""
    try:
        async with exits:
            job = await with_revised_prompt(services, job)
            completed = await _generate(services, caller, job, meter, events)
        for event in completed:
            events.put_nowait(event)
    except EaselError as exc:
        events.put_nowait(_error_event(exc))
    except Exception:  # the client sees OpenAI's generic 500, the log the details
        log.exception("streamed generation failed")
        events.put_nowait(_error_event(ServerError(GENERIC_SERVER_ERROR)))
    finally:
        events.put_nowait(None)


async def _generate(
    services: AppServices,
    caller: Caller,
    job: ImageJob,
    meter: Meter,
    events: asyncio.Queue[str | None],
) -> list[str]:
    """The job's completed events, its partial images queued on `events` on the way."""
    previews: asyncio.Queue[tuple[int, np.ndarray] | None] = asyncio.Queue()
    loop = asyncio.get_running_loop()

    def deliver(index: int, pixels: np.ndarray) -> None:  # on the pipeline's thread
        loop.call_soon_threadsafe(previews.put_nowait, (index, pixels))

    request = PreviewRequest(job.partial_images, deliver) if job.partial_images else None
    encoder = asyncio.ensure_future(_encode_previews(job, previews, events))
    try:
        generation = await generate(services, caller, job, meter, request)
        # Partial images the pipeline made are all queued by now: send them before the image.
        previews.put_nowait(None)
        await encoder
    finally:
        encoder.cancel()
    with meter.encoding():
        files = await encode_files(services, job, generation)
    meter.delivered = len(files)
    return [
        _completed_event(job, file, usage)
        for file, usage in zip(files, _usage_per_image(job, generation), strict=True)
    ]


async def _encode_previews(
    job: ImageJob,
    previews: asyncio.Queue[tuple[int, np.ndarray] | None],
    events: asyncio.Queue[str | None],
) -> None:
    output = job.output
    while (preview := await previews.get()) is not None:
        index, pixels = preview
        file = await encode_image_async(pixels, {}, output.format, output.compression)
        events.put_nowait(_sse(PartialImageEvent(**_fields(job, file), partial_image_index=index)))


def _usage_per_image(job: ImageJob, generation: Generation) -> list[ImagesUsage]:
    """Each image's share of the request's usage: its own output tokens, and the prompt's tokens
    on the first, so a gateway summing the events bills the request once."""
    plan = job.plan
    return [
        ImagesUsage.of(
            generation_usage(
                plan.quality,
                plan.width,
                plan.height,
                generation.text_tokens if index == 0 else 0,
                1,
            )
        )
        for index in range(len(generation.images))
    ]


def _completed_event(job: ImageJob, file: bytes, usage: ImagesUsage) -> str:
    return _sse(CompletedEvent(**_fields(job, file), usage=usage))


def _fields(job: ImageJob, file: bytes) -> dict[str, Any]:
    """The fields every event carries: the image, and the settings used (`auto` resolved), as
    the JSON response reports them."""
    return {
        "b64_json": base64.b64encode(file).decode("ascii"),
        "created_at": int(time.time()),
        "size": job.plan.size,
        "quality": job.plan.quality,
        "background": job.output.background,
        "output_format": job.output.format,
    }


def _error_event(error: EaselError) -> str:
    return _event("error", {"type": "error", **error.envelope()})


def _sse(event: PartialImageEvent | CompletedEvent) -> str:
    # pydantic-core writes the megabytes of base64 far faster than json.dumps.
    return f"event: {event.type}\ndata: {event.model_dump_json()}\n\n"


def _event(name: str, data: dict[str, Any]) -> str:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n"
