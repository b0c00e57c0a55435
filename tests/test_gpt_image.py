"""The GPT image model names and their rules, through the official openai SDK against
`easel serve` on tiny real pipelines."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import openai
import pytest
from PIL import Image

from easel.catalog import Catalog
from easel.encoding import read_xmp
from tests import openai_schemas
from tests.gpt_server import GPT_MODELS, OPERATOR_MODEL, start_gpt_server
from tests.images import decode_b64, fetch, images_of, size_of
from tests.sdk_errors import error_body
from tests.server import RunningServer, sdk_client

SIZES = ["1024x1024", "1536x1024", "1024x1536", "auto"]
Quality = Literal["low", "medium", "high", "auto"]
QUALITIES: list[Quality] = ["low", "medium", "high", "auto"]
# What `auto` resolves to in the built-in catalog: the response reports the value used.
AUTO_SIZE, AUTO_QUALITY = "1024x1024", "medium"


@pytest.fixture(scope="module")
def gpt_server(
    tmp_path_factory: pytest.TempPathFactory, tiny_sd: Path, tiny_sdxl: Path
) -> Iterator[RunningServer]:
    running = start_gpt_server(tmp_path_factory.mktemp("gpt"), tiny_sd, tiny_sdxl)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def gpt(gpt_server: RunningServer) -> openai.OpenAI:
    return sdk_client(gpt_server)


# Each size once and each quality once per model: sizes and qualities paired in turn.
@pytest.mark.parametrize("model", [*GPT_MODELS, OPERATOR_MODEL])
@pytest.mark.parametrize(("size", "quality"), list(zip(SIZES, QUALITIES, strict=True)))
def test_every_size_and_quality_of_each_gpt_model(
    gpt: openai.OpenAI, model: str, size: str, quality: Quality
) -> None:
    result = gpt.images.generate(model=model, prompt="a lighthouse", size=size, quality=quality)
    item = images_of(result)[0]
    assert item.url is None and item.revised_prompt is None
    used_size = AUTO_SIZE if size == "auto" else size
    used_quality = AUTO_QUALITY if quality == "auto" else quality
    assert (result.size, result.quality) == (used_size, used_quality)
    assert (result.output_format, result.background) == ("png", "opaque")
    image = decode_b64(item.b64_json or "")
    assert image.size == size_of(used_size)
    # The quality picks its preset's steps from the model's catalog entry.
    spec = Catalog.build().get(model if model in GPT_MODELS else "gpt-image-2")
    assert image.text["steps"] == str(spec.qualities[used_quality].steps)
    assert image.text["model"] == model


@pytest.mark.parametrize("model", ["gpt-image-2", "gpt-image-2-2026-04-21", OPERATOR_MODEL])
@pytest.mark.parametrize("size", ["1536x864", "2048x688", "1280x3840", "3840x2160", "2160x2160"])
def test_gpt_image_2_takes_free_sizes(gpt: openai.OpenAI, model: str, size: str) -> None:
    result = gpt.images.generate(model=model, prompt="a lighthouse", size=size, quality="low")
    assert result.size == size
    assert decode_b64(images_of(result)[0].b64_json or "").size == size_of(size)


@pytest.mark.parametrize(
    ("size", "rule"),
    [
        ("1000x1000", "width and height must both be multiples of 16"),
        ("1024x1000", "width and height must both be multiples of 16"),
        ("3072x1008", "the aspect ratio must be between 1:3 and 3:1"),
        ("1008x3072", "the aspect ratio must be between 1:3 and 3:1"),
        ("4096x2304", "the largest supported size is 3840x2160"),
        ("2176x2176", "the largest supported size is 3840x2160"),
    ],
)
def test_gpt_image_2_refuses_sizes_outside_its_limits(
    gpt: openai.OpenAI, size: str, rule: str
) -> None:
    with pytest.raises(openai.BadRequestError) as excinfo:
        gpt.images.generate(model="gpt-image-2", prompt="a cat", size=size)
    assert (excinfo.value.param, excinfo.value.code) == ("size", "invalid_value")
    assert error_body(excinfo.value)["message"] == (
        f"Invalid value: '{size}'. For this model, {rule}."
    )


@pytest.mark.parametrize("model", ["gpt-image-1", "gpt-image-1-mini", "gpt-image-1.5"])
@pytest.mark.parametrize("size", ["1536x864", "512x512", "1792x1024"])
def test_gpt_image_1_models_take_only_the_standard_sizes(
    gpt: openai.OpenAI, model: str, size: str
) -> None:
    with pytest.raises(openai.BadRequestError) as excinfo:
        gpt.images.generate(model=model, prompt="a cat", size=size)
    assert excinfo.value.param == "size"
    assert error_body(excinfo.value)["message"] == (
        f"Invalid value: '{size}'. Supported values are: "
        "'1024x1024', '1536x1024', '1024x1536', and 'auto'."
    )


@pytest.mark.parametrize("quality", ["standard", "hd", "xhigh"])
def test_gpt_models_refuse_other_qualities(gpt: openai.OpenAI, quality: str) -> None:
    with pytest.raises(openai.BadRequestError) as excinfo:
        gpt.images.generate(model="gpt-image-1", prompt="a cat", extra_body={"quality": quality})
    assert excinfo.value.param == "quality"
    assert error_body(excinfo.value)["message"] == (
        f"Invalid value: '{quality}'. Supported values are: 'low', 'medium', 'high', and 'auto'."
    )


@pytest.mark.parametrize(
    ("field", "value"),
    [("response_format", "b64_json"), ("response_format", "url"), ("style", "vivid")],
)
@pytest.mark.parametrize("model", ["gpt-image-1", "gpt-image-2"])
def test_dall_e_fields_are_refused_in_openais_words(
    gpt: openai.OpenAI, model: str, field: str, value: str
) -> None:
    with pytest.raises(openai.BadRequestError) as excinfo:
        gpt.images.generate(model=model, prompt="a cat", extra_body={field: value})
    assert (excinfo.value.param, excinfo.value.code) == (field, "unknown_parameter")
    assert error_body(excinfo.value)["message"] == f"Unknown parameter: '{field}'."


def test_null_response_format_and_style_mean_their_defaults(gpt: openai.OpenAI) -> None:
    result = gpt.images.generate(
        model="gpt-image-1-mini", prompt="a cat", response_format=None, style=None
    )
    assert images_of(result)[0].b64_json


def test_prompt_limit_and_n_follow_openais_gpt_rules(gpt: openai.OpenAI) -> None:
    result = gpt.images.generate(model="gpt-image-1-mini", prompt="a cat", n=10, quality="low")
    assert len(images_of(result)) == 10
    with pytest.raises(openai.BadRequestError) as excinfo:
        gpt.images.generate(model="gpt-image-1-mini", prompt="a cat", n=11)
    assert error_body(excinfo.value)["message"] == "11 is greater than the maximum of 10 - 'n'"
    with pytest.raises(openai.BadRequestError) as excinfo:
        gpt.images.generate(model="gpt-image-1", prompt="x" * 32001)
    assert excinfo.value.code == "string_above_max_length"
    assert error_body(excinfo.value)["message"] == (
        "Invalid 'prompt': string too long. Expected a string with maximum length 32000, "
        "but got a string with length 32001 instead."
    )


def test_moderation_and_user_fields_are_accepted(gpt: openai.OpenAI) -> None:
    result = gpt.images.generate(
        model="gpt-image-1.5",
        prompt="a cat",
        moderation="low",
        background="opaque",
        user="user-1234",
        safety_identifier="user-1234",
    )
    assert result.background == "opaque"


@pytest.mark.parametrize(
    ("extra", "model"),
    [
        ({}, "dall-e-2"),
        ({"size": "256x256"}, "dall-e-2"),
        ({"output_format": "jpeg"}, "gpt-image-1.5"),
        ({"moderation": "low"}, "gpt-image-1.5"),
        ({"background": "auto"}, "gpt-image-1.5"),
        ({"output_compression": 50}, "gpt-image-1.5"),
    ],
)
def test_a_request_without_model_follows_the_schemas_rule(
    gpt: openai.OpenAI, extra: dict[str, object], model: str
) -> None:
    result = gpt.images.generate(prompt="a cat", extra_body=extra)
    item = images_of(result)[0]
    if model == "dall-e-2":
        assert item.url is not None and result.output_format is None
        assert fetch(item.url).text["model"] == model
    else:
        b64 = item.b64_json or ""
        if result.output_format == "jpeg":
            metadata = read_xmp(Image.open(io.BytesIO(base64.b64decode(b64))).info["xmp"])
        else:
            metadata = decode_b64(b64).text
        assert metadata["model"] == model


def test_models_lists_every_gpt_name_with_its_rules(gpt: openai.OpenAI) -> None:
    listed = {model.id: model for model in gpt.models.list()}
    assert {*GPT_MODELS, OPERATOR_MODEL, "dall-e-2", "dall-e-3"} <= set(listed)
    for name in [*GPT_MODELS, OPERATOR_MODEL]:
        easel = (listed[name].model_extra or {})["easel"]
        assert easel["qualities"] == ["low", "medium", "high"]
        assert easel["max_n"] == 10 and easel["max_prompt_chars"] == 32000
        assert easel["response_formats"] == [] and easel["styles"] == []
        assert easel["output_formats"] == ["png", "jpeg", "webp"]
        assert easel["free_sizes"] == name.startswith("gpt-image-2")


def test_gpt_responses_are_valid_openai_images_responses(gpt: openai.OpenAI) -> None:
    response = gpt.images.with_raw_response.generate(
        model="gpt-image-1", prompt="a cat", size="1536x1024", quality="auto"
    )
    body = response.http_response.json()
    openai_schemas.validate(body, "ImagesResponse")
    assert {key: body[key] for key in ("output_format", "size", "quality", "background")} == {
        "output_format": "png",
        "size": "1536x1024",
        "quality": "medium",
        "background": "opaque",
    }
