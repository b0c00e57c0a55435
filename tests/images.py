"""Decoding what the API returns, so tests check real pixels and metadata."""

from __future__ import annotations

import base64
import io

import httpx
from PIL import Image


def decode_b64(b64: str) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(b64)))
    image.load()
    assert image.format == "PNG"
    return image


def fetch(url: str) -> Image.Image:
    """Fetch an image URL as any client would: no API key, the signature is the credential."""
    response = httpx.get(url, timeout=30)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    image = Image.open(io.BytesIO(response.content))
    image.load()
    return image


def size_of(text: str) -> tuple[int, int]:
    width, height = text.split("x")
    return int(width), int(height)
