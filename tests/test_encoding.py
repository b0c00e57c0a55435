"""PNG encoding: each encoder writes a standard PNG that Pillow decodes losslessly, text and all."""

from __future__ import annotations

import asyncio
import io

import numpy as np
import pytest
from PIL import PngImagePlugin

from easel.bench.http_load import png_text
from easel.encoding import encode_png, encode_png_async
from easel.encoding.chunks import with_text
from easel.encoding.encoders import ENCODERS, available
from tests.images import open_png

TEXT = {"prompt": "a fox \u2013 in snow", "seed": "7", "revised_prompt": "ünïcode ✓"}


def pixels(width: int = 300, height: int = 200) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    smooth = np.stack([x % 256, y % 256, (x * y) % 256], axis=-1)
    return smooth.astype(np.uint8)


def decode(png: bytes) -> PngImagePlugin.PngImageFile:
    image = open_png(io.BytesIO(png))
    image.load()
    return image


def with_alpha(image: np.ndarray) -> np.ndarray:
    """`image` with a see-through-to-opaque ramp as its alpha, as a transparent background has."""
    alpha = np.linspace(0, 255, image.shape[1], dtype=np.uint8)[np.newaxis].repeat(
        image.shape[0], axis=0
    )
    return np.dstack((image, alpha))


@pytest.mark.parametrize("mode", ["RGB", "RGBA"])
@pytest.mark.parametrize("name", [info.name for info in ENCODERS])
def test_every_installed_encoder_is_lossless_and_keeps_text(name: str, mode: str) -> None:
    encoder = available().get(name)
    if encoder is None:
        pytest.skip(f"{name} is not installed")
    image = pixels() if mode == "RGB" else with_alpha(pixels())
    decoded = decode(with_text(encoder(image), TEXT))
    assert decoded.size == (300, 200) and decoded.mode == mode
    assert np.array_equal(np.asarray(decoded), image)
    assert {key: decoded.text[key] for key in TEXT} == TEXT


def test_served_encoding_off_the_loop_and_text_readable_without_decoding() -> None:
    image = pixels(64, 48)
    png = asyncio.run(encode_png_async(image, TEXT))
    assert png == encode_png(image, TEXT)
    assert np.array_equal(np.asarray(decode(png)), image)
    assert png_text(png) == TEXT
    # The fast encoders are what this project installs: the served one is never plain Pillow.
    assert {"fpng", "isal-up"} & set(available())
