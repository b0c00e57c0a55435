"""Generating images for a request: validate against the catalog, run the engine, encode, store."""

from __future__ import annotations

import asyncio
import base64
import time
from dataclasses import dataclass, replace
from typing import Any

from easel.api.auth import Caller
from easel.api.files import IMAGE_ROUTE
from easel.api.images.metering import Meter, Outcome, metered
from easel.api.images.protocol import (
    CreateImageRequest,
    ImageData,
    ImageJob,
    ImagesResponse,
    ImagesUsage,
)
from easel.api.state import AppServices
from easel.catalog.output import transparent_refusal
from easel.catalog.usage_tokens import generation_usage
from easel.encoding import encode_image_async, png_text
from easel.engine.types import Generation, PreviewRequest, failure_timing
from easel.limits.limiter import require_model
from easel.prompts.revise import revise_prompt
from easel.usage.store import Endpoint

# Names the cluster replica that made a response's images, for operators tracing a request.
REPLICA_HEADER = "x-easel-replica"


def validated(
    services: AppServices, body: dict[str, Any], caller: Caller, outcome: Outcome
) -> tuple[CreateImageRequest, ImageJob]:
    """The request and what it asks of its model, or the 4xx that refuses it."""
    request = CreateImageRequest.parse(body)
    spec = services.catalog.get(request.model_name)
    outcome.model = spec.name
    require_model(caller.key, spec.name)
    return request, request.resolve(spec)


@dataclass(frozen=True)
class Requester:
    """Who a job's images go to: the key, the end user its limits count, the URL base."""

    caller: Caller
    user: str | None
    base_url: str


async def serve_job(
    services: AppServices,
    job: ImageJob,
    requester: Requester,
    outcome: Outcome,
    endpoint: Endpoint,
) -> ImagesResponse:
    """Run a checked job within the key's limits, record its usage under `endpoint`, and answer
    with its images."""
    caller, base_url = requester.caller, requester.base_url
    await ready_to_deliver(services, job)
    async with metered(services, caller, requester.user, job.plan, outcome, endpoint) as meter:
        job = await with_revised_prompt(services, job)
        generation = await generate(services, caller, job, meter)
        data = await _deliver_all(services, job, generation, base_url, meter)
    response = ImagesResponse(created=int(time.time()), data=data)
    if job.reports_output:
        # What OpenAI's GPT image models report: the values used, `auto` resolved.
        response.background = job.output.background
        response.output_format = job.output.format
        response.size = job.plan.size
        response.quality = job.plan.quality
        if meter.usage is not None:
            response.usage = ImagesUsage.of(meter.usage)
    return response


async def generate(
    services: AppServices,
    caller: Caller,
    job: ImageJob,
    meter: Meter,
    previews: PreviewRequest | None = None,
) -> Generation:
    """The job's images from the engine, timed and (for GPT names) counted in tokens."""
    plan = job.plan
    try:
        generation = await services.engine.generate(plan, seed=job.seed, previews=previews)
    except (Exception, asyncio.CancelledError) as exc:  # a failure, or a client that left
        meter.timing = failure_timing(exc)
        raise
    meter.timing = generation.timing
    if generation.replica is not None:
        caller.response_headers[REPLICA_HEADER] = generation.replica
    if job.reports_output:
        meter.usage = generation_usage(plan, generation.text_tokens, len(generation.images))
    return generation


async def encode_files(services: AppServices, job: ImageJob, generation: Generation) -> list[bytes]:
    """Each image as a file in the job's output format (its background cut out where asked), its
    settings in the file."""
    output = job.output
    pixels = [image.pixels for image in generation.images]
    if services.matting is not None and output.background == "transparent":
        pixels = await services.matting.cut_out(pixels)
    return await asyncio.gather(
        *(
            encode_image_async(
                image_pixels, png_text(job.plan, image), output.format, output.compression
            )
            for image_pixels, image in zip(pixels, generation.images, strict=True)
        )
    )


async def _deliver_all(
    services: AppServices, job: ImageJob, generation: Generation, base_url: str, meter: Meter
) -> list[ImageData]:
    plan = job.plan
    with meter.encoding():
        files = await encode_files(services, job, generation)
        data = [
            await _deliver(
                services, file, job.response_format, base_url, plan.revised_prompt, image.seed
            )
            for file, image in zip(files, generation.images, strict=True)
        ]
    meter.delivered = len(data)
    return data


async def with_revised_prompt(services: AppServices, job: ImageJob) -> ImageJob:
    """The job with its prompt as the pipeline will read it: rewritten where the model's catalog
    entry asks for it (easel.prompts), else as it was."""
    spec = services.catalog.get(job.plan.model)
    return replace(job, plan=await revise_prompt(services.prompt_rewriter, spec, job.plan))


async def ready_to_deliver(services: AppServices, job: ImageJob) -> None:
    """What delivering the job's images needs besides the engine, ready before any image is made
    so that none is made that could not be delivered: for a transparent background the matting
    model loaded (or a 400 when it is switched off, a 503 when it cannot load)."""
    if job.output.background != "transparent":
        return
    if services.matting is None:
        raise transparent_refusal(job.output.format)
    await services.matting.ready()


async def _deliver(
    services: AppServices,
    file: bytes,
    response_format: str,
    base_url: str,
    revised_prompt: str | None,
    seed: int,
) -> ImageData:
    if response_format == "b64_json":
        b64 = base64.b64encode(file).decode("ascii")
        return ImageData(b64_json=b64, revised_prompt=revised_prompt, seed=seed)
    # Only dall-e family models answer with URLs, and they only make PNGs.
    image_id = await asyncio.to_thread(services.images.save, file)
    return ImageData(
        url=services.images.url(image_id, base_url + IMAGE_ROUTE),
        revised_prompt=revised_prompt,
        seed=seed,
    )
