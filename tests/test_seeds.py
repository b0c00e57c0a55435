"""The `seed` extension: reproducible images, image i made with seed + i, the seed given back."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path
from typing import Any

import numpy as np
import openai
import pytest
from PIL import Image

from easel.api.images.protocol import CreateImageRequest
from easel.catalog import Catalog
from easel.engine.engine import Engine
from easel.engine.types import MAX_SEED
from easel.settings import Settings
from tests.images import decode_b64, fetch, images_of
from tests.inprocess import InProcessApp
from tests.server import RunningServer
from tests.test_errors import assert_envelope, post


def generate(client: openai.OpenAI, seed: int | None, **kwargs: Any) -> openai.types.ImagesResponse:
    kwargs.setdefault("model", "dall-e-2")
    kwargs.setdefault("prompt", "a lighthouse on a cliff")
    kwargs.setdefault("size", "256x256")
    kwargs.setdefault("response_format", "b64_json")
    extra = {} if seed is None else {"seed": seed}
    result: openai.types.ImagesResponse = client.images.generate(extra_body=extra, **kwargs)
    return result


def seeds_of(result: openai.types.ImagesResponse) -> list[int]:
    return [int((item.model_extra or {})["seed"]) for item in images_of(result)]


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def test_same_seed_prompt_and_settings_give_the_same_pixels(client: openai.OpenAI) -> None:
    first = generate(client, 20240601)
    second = generate(client, 20240601)
    other = generate(client, 20240602)
    a, b, c = (decode_b64(images_of(r)[0].b64_json or "") for r in (first, second, other))
    assert seeds_of(first) == seeds_of(second) == [20240601]
    assert a.tobytes() == b.tobytes()
    assert np.abs(pixels(a) - pixels(c)).mean() > 10
    assert a.text["seed"] == "20240601"


def test_image_i_uses_seed_plus_i_and_can_be_made_again_alone(client: openai.OpenAI) -> None:
    three = generate(client, 5000, n=3)
    assert seeds_of(three) == [5000, 5001, 5002]
    images = [decode_b64(item.b64_json or "") for item in images_of(three)]
    assert [image.text["seed"] for image in images] == ["5000", "5001", "5002"]
    alone = generate(client, 5002)
    assert seeds_of(alone) == [5002]
    remade = pixels(decode_b64(images_of(alone)[0].b64_json or ""))
    third = pixels(images[2])
    # The same image: a batch of three and a batch of one add floating-point sums in a different
    # order, which may move a rare pixel by one level; any other image differs everywhere.
    assert np.abs(remade - third).max() <= 2
    assert (remade != third).mean() < 0.001
    assert np.abs(remade - pixels(images[1])).mean() > 10


def test_drawn_seed_is_returned_and_written_into_the_png(client: openai.OpenAI) -> None:
    result = generate(client, None, n=2, response_format="url")
    seeds = seeds_of(result)
    assert seeds[1] == seeds[0] + 1 and 0 <= seeds[0] <= MAX_SEED
    assert [fetch(item.url or "").text["seed"] for item in images_of(result)] == [
        str(s) for s in seeds
    ]
    again = generate(client, seeds[1])
    assert seeds_of(again) == [seeds[1]]


def test_seed_works_on_dall_e_3(client: openai.OpenAI) -> None:
    first = generate(client, 7, model="dall-e-3", size="1024x1024")
    second = generate(client, 7, model="dall-e-3", size="1024x1024")
    assert seeds_of(first) == [7]
    assert (
        decode_b64(images_of(first)[0].b64_json or "").tobytes()
        == decode_b64(images_of(second)[0].b64_json or "").tobytes()
    )


def test_highest_seed_is_accepted(client: openai.OpenAI) -> None:
    assert seeds_of(generate(client, MAX_SEED)) == [MAX_SEED]
    assert seeds_of(generate(client, MAX_SEED - 1, n=2)) == [MAX_SEED - 1, MAX_SEED]


@pytest.mark.parametrize(
    ("extra", "code", "message"),
    [
        ({"seed": -1}, "integer_below_min_value", "-1 is less than the minimum of 0 - 'seed'"),
        ({"seed": MAX_SEED + 1}, "integer_above_max_value", f"{MAX_SEED + 1} is greater than"),
        ({"seed": 2**80}, "integer_above_max_value", None),
        (
            {"seed": MAX_SEED, "n": 2},
            "integer_above_max_value",
            f"maximum of {MAX_SEED - 1} - 'seed'",
        ),
        (
            {"seed": "42"},
            "invalid_type",
            "Invalid type for 'seed': expected an integer, but got a string",
        ),
        ({"seed": True}, "invalid_type", None),
        ({"seed": 1.5}, "invalid_type", None),
    ],
)
@pytest.mark.anyio
async def test_invalid_seeds_are_400_naming_seed(
    app: InProcessApp, extra: dict[str, Any], code: str, message: str | None
) -> None:
    body = {"model": "dall-e-2", "prompt": "a cat", "size": "256x256", **extra}
    error = assert_envelope(await app.post_generation(app.api_key, json=body), 400, "seed")
    assert error["code"] == code
    if message is not None:
        assert message in error["message"]


def test_null_seed_means_a_drawn_one(server: RunningServer, api_key: str) -> None:
    body = {"model": "dall-e-2", "prompt": "a cat", "size": "256x256", "seed": None}
    response = post(server, api_key, json=body)
    assert response.status_code == 200, response.text
    assert isinstance(response.json()["data"][0]["seed"], int)


@pytest.mark.anyio
async def test_models_describe_what_each_model_accepts(sdk: openai.AsyncOpenAI) -> None:
    listed = {model.id: model async for model in sdk.models.list()}
    dall_e_3 = ((await sdk.models.retrieve("dall-e-3")).model_extra or {})["easel"]
    assert (listed["dall-e-3"].model_extra or {})["easel"] == dall_e_3
    assert dall_e_3["sizes"] == ["1024x1024", "1792x1024", "1024x1792"]
    assert dall_e_3["qualities"] == ["standard", "hd"]
    assert dall_e_3["styles"] == ["vivid", "natural"] and dall_e_3["default_style"] == "vivid"
    assert dall_e_3["max_n"] == 1 and dall_e_3["max_prompt_chars"] == 4000
    assert dall_e_3["response_formats"] == ["url", "b64_json"]
    assert dall_e_3["seed"] == {"min": 0, "max": MAX_SEED}
    assert dall_e_3["returns_revised_prompt"] is True
    assert dall_e_3["state"] in {"loading", "ready", "failed"}
    dall_e_2 = (listed["dall-e-2"].model_extra or {})["easel"]
    assert dall_e_2["styles"] == [] and dall_e_2["default_style"] is None
    assert dall_e_2["max_n"] == 10 and dall_e_2["qualities"] == ["standard"]


def test_drawn_seeds_of_a_large_request_can_all_be_sent_back(
    tiny_sd: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "models.yaml"
    config.write_text(
        "models:\n"
        "  many:\n"
        f"    source: {tiny_sd}\n"
        "    max_n: 32\n"
        "    sizes: [64x64]\n"
        "    default_size: 64x64\n"
        "    qualities: {standard: {steps: 1, guidance_scale: 0}}\n"
    )
    catalog = Catalog.build(config)
    spec = catalog.get("many")
    request = CreateImageRequest.parse({"model": "many", "prompt": "a cat", "n": 32})
    # Fault injection: the draw is random, and only its top end can overflow; no real request can
    # be made to land there, so the draw is forced to the highest value it may return.
    monkeypatch.setattr(secrets, "randbelow", lambda bound: bound - 1)
    engine = Engine(catalog, config=Settings().scheduler_config())
    try:
        generation = asyncio.run(engine.generate(request.resolve(spec).plan))
    finally:
        asyncio.run(engine.shutdown())
    seeds = [image.seed for image in generation.images]
    assert seeds == list(range(seeds[0], seeds[0] + 32)) and seeds[-1] <= MAX_SEED
    # The server takes each seed it reported back: the first one for the same request too.
    sent_back = request.model_copy(update={"seed": seeds[0]})
    assert sent_back.resolve(spec).seed == seeds[0]
