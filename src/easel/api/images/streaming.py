"""`stream: true` on /v1/images/generations and /v1/images/edits: OpenAI's server-sent events,
partial images first, named by the endpoint (`image_generation.*`, `image_edit.*`).

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
from typing import Any, Literal

import numpy as np
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from easel.api.auth import Caller
from easel.api.errors import GENERIC_SERVER_ERROR
from easel.api.images.metering import CLIENT_CLOSED_REQUEST, Meter, Outcome, metered
from easel.api.images.protocol import CompletedEvent, ImageJob, ImagesUsage, PartialImageEvent
from easel.api.images.serving import (
    Requester,
    encode_files,
    generate,
    ready_to_deliver,
    with_revised_prompt,
)
from easel.api.state import AppServices
from easel.catalog.usage_tokens import generation_usage, usage_per_image
from easel.encoding import encode_image_async
from easel.engine.types import Generation, PreviewRequest
from easel.errors import EaselError, ServerError

log = logging.getLogger(__name__)

# The endpoints OpenAI streams (not variations), and the prefix of their events' names.
StreamedEndpoint = Literal["generations", "edits"]
_EVENT_PREFIXES: dict[StreamedEndpoint, str] = {
    "generations": "image_generation",
    "edits": "image_edit",
}

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
    job: ImageJob,
    requester: Requester,
    outcome: Outcome,
    endpoint: StreamedEndpoint,
    exits: contextlib.AsyncExitStack,
) -> EventStreamResponse:
    """Admit a checked job within the key's limits (raising their 4xx), start its generation,
    and return the response that streams its events; its usage is recorded under `endpoint`.
    `exits` holds what must close when the request ends (its request counter); the generation
    takes it over."""
    await ready_to_deliver(services, job)
    meter = await exits.enter_async_context(
        metered(services, requester.caller, requester.user, job.plan, outcome, endpoint)
    )
    stream = _JobStream(services, job, requester.caller, meter, _EVENT_PREFIXES[endpoint])
    producer = asyncio.ensure_future(stream.produce(exits.pop_all()))
    return EventStreamResponse(ImageStream(producer, stream.events), outcome)


class _JobStream:
    """A checked job's generation as the events of one stream, queued on `events` as they come."""

    def __init__(
        self,
        services: AppServices,
        job: ImageJob,
        caller: Caller,
        meter: Meter,
        event_prefix: str,
    ) -> None:
        self._services = services
        self._job = job
        self._caller = caller
        self._meter = meter
        self._event_prefix = event_prefix
        self.events: asyncio.Queue[str | None] = asyncio.Queue()

    async def produce(self, exits: contextlib.AsyncExitStack) -> None:
        """Generate, queueing each partial image's event as it is encoded, then the completed
        events once the usage record is stored (when `exits` closes); or an error event."""
        try:
            async with exits:
                self._job = await with_revised_prompt(self._services, self._job)
                completed = await self._generate()
            for event in completed:
                self.events.put_nowait(event)
        except EaselError as exc:
            self.events.put_nowait(_error_event(exc))
        except Exception:  # the client sees OpenAI's generic 500, the log the details
            log.exception("streamed generation failed")
            self.events.put_nowait(_error_event(ServerError(GENERIC_SERVER_ERROR)))
        finally:
            self.events.put_nowait(None)

    async def _generate(self) -> list[str]:
        """The job's completed events, its partial images queued on the way."""
        job, meter = self._job, self._meter
        previews: asyncio.Queue[tuple[int, np.ndarray] | None] = asyncio.Queue()
        loop = asyncio.get_running_loop()

        def deliver(index: int, pixels: np.ndarray) -> None:  # on the pipeline's thread
            loop.call_soon_threadsafe(previews.put_nowait, (index, pixels))

        request = PreviewRequest(job.partial_images, deliver) if job.partial_images else None
        encoder = asyncio.ensure_future(self._encode_previews(previews))
        try:
            generation = await generate(self._services, self._caller, job, meter, request)
            # Partial images the pipeline made are all queued by now: send them before the image.
            previews.put_nowait(None)
            await encoder
        finally:
            encoder.cancel()
        with meter.encoding():
            files = await encode_files(self._services, job, generation)
        meter.delivered = len(files)
        return [
            _sse(CompletedEvent(**self._fields("completed", file), usage=usage))
            for file, usage in zip(files, _usage_per_image(job, generation), strict=True)
        ]

    async def _encode_previews(
        self, previews: asyncio.Queue[tuple[int, np.ndarray] | None]
    ) -> None:
        output, plan = self._job.output, self._job.plan
        while (preview := await previews.get()) is not None:
            index, pixels = preview
            file = await encode_image_async(
                pixels, {}, output.format, output.compression, size=(plan.width, plan.height)
            )
            event = PartialImageEvent(
                **self._fields("partial_image", file), partial_image_index=index
            )
            self.events.put_nowait(_sse(event))

    def _fields(self, kind: str, file: bytes) -> dict[str, Any]:
        """The fields every event carries: its name, the image, and the settings used (`auto`
        resolved), as the JSON response reports them."""
        job = self._job
        return {
            "type": f"{self._event_prefix}.{kind}",
            "b64_json": base64.b64encode(file).decode("ascii"),
            "created_at": int(time.time()),
            "size": job.plan.size,
            "quality": job.plan.quality,
            "background": job.output.background,
            "output_format": job.output.format,
        }


def _usage_per_image(job: ImageJob, generation: Generation) -> list[ImagesUsage]:
    """Each image's share of the usage the JSON response reports."""
    images = len(generation.images)
    usage = generation_usage(job.plan, generation.text_tokens, images)
    return [ImagesUsage.of(share) for share in usage_per_image(usage, images)]


def _error_event(error: EaselError) -> str:
    return _event("error", {"type": "error", **error.envelope()})


def _sse(event: PartialImageEvent | CompletedEvent) -> str:
    # pydantic-core writes the megabytes of base64 far faster than json.dumps.
    return f"event: {event.type}\ndata: {event.model_dump_json()}\n\n"


def _event(name: str, data: dict[str, Any]) -> str:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n"
