"""Prompts beyond the 77 tokens a CLIP text encoder reads, through the HTTP API on tiny SD and SDXL
pipelines: every word reaches the image, negative prompts too, and a batch still runs as one call.
Beyond an LLM encoder's limit (Z-Image), a prompt is refused, not cut.

The tiny pipelines' CLIP tokenizer has one token per character, so a prompt's 78th token is its
77th character (after the start token).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import openai
import pytest
from prometheus_client import REGISTRY

from easel.catalog import Catalog, ModelSpec
from easel.catalog.spec import QualityPreset
from easel.settings import Settings
from tests.images import decode_b64, images_of
from tests.inprocess import InProcessApp, running_app
from tests.test_edit_engine import eventually

pytestmark = pytest.mark.anyio

# 90 tokens that every prompt below shares; they differ only in what follows.
SHARED_START = "a quiet harbour at dusk, " * 4
LONG_NEGATIVE = "blurry, low quality, washed out colours, " * 3
SEED = 1234
BUSY_STEPS = 300


def _spec(name: str, source: Path, negative_prompt: str | None = None, steps: int = 2) -> ModelSpec:
    # Guided, so the negative prompt takes part; two steps at 256 px keep each image cheap.
    return ModelSpec(
        name=name,
        source=str(source),
        sizes=("256x256",),
        default_size="256x256",
        qualities={"standard": QualityPreset(steps=steps, guidance_scale=7.0)},
        negative_prompt=negative_prompt,
        prompt_rewrite="off",
    )


@pytest.fixture(scope="module")
async def long_prompt_app(
    anyio_backend: str,
    tmp_path_factory: pytest.TempPathFactory,
    tiny_sd: Path,
    tiny_sdxl: Path,
    tiny_zimage: Path,
) -> AsyncIterator[InProcessApp]:
    catalog = Catalog(
        [
            _spec("sd", tiny_sd),
            _spec("z-image", tiny_zimage),
            _spec("sdxl", tiny_sdxl),
            _spec("sd-avoid-red", tiny_sd, LONG_NEGATIVE + "red"),
            _spec("sd-avoid-blue", tiny_sd, LONG_NEGATIVE + "blue"),
            # The same pipeline, busy for seconds: requests sent meanwhile queue together.
            _spec("sd-busy", tiny_sd, steps=BUSY_STEPS),
        ]
    )
    # A long batching wait: requests sent together share one pipeline call.
    settings = Settings(data_dir=tmp_path_factory.mktemp("long-prompts"), batch_wait_ms=1000)
    async with running_app(settings, catalog) as app:
        yield app


async def _pixels(sdk: openai.AsyncOpenAI, model: str, prompt: str) -> np.ndarray:
    result = await sdk.images.generate(
        model=model, prompt=prompt, response_format="b64_json", extra_body={"seed": SEED}
    )
    image = decode_b64(images_of(result)[0].b64_json or "")
    assert image.text["revised_prompt"] == prompt  # encoded in chunks, never rewritten or cut
    return np.asarray(image.convert("RGB"), dtype=np.int16)


@pytest.mark.parametrize("model", ["sd", "sdxl"])
async def test_words_after_the_77th_token_change_the_image(
    long_prompt_app: InProcessApp, model: str
) -> None:
    sdk = long_prompt_app.sdk()
    red = await _pixels(sdk, model, SHARED_START + "with a red boat")
    red_again = await _pixels(sdk, model, SHARED_START + "with a red boat")
    blue = await _pixels(sdk, model, SHARED_START + "with a blue boat")
    assert np.array_equal(red, red_again)
    assert not np.array_equal(red, blue)


async def test_words_after_the_77th_token_of_a_negative_prompt_change_the_image(
    long_prompt_app: InProcessApp,
) -> None:
    sdk = long_prompt_app.sdk()
    avoid_red = await _pixels(sdk, "sd-avoid-red", "a boat")
    avoid_blue = await _pixels(sdk, "sd-avoid-blue", "a boat")
    assert not np.array_equal(avoid_red, avoid_blue)


async def test_a_long_and_a_short_prompt_share_one_pipeline_call(
    long_prompt_app: InProcessApp,
) -> None:
    sdk = long_prompt_app.sdk()
    long_prompt, short_prompt = SHARED_START + "with a red boat", "a boat"
    # Both queue while the pipeline runs another batch, so they meet in the queue whatever the
    # batcher's estimate of company (a lone request does not wait for one).
    busy = asyncio.ensure_future(sdk.images.generate(model="sd-busy", prompt="busy"))
    await eventually(lambda: _running_alone("sd-busy"))
    results = await asyncio.gather(
        *(
            sdk.images.generate(model="sd", prompt=prompt, response_format="b64_json")
            for prompt in (long_prompt, short_prompt)
        )
    )
    await busy
    images = [decode_b64(images_of(result)[0].b64_json or "") for result in results]
    assert [image.text["prompt"] for image in images] == [long_prompt, short_prompt]
    assert {image.text["batch_images"] for image in images} == {"2"}


def _running_alone(model: str) -> bool:
    """The model's one admitted request has left its queue: its pipeline call has begun."""
    return (
        REGISTRY.get_sample_value("easel_requests_in_flight", {"model": model}) == 1
        and REGISTRY.get_sample_value("easel_queue_depth", {"model": model}) == 0
    )


async def test_a_prompt_beyond_an_llm_encoders_limit_is_refused_not_cut(
    long_prompt_app: InProcessApp,
) -> None:
    # The tiny Qwen tokenizer never learnt this character: three byte tokens each, 900 in all,
    # past Z-Image's 512.
    with pytest.raises(openai.BadRequestError) as refused:
        await long_prompt_app.sdk().images.generate(model="z-image", prompt="狗" * 300)
    error = refused.value.body
    assert isinstance(error, dict)
    assert error["code"] == "string_above_max_length" and error["param"] == "prompt"
    assert "maximum length 512 tokens" in error["message"]
    result = await long_prompt_app.sdk().images.generate(
        model="z-image", prompt="狗" * 100, response_format="b64_json"
    )
    assert images_of(result)[0].revised_prompt is None
