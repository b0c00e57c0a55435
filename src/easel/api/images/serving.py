"""Generating images for a request: validate against the catalog, run the engine, encode, store."""

from __future__ import annotations

import asyncio
import base64
import time
from dataclasses import replace
from typing import Any

from easel.api.auth import Caller
from easel.api.files import IMAGE_ROUTE
from easel.api.images.metering import Meter, Outcome, metered
from easel.api.images.protocol import CreateImageRequest, ImageData, ImageJob, ImagesResponse
from easel.api.state import AppServices
from easel.encoding import encode_image_async, png_text
from easel.limits.limiter import require_model
from easel.prompts.revise import revise_prompt

# Names the cluster replica that made a response's images, for operators tracing a request.
REPLICA_HEADER = "x-easel-replica"


async def create_images(
    services: AppServices, body: dict[str, Any], base_url: str, caller: Caller, outcome: Outcome
) -> ImagesResponse:
    request = CreateImageRequest.parse(body)
    spec = services.catalog.get(request.model_name)
    outcome.model = spec.name
    require_model(caller.key, spec.name)
    job = request.resolve(spec)
    async with metered(services, caller, request.end_user, job.plan, outcome) as meter:
        job = replace(job, plan=await revise_prompt(services.prompt_rewriter, spec, job.plan))
        data = await _generate(services, caller, job, base_url, meter)
    response = ImagesResponse(created=int(time.time()), data=data)
    if spec.is_gpt_image:
        # What OpenAI's GPT image models report: the values used, `auto` resolved.
        response.background = job.output.background
        response.output_format = job.output.format
        response.size = job.plan.size
        response.quality = job.plan.quality
    return response


async def _generate(
    services: AppServices, caller: Caller, job: ImageJob, base_url: str, meter: Meter
) -> list[ImageData]:
    plan = job.plan
    generation = await services.engine.generate(plan, seed=job.seed)
    meter.timing = generation.timing
    if generation.replica is not None:
        caller.response_headers[REPLICA_HEADER] = generation.replica
    images = generation.images
    output = job.output
    with meter.encoding():
        files = await asyncio.gather(
            *(
                encode_image_async(
                    image.pixels, png_text(plan, image), output.format, output.compression
                )
                for image in images
            )
        )
        data = [
            await _deliver(
                services, file, job.response_format, base_url, plan.revised_prompt, image.seed
            )
            for file, image in zip(files, images, strict=True)
        ]
    meter.delivered = len(data)
    return data


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
