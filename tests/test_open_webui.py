"""Open WebUI 0.12's image flow replayed on the wire, as it sends it (plain JSON posts and a
multipart edit, no SDK): the names it offers, its 512x512 default size, `response_format` for every
name but the gpt-image ones, `url` results fetched with the same Bearer header, and Chinese
prompts, as many of its users write them."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from PIL import Image

from tests.edit_images import png
from tests.server import RunningServer, create_key, start_server

# The image models Open WebUI offers when its image engine is "openai".
OFFERED = ("dall-e-2", "dall-e-3", "gpt-image-1", "gpt-image-1.5")
DEFAULT_SIZE = "512x512"


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, tiny_sd: Path, tiny_sdxl: Path
) -> Iterator[RunningServer]:
    data_dir = tmp_path_factory.mktemp("open-webui")
    sources = {"dall-e-2": tiny_sd, "dall-e-3": tiny_sdxl}
    models = {name: {"source": str(sources.get(name, tiny_sdxl))} for name in OFFERED}
    config = data_dir / "easel.yaml"
    config.write_text(yaml.safe_dump({"models": models}))
    running = start_server(data_dir, "--config", str(config))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def headers(server: RunningServer) -> dict[str, str]:
    return {"Authorization": f"Bearer {create_key(server.data_dir)}"}


def _generate(
    server: RunningServer, headers: dict[str, str], model: str, prompt: str, size: str
) -> httpx.Response:
    """What Open WebUI posts: `response_format` only for names that are not gpt-image ones."""
    body: dict[str, object] = {"model": model, "prompt": prompt, "n": 1, "size": size}
    if not model.startswith("gpt-image"):
        body["response_format"] = "b64_json"
    return httpx.post(
        f"{server.base_url}/v1/images/generations", json=body, headers=headers, timeout=300
    )


def _image(server: RunningServer, headers: dict[str, str], item: dict[str, str]) -> Image.Image:
    """Open WebUI's reading of one result: a `url` fetched with its own headers, else base64."""
    if url := item.get("url"):
        data = httpx.get(url, headers=headers, timeout=60).raise_for_status().content
    else:
        data = base64.b64decode(item["b64_json"])
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def test_dall_e_2_at_open_webuis_default_size_answers_base64(
    server: RunningServer, headers: dict[str, str]
) -> None:
    response = _generate(server, headers, "dall-e-2", "一座黎明时分的灯塔", DEFAULT_SIZE)
    assert response.status_code == 200, response.text
    [item] = response.json()["data"]
    assert set(item) >= {"b64_json"} and "url" not in item
    assert _image(server, headers, item).size == (512, 512)


@pytest.mark.parametrize("model", ["gpt-image-1", "gpt-image-1.5"])
def test_gpt_names_without_response_format_answer_base64(
    server: RunningServer, headers: dict[str, str], model: str
) -> None:
    response = _generate(server, headers, model, "雪山下的红色小屋, 油画风格", "1024x1024")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["output_format"] == "png" and body["usage"]["total_tokens"] > 0
    assert _image(server, headers, body["data"][0]).size == (1024, 1024)


@pytest.mark.parametrize("model", ["dall-e-3", "gpt-image-1"])
def test_the_default_size_is_refused_where_openai_refuses_it(
    server: RunningServer, headers: dict[str, str], model: str
) -> None:
    # OpenAI answers 400 here too; Open WebUI shows "[ERROR: Bad Request]", so the status is
    # what its user sees and it must not be a 5xx.
    response = _generate(server, headers, model, "a lighthouse", DEFAULT_SIZE)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == "size" and "512x512" in error["message"]


def test_url_results_are_fetched_with_the_clients_own_bearer_header(
    server: RunningServer, headers: dict[str, str]
) -> None:
    # An admin can add `response_format: url` among the extra fields it forwards.
    response = httpx.post(
        f"{server.base_url}/v1/images/generations",
        json={"model": "dall-e-2", "prompt": "a lighthouse", "n": 1, "size": "256x256"},
        headers=headers,
        timeout=300,
    )
    assert response.status_code == 200, response.text
    [item] = response.json()["data"]
    assert item["url"].startswith(server.base_url)
    assert _image(server, headers, item).size == (256, 256)


def test_its_edit_flow_sends_image_brackets_and_gets_the_edited_image(
    server: RunningServer, headers: dict[str, str]
) -> None:
    response = httpx.post(
        f"{server.base_url}/v1/images/edits",
        data={"model": "gpt-image-1", "prompt": "把天空变成紫色", "n": "1", "size": "1024x1024"},
        files=[("image[]", ("input.png", png(1024, 1024), "image/png"))],
        headers=headers,
        timeout=300,
    )
    assert response.status_code == 200, response.text
    assert _image(server, headers, response.json()["data"][0]).size == (1024, 1024)
