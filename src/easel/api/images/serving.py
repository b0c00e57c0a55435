"""Generating images for a request: validate against the catalog, run the engine, encode, store."""

from __future__ import annotations

import asyncio
import base64
import time
from typing import Any

from easel.api.images.protocol import CreateImageRequest, ImageData, ImagesResponse
from easel.api.state import AppServices
from easel.encoding import encode_png, png_text


async def create_images(
    services: AppServices, body: dict[str, Any], base_url: str
) -> ImagesResponse:
    job = CreateImageRequest.parse(body).resolve(services.catalog)
    plan = job.plan
    images = await services.engine.generate(plan, job.seed)
    pngs = await asyncio.gather(
        *(asyncio.to_thread(encode_png, image.pixels, png_text(plan, image)) for image in images)
    )
    data = [
        await _deliver(services, png, job.response_format, base_url, plan.revised_prompt, image.seed)
        for png, image in zip(pngs, images, strict=True)
    ]
    return ImagesResponse(created=int(time.time()), data=data)


async def _deliver(
    services: AppServices,
    png: bytes,
    response_format: str,
    base_url: str,
    revised_prompt: str | None,
    seed: int,
) -> ImageData:
    if response_format == "b64_json":
        b64 = base64.b64encode(png).decode("ascii")
        return ImageData(b64_json=b64, revised_prompt=revised_prompt, seed=seed)
    image_id = await asyncio.to_thread(services.images.save, png)
    return ImageData(
        url=base_url + services.images.signed_path(image_id), revised_prompt=revised_prompt, seed=seed
    )
