"""`stream: true`: OpenAI's server-sent events with real partial images, through the official openai
SDK against `easel serve` on a tiny UNet pipeline (SD 1.x layout) and a tiny DiT (Z-Image)."""

from __future__ import annotations

import base64
import io
import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import openai
import pytest
from openai.types import ImageGenCompletedEvent, ImageGenPartialImageEvent, ImageGenStreamEvent
from PIL import Image
from transformers import AutoTokenizer

from tests.images import decode_b64, size_of
from tests.server import RunningServer, sdk_client, start_server

# Steps of each quality on the test models: "high" has room for 2 and 3 evenly spaced previews.
QUALITIES = (
    "{low: {steps: 2, guidance_scale: 0}, medium: {steps: 3, guidance_scale: 0}, "
    "high: {steps: 8, guidance_scale: 0}}"
)
SLOW_STEPS = 400
SLOW_QUALITIES = (
    f"{{low: {{steps: {SLOW_STEPS}, guidance_scale: 0}}, medium: {{steps: 80, guidance_scale: 0}}, "
    "high: {steps: 41, guidance_scale: 0}}"
)
MODELS = {"gpt-unet": "tiny_sd", "gpt-dit": "tiny_zimage"}
NODE_TESTS = Path(__file__).parent / "node"


@pytest.fixture(scope="module")
def streaming_server(
    tmp_path_factory: pytest.TempPathFactory,
    tiny_sd: Path,
    tiny_zimage: Path,
    broken_scheduler_pipeline: Path,
) -> Iterator[RunningServer]:
    data_dir = tmp_path_factory.mktemp("streaming")
    # The slow model has its own copy of the UNet pipeline, so its long batches hold up no other.
    slow_sd = shutil.copytree(tiny_sd, data_dir / "slow-sd")
    config = data_dir / "models.yaml"
    config.write_text(
        "models:\n"
        f"  gpt-unet: {{family: gpt-image, source: {tiny_sd}, qualities: {QUALITIES}}}\n"
        f"  gpt-dit: {{family: gpt-image, source: {tiny_zimage}, qualities: {QUALITIES}}}\n"
        f"  gpt-unet-busy: {{family: gpt-image, source: {tiny_sd}, qualities: {SLOW_QUALITIES}}}\n"
        f"  gpt-slow: {{family: gpt-image, source: {slow_sd}, qualities: {SLOW_QUALITIES}}}\n"
        f"  gpt-faulty: {{family: gpt-image, source: {broken_scheduler_pipeline}, "
        f"qualities: {QUALITIES}}}\n"
        f"  dall-e-2: {{source: {tiny_sd}}}\n"
    )
    running = start_server(data_dir, "--config", str(config))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def client(streaming_server: RunningServer) -> openai.OpenAI:
    return sdk_client(streaming_server)


def stream_events(client: openai.OpenAI, **fields: Any) -> list[ImageGenStreamEvent]:
    return list(client.images.generate(stream=True, **fields))


def pixels(b64: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))).convert("RGB"), dtype=float)


@pytest.mark.parametrize("model", sorted(MODELS))
def test_partial_images_then_one_completed_image(
    client: openai.OpenAI, model: str, request: pytest.FixtureRequest
) -> None:
    prompt = "a lighthouse on a cliff at dusk"
    events = stream_events(
        client, model=model, prompt=prompt, partial_images=2, size="1024x1536", quality="high"
    )
    assert [event.type for event in events] == [
        "image_generation.partial_image",
        "image_generation.partial_image",
        "image_generation.completed",
    ]
    *partials, completed = events
    indexes = [
        event.partial_image_index
        for event in partials
        if isinstance(event, ImageGenPartialImageEvent)
    ]
    assert indexes == [0, 1]
    assert isinstance(completed, ImageGenCompletedEvent)
    for event in events:
        assert (event.size, event.quality, event.background, event.output_format) == (
            "1024x1536",
            "high",
            "opaque",
            "png",
        )
        assert abs(event.created_at - time.time()) < 300
    final = decode_b64(completed.b64_json)
    assert final.size == size_of("1024x1536") and final.text["model"] == model
    # Real previews of the latents on the way: each differs from the next and from the image.
    first, second, image = (pixels(event.b64_json) for event in events)
    assert first.shape == second.shape == image.shape == (1536, 1024, 3)
    assert np.abs(first - second).mean() > 1 and np.abs(second - image).mean() > 1
    # The prompt's tokens by the model's own tokenizer; no input images; the table's output.
    tokenizer_dir: Path = request.getfixturevalue(MODELS[model]) / "tokenizer"
    text_tokens = len(AutoTokenizer.from_pretrained(tokenizer_dir).tokenize(prompt))
    usage = completed.usage
    assert usage.input_tokens_details.text_tokens == text_tokens > 0
    assert usage.input_tokens_details.image_tokens == 0
    assert usage.input_tokens == text_tokens and usage.output_tokens == 6240
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens


def test_the_wire_is_server_sent_events_named_by_their_type(
    streaming_server: RunningServer, client: openai.OpenAI
) -> None:
    common = {"type", "b64_json", "created_at", "size", "quality", "background", "output_format"}
    required = {
        "image_generation.partial_image": common | {"partial_image_index"},
        "image_generation.completed": common | {"usage"},
    }
    with httpx.stream(
        "POST",
        streaming_server.base_url + "/v1/images/generations",
        headers={"Authorization": f"Bearer {client.api_key}"},
        json={"model": "gpt-unet", "prompt": "a kite", "stream": True, "partial_images": 1},
        timeout=120,
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        blocks = response.read().decode().strip().split("\n\n")
    names = []
    for block in blocks:
        event_line, data_line = block.split("\n")
        name = event_line.removeprefix("event: ")
        data = json.loads(data_line.removeprefix("data: "))
        assert data["type"] == name and set(data) == required[name]
        names.append(name)
    assert names == ["image_generation.partial_image", "image_generation.completed"]


def test_no_partial_images_gives_only_the_completed_event_in_the_format_asked(
    client: openai.OpenAI,
) -> None:
    events = stream_events(
        client,
        model="gpt-dit",
        prompt="a red kite",
        partial_images=0,
        output_format="jpeg",
        output_compression=70,
    )
    assert [event.type for event in events] == ["image_generation.completed"]
    image = Image.open(io.BytesIO(base64.b64decode(events[0].b64_json)))
    assert (image.format, image.size) == ("JPEG", (1024, 1024))
    assert events[0].output_format == "jpeg"


def test_partial_images_follow_the_output_format(client: openai.OpenAI) -> None:
    events = stream_events(
        client,
        model="gpt-unet",
        prompt="a boat",
        partial_images=3,
        quality="high",
        output_format="webp",
        size="1536x1024",
    )
    assert [event.type for event in events].count("image_generation.partial_image") == 3
    for event in events:
        image = Image.open(io.BytesIO(base64.b64decode(event.b64_json)))
        assert (image.format, image.size) == ("WEBP", (1536, 1024))


def test_several_images_each_complete_and_their_usage_sums_to_the_requests(
    client: openai.OpenAI, tiny_sd: Path
) -> None:
    prompt = "three kites"
    events = stream_events(client, model="gpt-unet", prompt=prompt, n=3, partial_images=1)
    completed = [event for event in events if isinstance(event, ImageGenCompletedEvent)]
    assert len(completed) == 3 and events[-1] is completed[-1]
    seeds = [int(decode_b64(event.b64_json).text["seed"]) for event in completed]
    assert seeds == [seeds[0], seeds[0] + 1, seeds[0] + 2]
    text_tokens = len(AutoTokenizer.from_pretrained(tiny_sd / "tokenizer").tokenize(prompt))
    assert sum(event.usage.input_tokens for event in completed) == text_tokens
    assert [event.usage.output_tokens for event in completed] == [1056] * 3  # medium, square
    assert all(
        event.usage.total_tokens == event.usage.input_tokens + event.usage.output_tokens
        for event in completed
    )


def test_openai_node_streams_the_same_events(
    streaming_server: RunningServer, client: openai.OpenAI
) -> None:
    # The node SDK, installed by scripts/setup (npm ci in tests/node).
    assert (NODE_TESTS / "node_modules" / "openai").is_dir(), "run scripts/setup"
    result = subprocess.run(
        [
            "node",
            str(NODE_TESTS / "stream_images.mjs"),
            streaming_server.base_url + "/v1",
            client.api_key,
            "gpt-dit",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    events = json.loads(result.stdout)
    assert [(event["type"], event["partial_image_index"]) for event in events] == [
        ("image_generation.partial_image", 0),
        ("image_generation.partial_image", 1),
        ("image_generation.completed", None),
    ]
    assert all(event["size"] == "1024x1536" and event["bytes"] > 0 for event in events)
    usage = events[-1]["usage"]
    assert usage["output_tokens"] == 6240
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]


def test_concurrent_streamed_requests_share_a_pipeline_call(client: openai.OpenAI) -> None:
    # A first request occupies the UNet pipeline; the two streams sent meanwhile wait together
    # and run as one batch, each still getting its own partial images.
    with ThreadPoolExecutor(3) as pool:
        first = pool.submit(
            client.images.generate, model="gpt-unet-busy", prompt="first", quality="medium"
        )
        time.sleep(0.3)
        streams = [
            pool.submit(
                stream_events,
                client,
                model="gpt-unet",
                prompt=prompt,
                partial_images=2,
                quality="high",
            )
            for prompt in ("a cat", "a dog")
        ]
        first.result()
        results = [future.result() for future in streams]
    for events in results:
        assert [event.type for event in events].count("image_generation.partial_image") == 2
        assert decode_b64(events[-1].b64_json).text["batch_images"] == "2"
    assert np.abs(pixels(results[0][0].b64_json) - pixels(results[1][0].b64_json)).mean() > 1


def test_a_stream_closed_early_stops_its_work(
    client: openai.OpenAI, streaming_server: RunningServer
) -> None:
    counted = 'easel_requests_total{model="gpt-slow",status="499"}'
    before = sample(httpx.get(streaming_server.base_url + "/metrics", timeout=30).text, counted)
    stream = client.images.generate(
        model="gpt-slow", prompt="never finished", stream=True, partial_images=3, quality="low"
    )
    first = next(iter(stream))
    assert first.type == "image_generation.partial_image"
    stream.close()
    stopped = wait_for_log(streaming_server, "gpt-slow: stopped a batch")
    step = int(stopped.split("after step ")[1].split(" of ")[0])
    assert f"of {SLOW_STEPS}" in stopped and step < SLOW_STEPS * 3 // 4
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        metrics = httpx.get(streaming_server.base_url + "/metrics", timeout=30).text
        if sample(metrics, counted) == before + 1:
            break
        time.sleep(0.2)
    else:
        raise AssertionError("the closed stream was not counted as 499")
    # The pipeline is free again.
    assert len(stream_events(client, model="gpt-slow", prompt="after", quality="medium")) == 1


def test_refusals_before_the_stream_are_json_errors(client: openai.OpenAI) -> None:
    # OpenAI streams only the GPT image models.
    with pytest.raises(openai.BadRequestError) as refused:
        stream_events(client, model="dall-e-2", prompt="a cat")
    assert (refused.value.param, refused.value.code) == ("stream", "unsupported_value")
    with pytest.raises(openai.BadRequestError) as too_many:
        stream_events(client, model="gpt-unet", prompt="a cat", partial_images=4)
    assert too_many.value.param == "partial_images"
    with pytest.raises(openai.BadRequestError) as bad_size:
        stream_events(client, model="gpt-unet", prompt="a cat", size="512x512")
    assert bad_size.value.param == "size"


def test_a_failure_after_the_stream_began_is_an_error_event(client: openai.OpenAI) -> None:
    with pytest.raises(openai.APIError) as failed:
        stream_events(client, model="gpt-faulty", prompt="a cat", partial_images=1)
    body = failed.value.body
    assert isinstance(body, dict) and body["type"] == "server_error" and "message" in body
    # The server goes on serving.
    assert len(stream_events(client, model="gpt-unet", prompt="a cat")) == 1


def sample(metrics: str, name: str) -> float:
    values = (float(line.split()[-1]) for line in metrics.splitlines() if line.startswith(name))
    return next(values, 0.0)


def wait_for_log(server: RunningServer, fragment: str, seconds: float = 90) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for line in server.log().splitlines():
            if fragment in line:
                return line
        time.sleep(0.2)
    raise AssertionError(f"no log line with {fragment!r}:\n{server.log()[-4000:]}")
