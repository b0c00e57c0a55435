"""Generating images for a request: validate against the catalog, run the engine, encode, store."""

from __future__ import annotations

import asyncio
import base64
import time
from typing import Any

from easel.api.images.protocol import (
    DEFAULT_MODEL,
    RESPONSE_FORMATS,
    CreateImageRequest,
    ImageData,
    ImagesResponse,
)
from easel.api.state import AppServices
from easel.catalog import GenerationPlan
from easel.encoding import encode_png_async
from easel.engine.generate import GeneratedImage
from easel.errors import invalid_value


async def create_images(
    services: AppServices, body: dict[str, Any], base_url: str
) -> ImagesResponse:
    request = CreateImageRequest.parse(body)
    spec = services.catalog.get(request.model if request.model is not None else DEFAULT_MODEL)
    response_format = request.response_format or "url"
    if response_format not in RESPONSE_FORMATS:
        raise invalid_value("response_format", response_format, RESPONSE_FORMATS)
    plan = spec.plan(
        prompt=request.prompt,
        n=request.n,
        size=request.size,
        quality=request.quality,
        style=request.style,
    )
    images = await services.engine.generate(plan)
    pngs = await asyncio.gather(
        *(encode_png_async(image.pixels, png_text(plan, image)) for image in images)
    )
    data = [
        await _deliver(services, png, response_format, base_url, plan.revised_prompt)
        for png in pngs
    ]
    return ImagesResponse(created=int(time.time()), data=data)


def png_text(plan: GenerationPlan, image: GeneratedImage) -> dict[str, str]:
    """The settings an image was made with, kept in the PNG so the file explains itself."""
    return {
        "prompt": plan.user_prompt,
        "revised_prompt": plan.prompt,
        "negative_prompt": plan.negative_prompt or "",
        "model": plan.model,
        "seed": str(image.seed),
        "steps": str(plan.steps),
        "guidance_scale": str(plan.guidance_scale),
        "quality": plan.quality,
        "style": plan.style or "",
        "generated_size": f"{image.generated_width}x{image.generated_height}",
        "batch_images": str(image.batch_images),
        "Software": "Easel",
    }


async def _deliver(
    services: AppServices,
    png: bytes,
    response_format: str,
    base_url: str,
    revised_prompt: str | None,
) -> ImageData:
    if response_format == "b64_json":
        return ImageData(b64_json=base64.b64encode(png).decode("ascii"), revised_prompt=revised_prompt)
    image_id = await asyncio.to_thread(services.images.save, png)
    return ImageData(
        url=base_url + services.images.signed_path(image_id), revised_prompt=revised_prompt
    )
