"""Decoding what the API returns, so tests check real pixels and metadata."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import IO

import httpx
import openai.types
from PIL import Image, PngImagePlugin


def images_of(response: openai.types.ImagesResponse) -> list[openai.types.Image]:
    """The response's images: the SDK types `data` as optional, and Easel always sends it."""
    assert response.data is not None
    return response.data


def open_png(source: str | Path | IO[bytes]) -> PngImagePlugin.PngImageFile:
    """Open a PNG (lazily, as `Image.open` does), typed as one so its `.text` chunks check."""
    image = Image.open(source)
    assert isinstance(image, PngImagePlugin.PngImageFile), image.format
    return image


def decode_b64(b64: str) -> PngImagePlugin.PngImageFile:
    image = open_png(io.BytesIO(base64.b64decode(b64)))
    image.load()
    return image


def fetch(url: str) -> PngImagePlugin.PngImageFile:
    """Fetch an image URL as any client would: no API key, the signature is the credential."""
    response = httpx.get(url, timeout=30)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    image = open_png(io.BytesIO(response.content))
    image.load()
    return image


def size_of(text: str) -> tuple[int, int]:
    width, height = text.split("x")
    return int(width), int(height)
