"""`stream: true` on /v1/images/edits: OpenAI's `image_edit.*` server-sent events, through the
official openai SDK and raw multipart against `easel serve` on the tiny UNet pipeline (SD 1.x
layout). Nothing here depends on the edited pixels, only on the events that carry them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openai.types import ImageEditCompletedEvent, ImageEditPartialImageEvent, ImageEditStreamEvent

from easel.db.database import Database
from easel.usage.store import UsageRecord, UsageStore
from tests.edit_images import mask_png, png
from tests.images import decode_b64
from tests.sdk_errors import error_body
from tests.server import RunningServer, sdk_client, start_server

# Steps of each quality: "high" leaves room for two evenly spaced partial images.
QUALITIES = (
    "{low: {steps: 2, guidance_scale: 0}, medium: {steps: 3, guidance_scale: 0}, "
    "high: {steps: 8, guidance_scale: 0}}"
)
MODEL = "gpt-image-1"
SIZE = "1024x1024"
EDITS = "/v1/images/edits"


@pytest.fixture(scope="module")
def edit_server(tmp_path_factory: pytest.TempPathFactory, tiny_sd: Path) -> Iterator[RunningServer]:
    data_dir = tmp_path_factory.mktemp("edit-streaming")
    config = data_dir / "models.yaml"
    config.write_text(
        "models:\n"
        f"  {MODEL}: {{source: {tiny_sd}, qualities: {QUALITIES}}}\n"
        f"  dall-e-2: {{source: {tiny_sd}}}\n"
    )
    running = start_server(data_dir, "--config", str(config))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def client(edit_server: RunningServer) -> openai.OpenAI:
    return sdk_client(edit_server)


def stream_edit(client: openai.OpenAI, **fields: Any) -> list[ImageEditStreamEvent]:
    return list(
        client.images.edit(
            model=MODEL,
            image=("photo.png", png(64, 64), "image/png"),
            prompt="paint it blue",
            size=SIZE,
            stream=True,
            **fields,
        )
    )


def usage_records(server: RunningServer) -> list[UsageRecord]:
    """The server's usage records as its database holds them: each is stored before the
    response's last event goes out."""
    database = Database(f"sqlite:///{server.data_dir / 'easel.db'}")
    try:
        return UsageStore(database).records()
    finally:
        database.close()


def test_partial_images_then_the_completed_edit_with_its_usage(client: openai.OpenAI) -> None:
    events = stream_edit(client, partial_images=2, quality="high")
    assert [event.type for event in events] == [
        "image_edit.partial_image",
        "image_edit.partial_image",
        "image_edit.completed",
    ]
    *partials, completed = events
    assert [
        event.partial_image_index
        for event in partials
        if isinstance(event, ImageEditPartialImageEvent)
    ] == [0, 1]
    for event in events:
        fields = (event.size, event.quality, event.background, event.output_format)
        assert fields == (SIZE, "high", "opaque", "png")
        assert decode_b64(event.b64_json).size == (1024, 1024)  # a PNG, as asked
    assert isinstance(completed, ImageEditCompletedEvent)
    assert decode_b64(completed.b64_json).text["model"] == MODEL
    usage = completed.usage
    assert usage.output_tokens == 4160  # OpenAI's table: high, 1024x1024
    assert usage.input_tokens_details.text_tokens > 0
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens


def test_no_partial_images_gives_only_the_completed_event_with_a_plain_edits_usage(
    client: openai.OpenAI,
) -> None:
    fields: dict[str, Any] = {"prompt": "paint it blue", "size": SIZE, "quality": "low"}
    image = ("photo.png", png(64, 64), "image/png")
    events = list(
        client.images.edit(model=MODEL, image=image, stream=True, partial_images=0, **fields)
    )
    assert [event.type for event in events] == ["image_edit.completed"]
    completed = events[0]
    assert isinstance(completed, ImageEditCompletedEvent)
    plain = client.images.edit(model=MODEL, image=image, **fields)
    assert plain.usage is not None
    assert completed.usage.model_dump(exclude_none=True) == plain.usage.model_dump(
        exclude_none=True
    )
    # Easel's input image tokens: one per 16x16 pixels of the image at the generated size.
    assert completed.usage.input_tokens_details.image_tokens == (1024 // 16) ** 2


def test_the_completed_events_of_several_images_add_up_to_the_plain_edits_usage(
    client: openai.OpenAI,
) -> None:
    fields: dict[str, Any] = {"prompt": "paint it blue", "size": SIZE, "quality": "low", "n": 2}
    image = ("photo.png", png(64, 64), "image/png")
    events = list(client.images.edit(model=MODEL, image=image, stream=True, **fields))
    usages = [event.usage for event in events if isinstance(event, ImageEditCompletedEvent)]
    plain = client.images.edit(model=MODEL, image=image, **fields).usage
    assert plain is not None and len(usages) == 2
    # The input tokens ride on the first image's event, each event carries its own output tokens.
    assert [usage.input_tokens_details.image_tokens for usage in usages] == [
        plain.input_tokens_details.image_tokens,
        0,
    ]
    assert sum(usage.output_tokens for usage in usages) == plain.output_tokens
    assert sum(usage.input_tokens for usage in usages) == plain.input_tokens
    assert sum(usage.total_tokens for usage in usages) == plain.total_tokens


def test_the_wire_is_server_sent_events_named_by_their_type(
    edit_server: RunningServer, client: openai.OpenAI
) -> None:
    # Multipart sends the boolean as text, as every SDK and curl -F do; the mask goes with it.
    common = {"type", "b64_json", "created_at", "size", "quality", "background", "output_format"}
    required = {
        "image_edit.partial_image": common | {"partial_image_index"},
        "image_edit.completed": common | {"usage"},
    }
    with httpx.stream(
        "POST",
        edit_server.base_url + EDITS,
        headers={"Authorization": f"Bearer {client.api_key}"},
        data={
            "model": MODEL,
            "prompt": "a hat",
            "size": SIZE,
            "quality": "high",
            "stream": "true",
            "partial_images": "1",
        },
        files=[
            ("image", ("photo.png", png(64, 64), "image/png")),
            ("mask", ("mask.png", mask_png(64, 64, (0, 0, 32, 64)), "image/png")),
        ],
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
    assert names == ["image_edit.partial_image", "image_edit.completed"]


def test_streamed_edits_and_generations_are_recorded_under_their_endpoints(
    edit_server: RunningServer, client: openai.OpenAI
) -> None:
    events = stream_edit(client, quality="low", user="streaming-editor")
    assert [event.type for event in events] == ["image_edit.completed"]
    edit = usage_records(edit_server)[-1]
    assert (edit.endpoint, edit.model, edit.user, edit.images_delivered, edit.status) == (
        "edits",
        MODEL,
        "streaming-editor",
        1,
        200,
    )
    assert edit.output_tokens == 272
    list(client.images.generate(model=MODEL, prompt="a kite", quality="low", stream=True))
    assert usage_records(edit_server)[-1].endpoint == "generations"


def test_a_streamed_edit_refused_before_the_stream_gets_the_json_envelope(
    edit_server: RunningServer, client: openai.OpenAI
) -> None:
    # A mask without an alpha channel: refused while checking the request, before any event.
    response = httpx.post(
        edit_server.base_url + EDITS,
        headers={"Authorization": f"Bearer {client.api_key}"},
        data={"model": MODEL, "prompt": "a hat", "stream": "true", "partial_images": "2"},
        files=[
            ("image", ("photo.png", png(64, 64), "image/png")),
            ("mask", ("mask.png", png(64, 64), "image/png")),
        ],
        timeout=60,
    )
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert (error["param"], error["code"], error["type"]) == (
        "mask",
        "invalid_image_format",
        "invalid_request_error",
    )
    # The SDK raises it as it raises any refusal; OpenAI streams the GPT image models only.
    with pytest.raises(openai.BadRequestError) as refused:
        list(
            client.images.edit(
                model="dall-e-2", image=png(64, 64), prompt="a hat", size="256x256", stream=True
            )
        )
    assert (error_body(refused.value)["param"], error_body(refused.value)["code"]) == (
        "stream",
        "unsupported_value",
    )


# The SDK marks create_variation deprecated; OpenAI (and Easel) still serve it.
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_variations_refuse_stream_as_openai_does(client: openai.OpenAI) -> None:
    # OpenAI's variations endpoint has no `stream`; the SDK has no argument for it either.
    with pytest.raises(openai.BadRequestError) as refused:
        client.images.create_variation(image=png(64, 64), extra_body={"stream": True})
    error = error_body(refused.value)
    assert (error["param"], error["code"], error["message"]) == (
        "stream",
        "unknown_parameter",
        "Unknown parameter: 'stream'.",
    )
