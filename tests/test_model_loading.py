"""Models that load late or never, server faults, and the sweep of expired images."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.images import fetch, images_of
from tests.sdk_errors import error_body
from tests.server import RunningServer, create_key, start_server


@pytest.fixture(scope="module")
def fresh_server(
    tmp_path_factory: pytest.TempPathFactory, tiny_sd: Path, broken_scheduler_pipeline: Path
) -> Iterator[tuple[RunningServer, openai.OpenAI]]:
    data_dir = tmp_path_factory.mktemp("fresh-data")
    key = create_key(data_dir)
    config = data_dir / "models.yaml"
    config.write_text(
        "models:\n"
        "  faulty:\n"
        f"    source: {broken_scheduler_pipeline}\n"
        "    sizes: [256x256, 384x256]\n"
        "    default_size: 256x256\n"
        "    max_n: 2\n"
        "    qualities: {standard: {steps: 2, guidance_scale: 0}}\n"
    )
    running = start_server(
        data_dir,
        "--config",
        str(config),
        "--model",
        f"dall-e-2={tiny_sd}",
        "--model",
        "dall-e-3=/nonexistent/easel-test/sdxl",
        "--url-ttl",
        "2",
        env={"EASEL_SWEEP_INTERVAL_SECONDS": "1"},
    )
    sdk = openai.OpenAI(api_key=key, base_url=running.base_url + "/v1", max_retries=0, timeout=300)
    yield running, sdk
    running.stop()


def test_request_during_loading_waits_then_succeeds(
    fresh_server: tuple[RunningServer, openai.OpenAI],
) -> None:
    # The server answers HTTP before its pipelines load; this first request waits for dall-e-2.
    _, sdk = fresh_server
    result = sdk.images.generate(
        model="dall-e-2", prompt="first light", size="256x256", response_format="b64_json"
    )
    assert len(images_of(result)) == 1


def test_unloadable_model_is_503_and_others_keep_working(
    fresh_server: tuple[RunningServer, openai.OpenAI],
) -> None:
    server, sdk = fresh_server
    started = time.monotonic()
    with pytest.raises(openai.InternalServerError) as excinfo:
        sdk.images.generate(model="dall-e-3", prompt="a cat")
    assert time.monotonic() - started < 30
    assert excinfo.value.status_code == 503
    message = error_body(excinfo.value)["message"]
    # The client learns which model; the server's paths and the cause are the operator's.
    assert "`dall-e-3`" in message and "cannot be loaded" in message
    assert "/nonexistent" not in message
    assert "/nonexistent/easel-test/sdxl" in server.log()
    assert excinfo.value.code == "model_unavailable"
    assert excinfo.value.response.headers["x-should-retry"] == "false"
    result = sdk.images.generate(
        model="dall-e-2", prompt="still here", size="256x256", response_format="b64_json"
    )
    assert len(images_of(result)) == 1


def test_pipeline_fault_is_500_envelope_and_server_keeps_serving(
    fresh_server: tuple[RunningServer, openai.OpenAI],
) -> None:
    server, sdk = fresh_server
    with pytest.raises(openai.InternalServerError) as excinfo:
        sdk.images.generate(model="faulty", prompt="a cat", size="256x256")
    assert excinfo.value.status_code == 500
    body = error_body(excinfo.value)
    assert body["type"] == "server_error"
    assert "num_train_timesteps" not in body["message"]
    assert excinfo.value.request_id and excinfo.value.request_id in server.log()
    result = sdk.images.generate(
        model="dall-e-2", prompt="after the fault", size="256x256", response_format="b64_json"
    )
    assert len(images_of(result)) == 1


def test_config_file_model_has_its_own_rules(
    fresh_server: tuple[RunningServer, openai.OpenAI],
) -> None:
    _, sdk = fresh_server
    assert "faulty" in {model.id for model in sdk.models.list()}
    with pytest.raises(openai.BadRequestError) as excinfo:
        sdk.images.generate(model="faulty", prompt="a cat", n=3)
    assert excinfo.value.param == "n"
    with pytest.raises(openai.BadRequestError) as excinfo:
        sdk.images.generate(model="faulty", prompt="a cat", size="1024x1024")
    assert "'256x256' and '384x256'" in error_body(excinfo.value)["message"]


def test_expired_images_are_swept(fresh_server: tuple[RunningServer, openai.OpenAI]) -> None:
    server, sdk = fresh_server
    result = sdk.images.generate(model="dall-e-2", prompt="fleeting", size="256x256")
    url = images_of(result)[0].url or ""
    assert fetch(url).size == (256, 256)
    images_dir = server.data_dir / "images"
    image_file = images_dir / (url.split("?")[0].rsplit("/", 1)[1])
    assert image_file.exists()
    deadline = time.monotonic() + 15
    while image_file.exists() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not image_file.exists()
    assert httpx.get(url).status_code == 410
