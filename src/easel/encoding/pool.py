"""Encoding off the event loop: a pool with one thread per core (the encoders release the GIL)."""

from __future__ import annotations

import asyncio
import functools
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from easel.catalog.output import ImageFormat
from easel.encoding.encoders import encode_png
from easel.encoding.formats import encode_image, resized


@functools.cache
def _pool() -> ThreadPoolExecutor:
    # Made on first use, not at import; lives as long as the process.
    return ThreadPoolExecutor(os.cpu_count() or 1, thread_name_prefix="easel-encode")


async def encode_png_async(pixels: np.ndarray, text: dict[str, str]) -> bytes:
    """`encode_png` on the encoding pool."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_pool(), encode_png, pixels, text)


async def encode_image_async(
    pixels: np.ndarray,
    text: dict[str, str],
    image_format: ImageFormat,
    compression: int,
    *,
    size: tuple[int, int] | None = None,
) -> bytes:
    """`encode_image` on the encoding pool; with `size` (width, height) the pixels are resized to
    it there first (partial images come at the latents' resolution)."""

    def encode() -> bytes:
        image = pixels if size is None else resized(pixels, *size)
        return encode_image(image, text, image_format, compression)

    return await asyncio.get_running_loop().run_in_executor(_pool(), encode)
