"""`background: transparent` of the GPT image models: a real alpha channel from the background-
matting model, through the official openai SDK against `easel serve` with the tiny matting model
(a directory in the hub layout, loaded by the production code)."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import numpy as np
import openai
import pytest
import torch
from PIL import Image
from pydantic import ByteSize

from easel.catalog import Catalog
from easel.encoding import read_xmp
from easel.engine.matting import MODEL_FILE, MattingModel
from easel.engine.pipeline_weights import estimate_bytes
from easel.settings import Settings
from tests.images import images_of
from tests.inprocess import running_app
from tests.sdk_errors import error_body
from tests.server import RunningServer, sdk_client, start_server

MODEL = "gpt-image-1-mini"
PROMPT = "a red fox in snow"


@pytest.fixture(scope="module")
def matting_server(
    tmp_path_factory: pytest.TempPathFactory, tiny_sd: Path, tiny_matting: Path
) -> Iterator[RunningServer]:
    running = start_server(
        tmp_path_factory.mktemp("transparency"),
        "--model",
        f"{MODEL}={tiny_sd}",
        env={"EASEL_MATTING_MODEL": str(tiny_matting)},
    )
    yield running
    running.stop()


@pytest.fixture(scope="module")
def sdk(matting_server: RunningServer) -> openai.OpenAI:
    return sdk_client(matting_server)


def _image(result: openai.types.ImagesResponse) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(images_of(result)[0].b64_json or "")))
    image.load()
    return image


@pytest.mark.parametrize("output_format", ["png", "webp"])
def test_transparent_images_have_a_matte_as_alpha_and_keep_their_settings(
    sdk: openai.OpenAI, output_format: Literal["png", "webp"]
) -> None:
    result = sdk.images.generate(
        model=MODEL,
        prompt=PROMPT,
        size="1024x1024",
        background="transparent",
        output_format=output_format,
        extra_body={"seed": 5},
    )
    assert (result.background, result.output_format) == ("transparent", output_format)
    image = _image(result)
    assert (image.mode, image.size) == ("RGBA", (1024, 1024))
    alpha = np.asarray(image)[:, :, 3]
    # A matte, not a constant: some pixels see-through, some not, edges in between.
    assert alpha.min() < 128 < alpha.max()
    assert len(np.unique(alpha)) > 2
    # PNG text chunks land in `info` too.
    settings = image.info if output_format == "png" else read_xmp(image.info["xmp"])
    assert (settings["prompt"], settings["model"], settings["seed"]) == (PROMPT, MODEL, "5")


@pytest.mark.parametrize("background", ["opaque", "auto"])
def test_opaque_and_auto_backgrounds_have_no_alpha(
    sdk: openai.OpenAI, background: Literal["opaque", "auto"]
) -> None:
    result = sdk.images.generate(model=MODEL, prompt=PROMPT, background=background)
    assert result.background == "opaque"
    assert _image(result).mode == "RGB"


def test_transparent_jpeg_is_refused_with_openais_message(sdk: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as excinfo:
        sdk.images.generate(
            model=MODEL, prompt=PROMPT, background="transparent", output_format="jpeg"
        )
    assert (excinfo.value.param, excinfo.value.code) == ("background", "invalid_value")
    assert error_body(excinfo.value)["message"] == (
        "Transparent background is not supported with the 'jpeg' output format. "
        "Use 'png' or 'webp'."
    )


@pytest.mark.anyio
async def test_a_matting_model_that_cannot_load_answers_503_with_retry_after(
    tmp_path: Path, tiny_sd: Path
) -> None:
    catalog = Catalog.build(overrides=[f"{MODEL}={tiny_sd}"])
    settings = Settings(data_dir=tmp_path, matting_model=str(tmp_path / "no-such-model"))
    async with running_app(settings, catalog) as app:
        for _ in range(2):  # the first load fails, the second request is answered from the backoff
            response = await app.post_generation(
                app.api_key, json={"model": MODEL, "prompt": PROMPT, "background": "transparent"}
            )
            assert response.status_code == 503
            assert int(response.headers["retry-after"]) > 0
            error = response.json()["error"]
            assert (error["type"], error["code"]) == ("server_error", "model_unavailable")
        opaque = await app.post_generation(app.api_key, json={"model": MODEL, "prompt": PROMPT})
        assert opaque.status_code == 200


@pytest.mark.anyio
@pytest.mark.parametrize("switched_off", ["given empty", "given off", "variable off"])
async def test_transparency_switched_off_is_refused_as_openai_refuses_it(
    tmp_path: Path, tiny_sd: Path, monkeypatch: pytest.MonkeyPatch, switched_off: str
) -> None:
    # An empty variable counts as unset (the default model), so the environment says `off`.
    if switched_off == "variable off":
        monkeypatch.setenv("EASEL_MATTING_MODEL", "off")
        settings = Settings(data_dir=tmp_path)
    else:
        settings = Settings(
            data_dir=tmp_path, matting_model="" if switched_off == "given empty" else "off"
        )
    catalog = Catalog.build(overrides=[f"{MODEL}={tiny_sd}"])
    async with running_app(settings, catalog) as app:
        response = await app.post_generation(
            app.api_key, json={"model": MODEL, "prompt": PROMPT, "background": "transparent"}
        )
    assert response.status_code == 400
    assert response.json()["error"] == {
        "message": "Transparent background is not supported for this model.",
        "type": "invalid_request_error",
        "param": "background",
        "code": "invalid_value",
    }


@pytest.mark.anyio
async def test_the_matting_model_reports_its_residency_and_reloads_after_release(
    tiny_matting: Path,
) -> None:
    """What the memory budget reads and does: bytes while loaded, none after `release()`, and a
    later cut-out loads the model again."""
    model = MattingModel(str(tiny_matting), torch.device("cpu"))
    assert (model.resident_bytes(), model.in_use) == (0, False)
    image = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    (first,) = await model.cut_out([image])
    assert first.shape == (48, 64, 4) and np.array_equal(first[:, :, :3], image)
    assert model.resident_bytes() == (tiny_matting / MODEL_FILE).stat().st_size
    model.release()
    assert model.resident_bytes() == 0
    (again,) = await model.cut_out([image])
    assert np.array_equal(again, first)


@pytest.mark.anyio
async def test_the_matting_model_shares_the_pipelines_memory_budget(
    tmp_path: Path, tiny_sd: Path, tiny_matting: Path
) -> None:
    """With room for the pipeline or the matting model but not both, a transparent request and
    the next opaque one each make room for what they need: both succeed, and the budget's state
    names the matting model while it is resident."""
    pipeline = estimate_bytes(tiny_sd, torch.float32)
    matte = (tiny_matting / MODEL_FILE).stat().st_size
    catalog = Catalog.build(overrides=[f"{MODEL}={tiny_sd}"])
    settings = Settings(
        data_dir=tmp_path,
        matting_model=str(tiny_matting),
        memory_budget=ByteSize(max(pipeline, matte) + min(pipeline, matte) // 2),
    )
    async with running_app(settings, catalog) as app:
        budget = app.app.state.services.engine.memory_budget
        transparent = await app.post_generation(
            app.api_key,
            json={
                "model": MODEL,
                "prompt": PROMPT,
                "background": "transparent",
                "size": "1024x1024",
            },
        )
        assert transparent.status_code == 200, transparent.text
        residents = [resident.name for resident in budget.state().residents]
        assert MattingModel.name in residents
        opaque = await app.post_generation(app.api_key, json={"model": MODEL, "prompt": PROMPT})
        assert opaque.status_code == 200, opaque.text
        state = budget.state()
    assert MattingModel.name not in [resident.name for resident in state.residents]
    assert state.evictions >= 1
