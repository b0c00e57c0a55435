"""/v1/images/edits and /v1/images/variations over HTTP: the official SDK's multipart calls, raw
multipart and JSON bodies, every refusal in OpenAI's envelope (hostile files, wrong masks, image
URLs into private networks), and authentication before anything. In process, on tiny pipelines."""

from __future__ import annotations

import base64
import io
import threading
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import httpx
import numpy as np
import openai
import pytest
from openai.types.images_response import Usage as ImagesResponseUsage
from PIL import Image

from easel.api.state import AppServices
from easel.catalog import Catalog
from easel.settings import Settings
from easel.usage.store import UsageRecord
from tests.edit_images import animated, data_url, declared_png, encode, mask_png, png
from tests.gpt_server import gpt_overrides
from tests.images import images_of
from tests.inprocess import InProcessApp, running_app
from tests.sdk_errors import error_body

pytestmark = pytest.mark.anyio

ENVELOPE_KEYS = {"message", "type", "param", "code"}
EDITS, VARIATIONS = "/v1/images/edits", "/v1/images/variations"
# Small enough that the tiny pipelines answer in a moment.
SIZE = "256x256"


def error_of(response: httpx.Response, status: int = 400) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert set(error) == ENVELOPE_KEYS and error["message"]
    return error


def auth(app: InProcessApp) -> dict[str, str]:
    return {"Authorization": f"Bearer {app.api_key}"}


async def post_form(
    app: InProcessApp,
    fields: dict[str, str],
    files: list[tuple[str, bytes]],
    path: str = EDITS,
) -> httpx.Response:
    """A multipart request as curl -F sends it: text fields, then files with a filename."""
    parts = [
        (name, (f"upload-{index}.png", data, "image/png"))
        for index, (name, data) in enumerate(files)
    ]
    return await app.http.post(path, headers=auth(app), data=fields, files=parts)


def last_usage(app: InProcessApp) -> UsageRecord:
    services: AppServices = app.app.state.services
    key = services.keys.find(app.api_key)
    assert key is not None
    return services.usage.records(key.id)[-1]


def pixels(b64: str | None) -> np.ndarray:
    assert b64 is not None
    with Image.open(io.BytesIO(base64.b64decode(b64))) as image:
        return np.asarray(image.convert("RGB"))


# Authentication first: a request without a key learns nothing else.


@pytest.mark.parametrize("path", [EDITS, VARIATIONS])
@pytest.mark.parametrize(
    "content",
    [
        {"files": [("image", ("a.png", png(8, 8), "image/png"))], "data": {"prompt": "x"}},
        {"json": {"images": [{"file_id": "file-1"}], "prompt": "x"}},
        {"content": b"\x00garbage", "headers": {"Content-Type": "text/plain"}},
    ],
)
async def test_no_key_gets_401_before_anything(
    app: InProcessApp, path: str, content: dict[str, Any]
) -> None:
    error = error_of(await app.http.post(path, **content), 401)
    assert error["type"] == "invalid_request_error"
    assert "didn't provide an API key" in error["message"]


async def test_a_wrong_key_is_refused_as_on_generations(
    sdk: openai.AsyncOpenAI, app: InProcessApp
) -> None:
    with pytest.raises(openai.AuthenticationError) as caught:
        await app.sdk("sk-wrong-key-0000").images.create_variation(image=png(64, 64))
    assert error_body(caught.value)["code"] == "invalid_api_key"


# The official SDK's calls.


async def test_sdk_edit_with_a_mask(sdk: openai.AsyncOpenAI, app: InProcessApp) -> None:
    result = await sdk.images.edit(
        model="dall-e-2",
        image=("photo.png", png(64, 64), "image/png"),
        mask=("mask.png", mask_png(64, 64, (0, 0, 32, 64)), "image/png"),
        prompt="a red hat",
        size=SIZE,
        response_format="b64_json",
        user="editor-1",
    )
    assert len(images_of(result)) == 1
    assert pixels(images_of(result)[0].b64_json).shape == (256, 256, 3)
    record = last_usage(app)
    assert (record.endpoint, record.model, record.n, record.images_delivered, record.user) == (
        "edits",
        "dall-e-2",
        1,
        1,
        "editor-1",
    )


async def test_sdk_edit_answers_urls_for_dall_e_2(
    sdk: openai.AsyncOpenAI, app: InProcessApp
) -> None:
    result = await sdk.images.edit(
        model="dall-e-2", image=png(64, 64), prompt="a red hat", size=SIZE, n=2
    )
    assert [item.url is not None for item in images_of(result)] == [True, True]


def assert_counts_input_images(usage: ImagesResponseUsage | None, images: int, size: str) -> None:
    """Easel's input image tokens: one per 16x16 pixels of each image at the generated size."""
    assert usage is not None
    width, height = (int(side) for side in size.split("x"))
    assert usage.input_tokens_details.image_tokens == images * (width // 16) * (height // 16)
    details = usage.input_tokens_details
    assert usage.input_tokens == details.text_tokens + details.image_tokens
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens


async def test_sdk_edit_of_a_gpt_name_reports_what_it_made(
    sdk: openai.AsyncOpenAI, app: InProcessApp
) -> None:
    # gpt-image-1-mini runs the SD layout in tests: fast. `size: auto` keeps the image's aspect.
    result = await sdk.images.edit(
        model="gpt-image-1-mini",
        image=("wide.png", png(96, 64), "image/png"),
        prompt="make it night",
        size="auto",
        quality="low",
        output_format="jpeg",
        output_compression=80,
    )
    assert (result.size, result.quality, result.output_format) == ("1536x1024", "low", "jpeg")
    assert images_of(result)[0].b64_json
    assert_counts_input_images(result.usage, 1, "1536x1024")
    assert result.usage is not None
    assert last_usage(app).input_image_tokens == result.usage.input_tokens_details.image_tokens


async def test_sdk_edit_sends_several_images_as_image_array(sdk: openai.AsyncOpenAI) -> None:
    # Both images arrive (as image[]); the SDXL layout has no multi-reference pipeline, so the
    # refusal names the one image this model takes here.
    with pytest.raises(openai.BadRequestError) as caught:
        await sdk.images.edit(
            model="gpt-image-1",
            image=[("a.png", png(32, 32), "image/png"), ("b.png", png(32, 32), "image/png")],
            prompt="combine them",
        )
    error = error_body(caught.value)
    assert (error["param"], error["code"]) == ("image", "array_above_max_length")
    assert "takes 1 image" in error["message"] and "got 2 images" in error["message"]


async def test_sdk_edit_refuses_input_fidelity_for_gpt_image_1_mini(
    sdk: openai.AsyncOpenAI,
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await sdk.images.edit(
            model="gpt-image-1-mini", image=png(32, 32), prompt="x", input_fidelity="high"
        )
    assert error_body(caught.value)["param"] == "input_fidelity"


async def test_sdk_create_variation(sdk: openai.AsyncOpenAI, app: InProcessApp) -> None:
    result = await sdk.images.create_variation(
        image=("cat.png", png(64, 64), "image/png"),
        n=2,
        size="256x256",
        response_format="b64_json",
    )
    assert [pixels(item.b64_json).shape for item in images_of(result)] == [(256, 256, 3)] * 2
    record = last_usage(app)
    assert (record.endpoint, record.model, record.n, record.images_delivered) == (
        "variations",
        "dall-e-2",
        2,
        2,
    )


@pytest.mark.parametrize("model", ["gpt-image-1", "dall-e-3"])
async def test_variations_are_dall_e_2_only(sdk: openai.AsyncOpenAI, model: str) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await sdk.images.create_variation(model=model, image=png(64, 64))
    error = error_body(caught.value)
    assert (error["param"], error["code"]) == ("model", "invalid_value")
    assert "only supported by 'dall-e-2'" in error["message"]


async def test_models_list_says_which_models_edit_and_vary(sdk: openai.AsyncOpenAI) -> None:
    """The playground offers edits and variations by these flags: each agrees with the endpoint."""
    listed = {model.id: (model.model_extra or {})["easel"] async for model in sdk.models.list()}
    takes = {name: (easel["edits"], easel["variations"]) for name, easel in listed.items()}
    assert takes.pop("dall-e-2") == (True, True)
    assert takes.pop("dall-e-3") == (False, False)
    assert takes and set(takes.values()) == {(True, False)}  # the GPT image names
    with pytest.raises(openai.BadRequestError) as caught:
        await sdk.images.edit(model="dall-e-3", image=png(64, 64), prompt="x")
    error = error_body(caught.value)
    assert (error["param"], error["code"]) == ("model", "invalid_value")
    assert "does not support image edits" in error["message"]


# Raw multipart as other clients send it.


async def test_images_array_field_and_boolean_strings_are_accepted(app: InProcessApp) -> None:
    fields = {"model": "gpt-image-1-mini", "prompt": "x", "stream": "false", "quality": "low"}
    response = await post_form(app, fields, [("images[]", png(32, 32))])
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    ("fields", "files", "param", "code"),
    [
        ({"prompt": "x", "n": "two"}, [("image", png(8, 8))], "n", "invalid_type"),
        ({"prompt": "x", "stream": "yes please"}, [("image", png(8, 8))], "stream", "invalid_type"),
        ({"prompt": "x", "colour": "red"}, [("image", png(8, 8))], "colour", "unknown_parameter"),
        ({"prompt": "x", "image": "cat.png"}, [], "image", "invalid_type"),
        ({"prompt": "x"}, [], "image", "missing_required_parameter"),
        ({"model": "dall-e-2"}, [("image", png(8, 8))], "prompt", "missing_required_parameter"),
        (
            {"prompt": "x"},
            [("image", png(8, 8)), ("mask", png(8, 8)), ("mask", png(8, 8))],
            "mask",
            "invalid_value",
        ),
        ({"prompt": "x"}, [("thumbnail", png(8, 8))], "thumbnail", "unknown_parameter"),
        (
            {"prompt": "x", "model": "dall-e-2", "style": "vivid"},
            [("image", png(8, 8))],
            "style",
            "unknown_parameter",
        ),
        (
            {"prompt": "x", "model": "gpt-image-1", "response_format": "url"},
            [("image", png(8, 8))],
            "response_format",
            "unknown_parameter",
        ),
        (
            {"prompt": "x", "model": "dall-e-2", "size": "1536x1024"},
            [("image", png(8, 8))],
            "size",
            "invalid_value",
        ),
        ({"prompt": "x", "model": "dall-e-3"}, [("image", png(8, 8))], "model", "invalid_value"),
    ],
)
async def test_form_refusals(
    app: InProcessApp, fields: dict[str, str], files: list[tuple[str, bytes]], param: str, code: str
) -> None:
    error = error_of(await post_form(app, fields, files))
    assert (error["param"], error["code"]) == (param, code), error


async def test_too_many_parts_and_oversize_fields_are_refused(app: InProcessApp) -> None:
    error = error_of(await post_form(app, {"prompt": "x"}, [("image[]", png(8, 8))] * 18))
    assert error["code"] == "invalid_multipart" and "Too many files" in error["message"]
    error = error_of(await post_form(app, {"prompt": "x" * 300_000}, [("image", png(8, 8))]))
    assert error["code"] == "invalid_multipart"
    error = error_of(await post_form(app, {"prompt": "x"}, [("image[]", png(8, 8))] * 17))
    assert (error["code"], error["param"]) == ("array_above_max_length", "image")


async def test_a_body_that_is_not_a_form_or_json_is_refused(app: InProcessApp) -> None:
    response = await app.http.post(
        EDITS, headers={**auth(app), "Content-Type": "text/plain"}, content=b"a picture"
    )
    assert error_of(response)["code"] == "unsupported_content_type"
    response = await app.http.post(VARIATIONS, headers=auth(app), json={"image": "x"})
    assert error_of(response)["code"] == "unsupported_content_type"


# Hostile files: every one a 400 naming the field, never a 5xx.

HOSTILE_FILES = {
    "bomb": (declared_png(50_000, 50_000), "image_too_large"),
    "wide bomb": (declared_png(30_000, 100), "image_too_large"),
    "truncated": (encode(Image.effect_noise((64, 64), 40), "PNG")[:300], "invalid_image"),
    "corrupt": (b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4, "invalid_image"),
    "apng": (animated("PNG"), "invalid_image"),
    "animated webp": (animated("WEBP"), "invalid_image"),
    "animated gif": (animated("GIF"), "invalid_image_format"),
    "pdf": (b"%PDF-1.4\n" + b"0" * 100, "invalid_image_format"),
    "empty": (b"", "invalid_image_format"),
}


@pytest.mark.parametrize("name", list(HOSTILE_FILES))
@pytest.mark.parametrize("model", ["dall-e-2", "gpt-image-1-mini"])
async def test_hostile_images_are_400s(app: InProcessApp, name: str, model: str) -> None:
    data, code = HOSTILE_FILES[name]
    if model == "dall-e-2" and name == "animated webp":
        code = "invalid_image_format"  # dall-e-2 takes PNG only
    error = error_of(await post_form(app, {"prompt": "x", "model": model}, [("image", data)]))
    assert (error["param"], error["code"]) == ("image", code), error


@pytest.mark.parametrize("name", ["bomb", "truncated", "apng"])
async def test_hostile_variation_images_are_400s(app: InProcessApp, name: str) -> None:
    data, code = HOSTILE_FILES[name]
    error = error_of(await post_form(app, {}, [("image", data)], VARIATIONS))
    assert (error["param"], error["code"]) == ("image", code)


async def test_hostile_masks_are_400s(app: InProcessApp) -> None:
    image = [("image", png(64, 64))]
    for mask, code in (
        (png(64, 64), "invalid_image_format"),  # no alpha channel
        (mask_png(32, 32, (0, 0, 8, 8)), "invalid_image_dimensions"),
        (declared_png(50_000, 50_000), "image_too_large"),
        (animated("PNG"), "invalid_image"),
    ):
        response = await post_form(
            app, {"prompt": "x", "model": "dall-e-2"}, [*image, ("mask", mask)]
        )
        error = error_of(response)
        assert (error["param"], error["code"]) == ("mask", code), error


async def test_dall_e_2_images_must_be_square(app: InProcessApp) -> None:
    error = error_of(
        await post_form(app, {"prompt": "x", "model": "dall-e-2"}, [("image", png(64, 32))])
    )
    assert error["code"] == "invalid_image" and "square" in error["message"]


# JSON bodies: GPT names only, images by data URL (or by http(s) URL when the operator allows).


async def test_json_edit_with_data_urls(app: InProcessApp) -> None:
    body = {
        "model": "gpt-image-1-mini",
        "prompt": "add a moon",
        "images": [{"image_url": data_url(png(64, 64))}],
        "mask": {"image_url": data_url(mask_png(64, 64, (0, 0, 64, 16)))},
        "quality": "low",
    }
    response = await app.http.post(EDITS, headers=auth(app), json=body)
    assert response.status_code == 200, response.text
    assert response.json()["output_format"] == "png"


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        (
            {"model": "dall-e-2", "images": [{"image_url": data_url(png(8, 8))}]},
            "model",
            "invalid_value",
        ),
        ({"images": [{"file_id": "file-abc123"}]}, "images[0].file_id", "unsupported_parameter"),
        (
            {"images": [{"image_url": data_url(png(8, 8)), "file_id": "f"}]},
            "images[0].file_id",
            "unsupported_parameter",
        ),
        (
            {"images": [{"image_url": "https://example.com/cat.png"}]},
            "images[0].image_url",
            "invalid_image_url",
        ),
        (
            {"images": [{"image_url": "data:image/png;base64,!!"}]},
            "images[0].image_url",
            "invalid_image_url",
        ),
        (
            {"images": [{"image_url": data_url(animated("PNG"))}]},
            "images[0].image_url",
            "invalid_image",
        ),
        (
            {
                "images": [{"image_url": data_url(png(8, 8))}],
                "mask": {"image_url": data_url(png(8, 8))},
            },
            "mask.image_url",
            "invalid_image_format",
        ),
        ({"images": []}, "images", "empty_array"),
        ({"images": "cat.png"}, "images", "invalid_type"),
        ({}, "images", "missing_required_parameter"),
        ({"images": [{"url": "x"}]}, "images[0].url", "unknown_parameter"),
        ({"images": [{"image_url": data_url(png(8, 8))}], "n": "2"}, "n", "invalid_type"),
    ],
)
async def test_json_refusals(
    app: InProcessApp, body: dict[str, Any], param: str, code: str
) -> None:
    response = await app.http.post(EDITS, headers=auth(app), json={"prompt": "x", **body})
    error = error_of(response)
    assert (error["param"], error["code"]) == (param, code), error


class _Recorder(BaseHTTPRequestHandler):
    requests: ClassVar[list[str]] = []

    def do_GET(self) -> None:  # http.server's hook
        self.requests.append(self.path)
        image = png(16, 16)
        self.send_response(200)
        self.send_header("Content-Length", str(len(image)))
        self.end_headers()
        self.wfile.write(image)

    def log_message(self, *_args: object) -> None:
        return None


@pytest.fixture(scope="module")
def loopback_server() -> Iterator[tuple[int, list[str]]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield int(server.server_address[1]), _Recorder.requests
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
async def fetching_app(
    anyio_backend: str, tmp_path_factory: pytest.TempPathFactory, tiny_sd: Path, tiny_sdxl: Path
) -> AsyncIterator[InProcessApp]:
    """An app whose operator allows image URLs, with a small upload limit."""
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("fetching"),
        fetch_image_urls=True,
        max_upload_bytes=200_000,
    )
    catalog = Catalog.build(overrides=[f"dall-e-2={tiny_sd}", *gpt_overrides(tiny_sd, tiny_sdxl)])
    async with running_app(settings, catalog) as running:
        yield running


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:{port}/cat.png",
        "http://localhost:{port}/cat.png",
        "http://[::1]:{port}/cat.png",
        "http://10.0.0.1:{port}/cat.png",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::ffff:127.0.0.1]:{port}/cat.png",
    ],
)
async def test_image_urls_into_private_networks_are_refused(
    fetching_app: InProcessApp, loopback_server: tuple[int, list[str]], url: str
) -> None:
    port, requests = loopback_server
    body = {"model": "gpt-image-1", "prompt": "x", "images": [{"image_url": url.format(port=port)}]}
    response = await fetching_app.http.post(EDITS, headers=auth(fetching_app), json=body)
    error = error_of(response)
    assert (error["param"], error["code"]) == ("images[0].image_url", "invalid_image_url")
    assert "not a public address" in error["message"]
    assert requests == []


async def test_bodies_over_the_upload_limit_are_413(fetching_app: InProcessApp) -> None:
    big = [("image", png(8, 8) + b"\x00" * 300_000)]
    parts = [(name, ("a.png", data, "image/png")) for name, data in big]
    response = await fetching_app.http.post(
        EDITS, headers=auth(fetching_app), data={"prompt": "x"}, files=parts
    )
    assert error_of(response, 413)["code"] == "request_too_large"


# Depends on the engine's edit support (the editsengine branch): dall-e-2 gives back the pixels
# outside its mask unchanged.


async def test_dall_e_2_keeps_the_pixels_outside_the_mask(sdk: openai.AsyncOpenAI) -> None:
    original = np.random.default_rng(7).integers(0, 255, (256, 256, 3), dtype=np.uint8)
    result = await sdk.images.edit(
        model="dall-e-2",
        image=("photo.png", encode(Image.fromarray(original), "PNG"), "image/png"),
        mask=("mask.png", mask_png(256, 256, (64, 64, 192, 192)), "image/png"),
        prompt="a red hat",
        size=SIZE,
        response_format="b64_json",
    )
    edited = pixels(images_of(result)[0].b64_json)
    outside = np.ones((256, 256), dtype=bool)
    outside[64:192, 64:192] = False
    assert np.array_equal(edited[outside], original[outside])


# A DiT family: FLUX.2 klein's pipeline takes several reference images itself.


@pytest.fixture(scope="module")
async def klein_app(
    anyio_backend: str, tmp_path_factory: pytest.TempPathFactory, tiny_flux2_klein: Path
) -> AsyncIterator[InProcessApp]:
    catalog = Catalog.build(overrides=[f"gpt-image-2={tiny_flux2_klein}"])
    settings = Settings(data_dir=tmp_path_factory.mktemp("klein"))
    async with running_app(settings, catalog) as running:
        yield running


@pytest.mark.slow
async def test_several_images_edit_on_a_multi_reference_dit(klein_app: InProcessApp) -> None:
    result = await klein_app.sdk().images.edit(
        model="gpt-image-2",
        image=[
            ("a.png", png(64, 64), "image/png"),
            ("b.webp", encode(Image.new("RGB", (64, 48)), "WEBP"), "image/webp"),
        ],
        prompt="the two side by side",
        size="256x256",
        quality="low",
    )
    assert result.size == "256x256"
    assert pixels(images_of(result)[0].b64_json).shape == (256, 256, 3)
    assert_counts_input_images(result.usage, 2, "256x256")
    assert result.usage is not None
    assert last_usage(klein_app).input_image_tokens == 2 * 16 * 16


async def test_a_multipart_body_without_its_boundary_is_a_400(app: InProcessApp) -> None:
    response = await app.http.post(
        EDITS,
        headers={**auth(app), "Content-Type": "multipart/form-data"},
        content=b"--x\r\nContent-Disposition: form-data; name=prompt\r\n\r\nhi\r\n--x--\r\n",
    )
    assert error_of(response)["code"] == "invalid_multipart"
