"""End to end through the official openai SDK against `easel serve` on tiny real pipelines."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests import openai_schemas
from tests.images import decode_b64, fetch, images_of, size_of
from tests.inprocess import InProcessApp
from tests.server import RunningServer

DALL_E_2_SIZES = ["256x256", "512x512", "1024x1024"]
DALL_E_3_SIZES = ["1024x1024", "1792x1024", "1024x1792"]


def test_default_request_is_dall_e_2_url_1024(client: openai.OpenAI) -> None:
    result = client.images.generate(prompt="a red fox in the snow")
    assert len(images_of(result)) == 1
    item = images_of(result)[0]
    assert item.url is not None and item.b64_json is None
    assert item.revised_prompt is None
    image = fetch(item.url)
    assert image.size == (1024, 1024)
    assert image.text["model"] == "dall-e-2"
    assert image.text["prompt"] == "a red fox in the snow"


@pytest.mark.parametrize("size", DALL_E_2_SIZES)
def test_every_dall_e_2_size(client: openai.OpenAI, size: str) -> None:
    result = client.images.generate(
        model="dall-e-2", prompt="a lighthouse", size=size, response_format="b64_json"
    )
    image = decode_b64(images_of(result)[0].b64_json or "")
    assert image.size == size_of(size)


@pytest.mark.parametrize("size", DALL_E_3_SIZES)
def test_every_dall_e_3_size_keeps_aspect_at_native_resolution(
    client: openai.OpenAI, size: str
) -> None:
    result = client.images.generate(
        model="dall-e-3", prompt="a lighthouse", size=size, response_format="b64_json"
    )
    image = decode_b64(images_of(result)[0].b64_json or "")
    assert image.size == size_of(size)
    # The tiny SDXL pipeline's config says 512 px native (sample_size 64, VAE x8): the generation
    # ran at about 512*512 pixels in the requested aspect ratio, in multiples the UNet accepts.
    gen_w, gen_h = size_of(image.text["generated_size"])
    want_w, want_h = size_of(size)
    assert gen_w % 16 == 0 and gen_h % 16 == 0
    assert abs(gen_w * gen_h / (512 * 512) - 1) < 0.1
    assert abs((gen_w / gen_h) / (want_w / want_h) - 1) < 0.1


def test_n_images_in_one_call_each_their_own(client: openai.OpenAI) -> None:
    result = client.images.generate(
        model="dall-e-2", prompt="three cats", n=3, size="256x256", response_format="b64_json"
    )
    images = [decode_b64(item.b64_json or "") for item in images_of(result)]
    assert len(images) == 3
    assert all(image.size == (256, 256) for image in images)
    seeds = [int(image.text["seed"]) for image in images]
    assert seeds == [seeds[0], seeds[0] + 1, seeds[0] + 2]
    assert len({image.tobytes() for image in images}) == 3


def test_n_images_as_urls(client: openai.OpenAI) -> None:
    result = client.images.generate(model="dall-e-2", prompt="two dogs", n=2, size="512x512")
    urls = [item.url or "" for item in images_of(result)]
    assert len(set(urls)) == 2
    assert all(fetch(url).size == (512, 512) for url in urls)


def test_dall_e_3_styles_give_different_revised_prompts(client: openai.OpenAI) -> None:
    vivid = client.images.generate(
        model="dall-e-3", prompt="a city at night", style="vivid", response_format="b64_json"
    )
    natural = client.images.generate(
        model="dall-e-3", prompt="a city at night", style="natural", response_format="b64_json"
    )
    vivid_prompt = images_of(vivid)[0].revised_prompt or ""
    natural_prompt = images_of(natural)[0].revised_prompt or ""
    assert "a city at night" in vivid_prompt and "a city at night" in natural_prompt
    assert vivid_prompt != natural_prompt
    # revised_prompt is exactly the text the pipeline received, recorded in the PNG.
    assert decode_b64(images_of(vivid)[0].b64_json or "").text["revised_prompt"] == vivid_prompt
    default = client.images.generate(
        model="dall-e-3", prompt="a city at night", response_format="b64_json"
    )
    assert images_of(default)[0].revised_prompt == vivid_prompt


def test_dall_e_3_hd_runs_more_steps(client: openai.OpenAI) -> None:
    standard = client.images.generate(
        model="dall-e-3", prompt="a bowl of fruit", response_format="b64_json"
    )
    hd = client.images.generate(
        model="dall-e-3", prompt="a bowl of fruit", quality="hd", response_format="b64_json"
    )
    steps_standard = int(decode_b64(images_of(standard)[0].b64_json or "").text["steps"])
    steps_hd = int(decode_b64(images_of(hd)[0].b64_json or "").text["steps"])
    assert steps_hd > steps_standard


def test_null_fields_mean_defaults(server: RunningServer, api_key: str) -> None:
    body = {
        "prompt": "a boat",
        "model": None,
        "n": None,
        "size": None,
        "quality": None,
        "style": None,
        "response_format": None,
        "user": None,
    }
    response = httpx.post(
        server.base_url + "/v1/images/generations",
        json=body,
        headers={"Authorization": f"Bearer {api_key}"},
        timeout=300,
    )
    assert response.status_code == 200, response.text
    assert fetch(response.json()["data"][0]["url"]).size == (1024, 1024)


@pytest.mark.parametrize("response_format", ["url", "b64_json"])
def test_response_matches_official_schema(
    server: RunningServer, api_key: str, response_format: str
) -> None:
    response = httpx.post(
        server.base_url + "/v1/images/generations",
        json={
            "model": "dall-e-3",
            "prompt": "a tree",
            "response_format": response_format,
            "user": "u1",
        },
        headers={"Authorization": f"Bearer {api_key}"},
        timeout=300,
    )
    assert response.status_code == 200
    openai_schemas.validate(response.json(), "ImagesResponse")
    body = response.json()
    assert isinstance(body["created"], int)
    assert set(body["data"][0]) == {response_format, "revised_prompt", "seed"}


@pytest.mark.anyio
async def test_models_list_and_retrieve(app: InProcessApp, sdk: openai.AsyncOpenAI) -> None:
    response = await app.http.get("/v1/models", headers={"Authorization": f"Bearer {app.api_key}"})
    openai_schemas.validate(response.json(), "ListModelsResponse")
    listed = {model.id: model async for model in sdk.models.list()}
    assert {"dall-e-2", "dall-e-3"} <= set(listed)
    assert listed["dall-e-3"].object == "model"
    assert listed["dall-e-3"].owned_by == "stabilityai" and isinstance(
        listed["dall-e-3"].created, int
    )
    assert (await sdk.models.retrieve("dall-e-3")).id == "dall-e-3"
    with pytest.raises(openai.NotFoundError) as excinfo:
        await sdk.models.retrieve("no-such-model")
    assert excinfo.value.code == "model_not_found"


def test_first_start_without_keys_says_how_to_make_one(server: RunningServer) -> None:
    # The session's server started before any key existed.
    assert "easel keys create --data-dir" in server.log()
