"""`output_format`, `output_compression` and `background` of the GPT image models, through the
official openai SDK against `easel serve` on tiny real pipelines."""

from __future__ import annotations

import base64
import io
from typing import Literal

import openai
import pytest
from PIL import Image

from easel.encoding import read_xmp
from tests.images import decode_b64, images_of
from tests.sdk_errors import error_body

# Non-ASCII and XML markup: XMP must carry both unchanged.
PROMPT = "雪中的红狐狸, a red fox <b>&amp; snow</b>"
# The settings every image carries, as PNG text chunks or as XMP.
METADATA_KEYS = {
    "prompt",
    "revised_prompt",
    "negative_prompt",
    "model",
    "seed",
    "steps",
    "guidance_scale",
    "quality",
    "style",
    "generated_size",
    "batch_images",
    "Software",
}
PIL_FORMATS = {"jpeg": "JPEG", "webp": "WEBP"}


@pytest.fixture(scope="module")
def gpt(client: openai.OpenAI) -> openai.OpenAI:
    """The session's server: its GPT names run the tiny pipelines (conftest)."""
    return client


def _file(b64: str) -> bytes:
    return base64.b64decode(b64)


@pytest.mark.parametrize("output_format", ["jpeg", "webp"])
@pytest.mark.parametrize(
    ("model", "size"), [("gpt-image-1", "1536x1024"), ("gpt-image-2", "1536x864")]
)
def test_jpeg_and_webp_carry_their_size_and_settings(
    gpt: openai.OpenAI, output_format: Literal["jpeg", "webp"], model: str, size: str
) -> None:
    result = gpt.images.generate(
        model=model,
        prompt=PROMPT,
        size=size,
        quality="high",
        output_format=output_format,
        output_compression=80,
        extra_body={"seed": 11},
    )
    assert (result.output_format, result.size, result.quality) == (output_format, size, "high")
    image = Image.open(io.BytesIO(_file(images_of(result)[0].b64_json or "")))
    image.load()
    assert image.format == PIL_FORMATS[output_format] and image.mode == "RGB"
    assert f"{image.width}x{image.height}" == size
    metadata = read_xmp(image.info["xmp"])
    assert set(metadata) == METADATA_KEYS
    assert (metadata["prompt"], metadata["model"]) == (PROMPT, model)
    assert (metadata["seed"], metadata["quality"]) == ("11", "high")


@pytest.mark.parametrize("output_format", ["jpeg", "webp"])
def test_output_compression_trades_detail_for_bytes(
    gpt: openai.OpenAI, output_format: Literal["jpeg", "webp"]
) -> None:
    def file_at(compression: int) -> bytes:
        result = gpt.images.generate(
            model="gpt-image-1-mini",
            prompt=PROMPT,
            output_format=output_format,
            output_compression=compression,
            extra_body={"seed": 5},
        )
        return _file(images_of(result)[0].b64_json or "")

    # The same seed: the same pixels, encoded at two settings.
    assert len(file_at(10)) < len(file_at(100))


def test_png_is_the_default_and_keeps_its_text_chunks(gpt: openai.OpenAI) -> None:
    result = gpt.images.generate(model="gpt-image-2", prompt=PROMPT, output_compression=30)
    assert result.output_format == "png"
    image = decode_b64(images_of(result)[0].b64_json or "")
    assert set(image.text) == METADATA_KEYS and image.text["prompt"] == PROMPT


@pytest.mark.parametrize(
    ("value", "message", "code"),
    [
        (
            101,
            "101 is greater than the maximum of 100 - 'output_compression'",
            "integer_above_max_value",
        ),
        (-1, "-1 is less than the minimum of 0 - 'output_compression'", "integer_below_min_value"),
    ],
)
def test_output_compression_outside_0_to_100_is_refused(
    gpt: openai.OpenAI, value: int, message: str, code: str
) -> None:
    with pytest.raises(openai.BadRequestError) as excinfo:
        gpt.images.generate(
            model="gpt-image-1", prompt="a cat", output_format="jpeg", output_compression=value
        )
    assert (excinfo.value.param, excinfo.value.code) == ("output_compression", code)
    assert error_body(excinfo.value)["message"] == message


def test_other_formats_are_refused_naming_the_supported_ones(gpt: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as excinfo:
        gpt.images.generate(model="gpt-image-1.5", prompt="a cat", output_format="gif")
    assert (excinfo.value.param, excinfo.value.code) == ("output_format", "unsupported_value")
    assert error_body(excinfo.value)["message"] == (
        "Unsupported value: 'output_format' does not support 'gif' with this model. "
        "Supported values are: 'png', 'jpeg', 'webp'."
    )


@pytest.mark.parametrize("background", ["auto", "opaque"])
def test_auto_and_opaque_backgrounds_are_reported_as_opaque(
    gpt: openai.OpenAI, background: Literal["auto", "opaque"]
) -> None:
    result = gpt.images.generate(
        model="gpt-image-1-mini", prompt="a cat", background=background, output_format="webp"
    )
    assert (result.background, result.output_format) == ("opaque", "webp")
